"""Executing leaf tasks: container components (including lightweight Python
components) and importers, with retries, caching and output collection.

Processes are started only through the compute backend.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
import shutil
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from ketch.core.access import workload_env
from ketch.core.artifacts import ArtifactStore
from ketch.core.backend import Backend, ProcessHandle, ProcessSpec, PythonEntry
from ketch.core.environments import Environments
from ketch.core.errors import BackendError, KetchError
from ketch.core.store.pods import PodRecord, log_size
from ketch.pipelines import caching, lightweight
from ketch.pipelines.failures import (
    ERROR_TAIL_LINES,
    exception_line,
    from_traceback,
    log_tail,
    shell_error,
)
from ketch.pipelines.lightweight import Packages
from ketch.pipelines.placeholders import (
    PlaceholderContext,
    resolve_list,
    resolve_string,
    run_values,
)
from ketch.pipelines.quotas import TaskQuota
from ketch.pipelines.resources import task_resources
from ketch.pipelines.taskpods import LOOK, TaskPod, TaskPods
from ketch.pipelines.tasks import CANCELED, FAILED, SUCCEEDED, Node, RunContext, TaskRunner
from ketch.pipelines.values import from_output_file, integral

log = logging.getLogger(__name__)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")


def parse_duration(text: str | None, default: float = 0.0) -> float:
    if not text:
        return default
    m = _DURATION.match(str(text))
    if not m:
        return default
    value = float(m.group(1))
    return value * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]


def _artifact_type(spec: dict[str, Any]) -> dict[str, Any]:
    t = dict(spec.get("artifactType", {}))
    t.setdefault("schemaTitle", "system.Artifact")
    return t


class LocalTaskRunner(TaskRunner):
    """Runs a run's leaf tasks through ``backend``. ``packages``: what the
    interpreter running Ketch has installed; ``warmup``: the folder of the warm-up
    task that warm interpreters run once.

    A container task's start is recorded once its process started, with its pod, in
    one write (``records_start``); its end, its pod's end and its cache entry are
    recorded by the engine's write of the task's end (``Node.pod``,
    ``Node.cache_pending``).
    """

    records_start = True

    def __init__(
        self,
        backend: Backend,
        recorder: Any,
        environments: Environments,
        packages: Packages,
        warmup: Path,
        on_first_execution: Callable[[], Any] | None = None,
    ):
        self.backend = backend
        self.recorder = recorder
        self.environments = environments
        self.packages = packages
        self.warmup = warmup
        # Called once, when the first task actually runs (not cached, not reused):
        # warm interpreters are started only for runs that need them.
        self._on_first_execution = on_first_execution
        self._handles: dict[str, ProcessHandle] = {}
        self._lock = threading.Lock()
        self._canceled = threading.Event()
        pods = getattr(recorder, "pods", None)
        # the tasks' pods, where the runs are stored (none for a recorder without a store)
        self.task_pods = TaskPods(pods) if pods is not None else None
        database = getattr(recorder, "database", None)
        waiting = getattr(recorder, "task_waiting", None)
        # the namespaces' compute quotas, where the runs are stored
        self.quota = (
            TaskQuota(database, waiting) if database is not None and waiting is not None else None
        )

    def cancel_all(self) -> None:
        self._canceled.set()
        with self._lock:
            handles = list(self._handles.values())
        for handle in handles:
            try:
                handle.cancel(grace=3.0)
            except OSError:  # already gone
                pass

    # ------------------------------------------------------------------ run

    def run(self, node: Node, ctx: RunContext) -> None:
        executor = ctx.ir.executors[node.component["executorLabel"]]
        if "importer" in executor:
            return self._run_importer(node, ctx, executor["importer"])
        if "container" not in executor:
            raise KetchError(
                f"task {node.path!r}: executor kind {sorted(executor)} is not supported"
            )
        use_cache = caching.enabled(node.task, ctx.enable_caching)
        if use_cache:
            node.cache_key = caching.cache_key(
                component=node.component,
                executor=executor,
                parameters=node.inputs,
                artifacts=node.input_artifacts,
                namespace=ctx.namespace,  # a hit only within the run's own namespace
                custom_key=node.task.get("cachingOptions", {}).get("cacheKey"),
            )
            hit = self.recorder.cache_lookup(node.cache_key)
            if hit is not None and self._outputs_exist(hit):
                node.outputs = hit.get("parameters", {})
                node.output_artifacts = hit.get("artifacts", {})
                node.cached = True
                node.state = SUCCEEDED
                return
        self._first_execution()
        policy = node.task.get("retryPolicy", {})
        retries = int(policy.get("maxRetryCount", 0) or 0)
        backoff = parse_duration(policy.get("backoffDuration"), 0.0)
        factor = float(policy.get("backoffFactor", 2.0) or 2.0)
        backoff_max = parse_duration(policy.get("backoffMaxDuration"), 3600.0)
        pod = self.task_pods.pod(node, ctx) if self.task_pods is not None else None
        for attempt in range(retries + 1):
            node.attempts = attempt + 1
            node.error = None  # an attempt that succeeds keeps nothing of a failed one
            self._run_container(node, ctx, executor["container"], pod)
            if node.state != FAILED or attempt == retries or self._canceled.is_set():
                break
            if pod is not None and pod.attempts:
                pod.record()  # while it waits to be retried, the pod shows how it ended
            delay = min(backoff * (factor**attempt), backoff_max)
            if delay > 0 and self._canceled.wait(delay):
                break
        if node.state == SUCCEEDED and use_cache and node.cache_key:
            for arts in node.output_artifacts.values():
                for art in arts:  # metrics artifacts live in metadata only: no file to find
                    uri = str(art.get("uri", ""))
                    art["_present"] = _is_remote(uri) or os.path.exists(uri.removeprefix("file://"))
            node.cache_pending = True  # stored with the task's end

    def _first_execution(self) -> None:
        with self._lock:
            hook, self._on_first_execution = self._on_first_execution, None
        if hook is not None:
            try:
                hook()
            except Exception as exc:  # noqa: BLE001 - warming up is an optimisation only: it must not fail the task
                log.warning("warming up interpreters failed: %s: %s", type(exc).__name__, exc)

    def _outputs_exist(self, hit: dict[str, Any]) -> bool:
        for arts in hit.get("artifacts", {}).values():
            for art in arts:
                uri = str(art.get("uri", ""))
                if not uri or not art.get("_present", True):
                    continue
                if _is_remote(uri):
                    try:
                        if not ArtifactStore(uri).exists(uri):
                            return False
                    except Exception as exc:  # noqa: BLE001 - fsspec filesystems raise their own errors (credentials, clients): run the task again
                        log.warning(
                            "cannot check the cached output %s (the task runs again): %s: %s",
                            uri,
                            type(exc).__name__,
                            exc,
                        )
                        return False
                elif not os.path.exists(uri.removeprefix("file://")):
                    return False
        return True

    # ------------------------------------------------------------ container

    def _run_container(
        self, node: Node, ctx: RunContext, container: dict[str, Any], pod: TaskPod | None = None
    ) -> None:
        work = ctx.work_dir / node.dir_name
        remote = _is_remote(ctx.pipeline_root)
        relative = f"{ctx.ir.name}/{ctx.run_id}/{node.path.replace('[', '-').replace(']', '')}"
        # A remote pipeline root (s3://, gs://, ...) is staged in a local directory:
        # the component reads and writes local paths, Ketch moves the bytes.
        local_root = ctx.work_dir / "staging" if remote else Path(ctx.pipeline_root)
        task_root = local_root / relative
        work.mkdir(parents=True, exist_ok=True)
        task_root.mkdir(parents=True, exist_ok=True)
        log_path = work / "task.log"
        node.log_path = str(log_path)
        out_defs = node.component.get("outputDefinitions", {})
        param_files = {
            name: str(work / "outputs" / name) for name in out_defs.get("parameters", {})
        }
        (work / "outputs").mkdir(exist_ok=True)
        for f in param_files.values():
            if os.path.exists(f):
                os.remove(f)
        out_arts: dict[str, dict[str, Any]] = {}
        for name, adef in out_defs.get("artifacts", {}).items():
            out_arts[name] = {
                "name": name,
                "uri": str(task_root / name),
                "type": _artifact_type(adef),
                "metadata": {},
            }
        output_file = str(task_root / "executor_output.json")
        if os.path.exists(output_file):
            os.remove(output_file)
        try:
            local_inputs = self._localize_inputs(node, ctx)
        except KetchError as exc:
            node.state, node.error = FAILED, str(exc)
            return
        executor_input = {
            "inputs": {
                "parameterValues": node.inputs,
                "artifacts": {
                    k: {"artifacts": [_runtime_artifact(a) for a in v]}
                    for k, v in local_inputs.items()
                },
            },
            "outputs": {
                "parameters": {k: {"outputFile": f} for k, f in param_files.items()},
                "artifacts": {
                    k: {"artifacts": [_runtime_artifact(a)]} for k, a in out_arts.items()
                },
                "outputFile": output_file,
            },
        }
        pctx = PlaceholderContext(
            executor_input=executor_input,
            input_parameters=node.inputs,
            input_artifacts={
                k: [dict(a, path=a.get("uri")) for a in v] for k, v in local_inputs.items()
            },
            output_parameter_files=param_files,
            output_artifacts={k: dict(a, path=a["uri"]) for k, a in out_arts.items()},
            output_file=output_file,
            run_values=run_values(ctx, node),
            where=f"task {node.path!r}",
        )
        env = {"KETCH_RUN_ID": ctx.run_id, "KETCH_TASK": node.path}
        for item in container.get("env", []):
            env[item["name"]] = resolve_string(str(item.get("value", "")), pctx)
        spec = self._process_spec(node, ctx, container, pctx, env, work, log_path)
        # its profile's OS user in multi-user mode, owning its outputs' folder
        spec = dataclasses.replace(spec, namespace=ctx.namespace, owned=(task_root,))
        # its namespace's service-account token once authentication is on (never shown)
        database = getattr(self.recorder, "database", None)
        secret = workload_env(database, ctx.namespace) if database is not None else {}
        if secret:
            spec = dataclasses.replace(spec, secret_env=secret)
        if self.quota is not None:  # its namespace's quota has room for its pod, or it waits
            refused = self.quota.acquire(node, ctx, spec, self._canceled)
            if refused is not None:
                node.state, node.error = (FAILED, refused) if refused else (CANCELED, "canceled")
                return
        log_start = log_size(log_path)  # where this attempt's output begins
        try:
            handle = self.backend.start(spec)
        except BackendError as exc:
            self._released(node, ctx)
            image = container.get("image")
            node.state = FAILED
            node.error = f"{exc} (image {image!r} is not used: the command runs on this host)"
            return
        with self._lock:
            self._handles[node.id] = handle
        image = str(container.get("image") or "")
        record = (
            pod.started(spec, str(log_path), image, log_start, where=(handle.node, handle.host))
            if pod
            else None
        )
        if node.start_pending:
            self._record_start(node, ctx, record)
        elif pod is not None:  # a retried attempt: its pod restarts
            pod.record()
        if self._canceled.is_set():
            handle.cancel(grace=1.0)
        try:
            code = handle.wait(LOOK if pod is not None else None)
            while code is None and pod is not None:
                pod.record()  # notes how far its log has grown
                code = handle.wait(LOOK)
        finally:
            with self._lock:
                self._handles.pop(node.id, None)
            self._released(node, ctx)
            if pod is not None:  # stored with the task's end (or before a retry)
                node.pod = pod.finished(code if code is not None else -9)
        if self._canceled.is_set() and code != 0:
            node.state, node.error = CANCELED, "canceled"
            return
        if code != 0:
            node.state = FAILED
            reason = (
                f"exit code {code}"
                if code is not None and code >= 0
                else f"killed by signal {-(code or 0)}"
            )
            tail = log_tail(log_path, 400)
            raised = exception_line(tail) or shell_error(spec.command, code, tail)
            if raised:  # a Python component: the exception first, then its traceback
                shown = "\n".join(from_traceback(tail).splitlines()[-ERROR_TAIL_LINES:])
                node.error = f"{raised} ({reason})\n{shown}\nfull log: {log_path}"
            else:
                shown = "\n".join(tail.splitlines()[-ERROR_TAIL_LINES:])
                node.error = f"{reason}\n{shown}\nfull log: {log_path}"
            return
        try:
            self._collect(node, param_files, out_arts, output_file, out_defs)
            if remote:
                self._upload_outputs(node, ctx, local_root)
        except (OSError, ValueError, KetchError) as exc:
            node.state, node.error = FAILED, f"reading outputs failed: {exc} (log: {log_path})"
            return
        node.state = SUCCEEDED

    def _released(self, node: Node, ctx: RunContext) -> None:
        """The task's process ended (or never started): its pod's quota goes back."""
        if self.quota is not None:
            self.quota.release(node, ctx)

    def run_ended(self, ctx: RunContext) -> None:
        if self.quota is not None:
            self.quota.run_ended(ctx)

    def _record_start(self, node: Node, ctx: RunContext, pod: PodRecord | None) -> None:
        """Record the task's start: with its pod when its process started, without one
        when what it does before that takes a while (its process's start then writes its
        pod alone)."""
        try:
            self.recorder.task_started(ctx, node, [pod] if pod is not None else [])
        except SQLAlchemyError as exc:  # the task runs on: its end records its start
            log.warning("cannot record the start of task %s: %s", node.path, exc)

    def _localize_inputs(self, node: Node, ctx: RunContext) -> dict[str, list[dict[str, Any]]]:
        """Input artifacts with local URIs; remote ones are downloaded to a run cache."""
        out: dict[str, list[dict[str, Any]]] = {}
        for key, arts in node.input_artifacts.items():
            local: list[dict[str, Any]] = []
            for art in arts:
                uri = str(art.get("uri", ""))
                if _is_remote(uri):
                    digest = hashlib.sha256(uri.encode()).hexdigest()[:16]
                    target = ctx.work_dir / "inputs" / digest / uri.rstrip("/").rsplit("/", 1)[-1]
                    if not target.exists():
                        if node.start_pending:  # a download takes a while: it runs from now
                            self._record_start(node, ctx, None)
                        try:
                            ArtifactStore(ctx.pipeline_root).download(uri, target)
                        except KetchError:
                            if uri.startswith(ctx.pipeline_root):
                                raise
                            target.parent.mkdir(parents=True, exist_ok=True)  # nothing to fetch
                    art = dict(art, uri=str(target))
                elif uri.startswith("file://"):
                    art = dict(art, uri=uri.removeprefix("file://"))
                local.append(art)
            out[key] = local
        return out

    def _upload_outputs(self, node: Node, ctx: RunContext, local_root: Path) -> None:
        store = ArtifactStore(ctx.pipeline_root)
        prefix = str(local_root) + os.sep
        for arts in node.output_artifacts.values():
            for art in arts:
                uri = str(art.get("uri", ""))
                if not uri.startswith(prefix):
                    continue
                remote_uri = store.uri_for(uri[len(prefix) :])
                if os.path.exists(uri):
                    store.upload(uri, remote_uri)
                art["uri"] = remote_uri

    def _process_spec(
        self,
        node: Node,
        ctx: RunContext,
        container: dict[str, Any],
        pctx: PlaceholderContext,
        env: dict[str, str],
        work: Path,
        log_path: Path,
    ) -> ProcessSpec:
        resources = task_resources(container.get("resources", {}) or {}, pctx)
        node.resources = {k: v for k, v in vars(resources).items() if v not in (None, 0)}
        name = f"run {ctx.run_id[:8]} task {node.path}"
        component = lightweight.parse(container, self.packages)
        if component is not None:
            argv = resolve_list(component.executor_args, pctx)
            module_file: str | None = None
            if component.source is not None:
                module_file = str(work / "ephemeral_component.py")
                Path(module_file).write_text(component.source)
            else:
                module_file = ctx.ir.function_files.get(component.function)
            if module_file and "--component_module_path" not in argv:
                argv = ["--component_module_path", module_file, *argv]
            python = sys.executable
            missing = self.packages.missing_requirements(component)
            if missing:
                if node.start_pending and not self.environments.ready(
                    component.requirements, component.pip_options
                ):  # installing them takes a while: the task runs from now
                    self._record_start(node, ctx, None)
                python = self.environments.python_for(
                    component.requirements, component.pip_options, log_path
                )
            if component.source is not None:  # as the compiled command sets it
                env = {**env, "_KFP_RUNTIME": "true"}
            return ProcessSpec(
                name=name,
                command=[python, "-m", lightweight.EXECUTOR_MODULE, *argv],
                env=env,
                cwd=work,
                stdout_path=log_path,
                stderr_path=log_path,
                resources=resources,
                python=PythonEntry(
                    module=lightweight.EXECUTOR_MODULE,
                    argv=argv,
                    python=python,
                    preload=self.packages.preload_modules(component)
                    if not missing
                    else (lightweight.EXECUTOR_MODULE,),
                    warmup=lightweight.warmup_argv(self.warmup),
                ),
            )
        command = resolve_list(
            list(container.get("command", [])) + list(container.get("args", [])), pctx
        )
        if not command:
            raise KetchError(f"task {node.path!r}: the container has no command and no args to run")
        return ProcessSpec(
            name=name,
            command=command,
            env=env,
            cwd=work,
            stdout_path=log_path,
            stderr_path=log_path,
            resources=resources,
        )

    def _collect(
        self,
        node: Node,
        param_files: dict[str, str],
        out_arts: dict[str, dict[str, Any]],
        output_file: str,
        out_defs: dict[str, Any],
    ) -> None:
        pdefs = out_defs.get("parameters", {})
        outputs: dict[str, Any] = {}
        for name, path in param_files.items():
            if os.path.exists(path):
                with open(path) as f:
                    outputs[name] = from_output_file(f.read(), pdefs[name].get("parameterType"))
        if os.path.exists(output_file):
            with open(output_file) as f:
                executor_output = json.load(f)
            for name, value in executor_output.get("parameterValues", {}).items():
                ptype = pdefs.get(name, {}).get("parameterType")
                if ptype in ("NUMBER_INTEGER", "NUMBER_DOUBLE", "LIST", "STRUCT"):
                    value = integral(value)
                outputs[name] = value
            for name, group in executor_output.get("artifacts", {}).items():
                produced = (group.get("artifacts") or [{}])[0]
                if name in out_arts:
                    art = out_arts[name]
                    if produced.get("uri"):
                        art["uri"] = produced["uri"]
                    custom = produced.get("custom_path")
                    if custom and os.path.exists(custom) and custom != art["uri"]:
                        # The component wrote elsewhere: the artifact is copied to its URI.
                        target = art["uri"].removeprefix("file://")
                        if os.path.isdir(custom):
                            shutil.copytree(custom, target, dirs_exist_ok=True)
                        else:
                            os.makedirs(os.path.dirname(target), exist_ok=True)
                            shutil.copyfile(custom, target)
                    art["metadata"] = produced.get("metadata") or {}
        missing = [n for n in pdefs if n not in outputs]
        if missing:
            raise ValueError(f"the component did not write output parameter {missing[0]!r}")
        node.outputs = outputs
        node.output_artifacts = {k: [a] for k, a in out_arts.items()}

    # ------------------------------------------------------------ importer

    def _run_importer(self, node: Node, ctx: RunContext, importer: dict[str, Any]) -> None:
        node.attempts = 1
        uri_spec = importer.get("artifactUri", {})
        if "constant" in uri_spec:
            uri = uri_spec["constant"]
        elif "runtimeParameter" in uri_spec:
            uri = node.inputs.get(uri_spec["runtimeParameter"])
        else:
            uri = node.inputs.get("uri")
        if isinstance(uri, dict):  # old IR: {"stringValue": ...}
            uri = uri.get("stringValue")
        if not uri:
            node.state, node.error = FAILED, "the importer has no artifact URI"
            return
        metadata = importer.get("metadata", {}) or {}
        art = {
            "name": "artifact",
            "uri": str(uri),
            "type": dict(importer.get("typeSchema", {}) or {"schemaTitle": "system.Artifact"}),
            "metadata": _resolve_metadata(metadata, node.inputs),
        }
        if not importer.get("reimport", False):
            existing = self.recorder.find_artifact(art["uri"], art["type"].get("schemaTitle", ""))
            if existing is not None:
                art["id"] = existing
        node.output_artifacts = {"artifact": [art]}
        node.state = SUCCEEDED


def _resolve_metadata(metadata: Any, inputs: dict[str, Any]) -> Any:
    if isinstance(metadata, dict):
        return {
            _resolve_metadata(k, inputs): _resolve_metadata(v, inputs) for k, v in metadata.items()
        }
    if isinstance(metadata, list):
        return [_resolve_metadata(v, inputs) for v in metadata]
    if isinstance(metadata, str):
        m = re.fullmatch(r"\{\{\$\.inputs\.parameters\['([^']+)'\]\}\}", metadata)
        if m and m.group(1) in inputs:
            return inputs[m.group(1)]
    return metadata


def _is_remote(uri: str) -> bool:
    return "://" in uri and not uri.startswith("file://")


def _runtime_artifact(art: dict[str, Any]) -> dict[str, Any]:
    out = {
        "name": art.get("name", ""),
        "uri": art.get("uri", ""),
        "metadata": art.get("metadata", {}),
        "type": art.get("type", {"schemaTitle": "system.Artifact"}),
    }
    return out


def unused_images(ir: Any) -> list[str]:
    """The container images of a pipeline's tasks (the local backend does not use them)."""
    images = {
        str(executor["container"].get("image", "")).strip()
        for executor in ir.executors.values()
        if isinstance(executor, dict) and "container" in executor
    }
    return sorted(i for i in images if i)


def images_warning(ir: Any) -> str | None:
    images = unused_images(ir)
    if not images:
        return None
    return (
        "container images are not used: the tasks' commands run on this host with its "
        f"tools and Python (image{'s' if len(images) > 1 else ''} {', '.join(images)})"
    )
