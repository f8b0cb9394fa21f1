"""The DAG engine: executes a PipelineSpec with the KFP backend's semantics.

One thread owns the run's state and reacts to events; container and importer
tasks run on a bounded pool of worker threads that start processes through the
compute backend. DAGs (sub-pipelines, conditions, exit handlers) and
ParallelFor loops are expanded in the engine thread as their inputs resolve.
"""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ketch.core.errors import InvalidSpec, KetchError
from ketch.pipelines import conditions
from ketch.pipelines.spec import PipelineIR, producers
from ketch.pipelines.values import coerce, integral

log = logging.getLogger(__name__)

PENDING, RUNNING, SUCCEEDED, FAILED, SKIPPED, CANCELED = (
    "PENDING",
    "RUNNING",
    "SUCCEEDED",
    "FAILED",
    "SKIPPED",
    "CANCELED",
)
TERMINAL = {SUCCEEDED, FAILED, SKIPPED, CANCELED}


def now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Node:
    """One task instance in a run: a container/importer task, a DAG, a loop or an iteration."""

    path: str
    name: str
    type: str  # container | importer | dag | loop | iteration
    task: dict[str, Any]
    component: dict[str, Any]
    scope: Scope | None
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    state: str = PENDING
    inputs: dict[str, Any] = field(default_factory=dict)  # parameters by name
    input_artifacts: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    output_artifacts: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    error: str | None = None
    cached: bool = False
    cache_key: str | None = None
    attempts: int = 0
    log_path: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    child: Scope | None = None  # for dag / iteration nodes
    iterations: list[Node] = field(default_factory=list)  # for loop nodes
    items: list[Any] = field(default_factory=list)
    next_iteration: int = 0
    execution_id: int | None = None
    reused: bool = False  # finished in an earlier attempt of the same run
    # True while a worker thread owns the node: its state may already be final,
    # but the engine has not recorded it yet, so nothing may act on it.
    inflight: bool = False
    resources: dict[str, Any] = field(default_factory=dict)  # requests and limits, as recorded

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL and not self.inflight

    @property
    def dir_name(self) -> str:
        return self.path.replace("[", "-").replace("]", "").replace("/", os.sep)


@dataclass
class Scope:
    """A DAG being executed: its inputs and the nodes of its tasks."""

    prefix: str
    dag: dict[str, Any]
    params: dict[str, Any]
    artifacts: dict[str, list[dict[str, Any]]]
    owner: Node | None
    nodes: dict[str, Node] = field(default_factory=dict)
    failing: bool = False

    def done(self) -> bool:
        return all(n.finished for n in self.nodes.values())


class TaskRunner:
    """What the engine needs to execute a leaf task (see ``executor.py``)."""

    def run(self, node: Node, ctx: RunContext) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def cancel_all(self) -> None:  # pragma: no cover - interface
        raise NotImplementedError


@dataclass
class RunContext:
    run_id: str
    display_name: str
    ir: PipelineIR
    pipeline_root: str
    work_dir: Path
    enable_caching: bool | None
    created_at: datetime
    canceled: threading.Event = field(default_factory=threading.Event)
    # Set when the process running the engine stops (server shutdown): the run is
    # left RUNNING in the store and resumed by the next start.
    interrupted: bool = False
    # From an earlier attempt of the same run (resume after a crash, retry):
    task_ids: dict[str, str] = field(default_factory=dict)
    finished: dict[str, dict[str, Any]] = field(default_factory=dict)


Listener = Callable[[Node], None]


def root_inputs(ir: PipelineIR, arguments: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Check the pipeline arguments against the root inputs; apply defaults."""
    defs = ir.root.get("inputDefinitions", {})
    pdefs = defs.get("parameters", {})
    unknown = sorted(set(arguments) - set(pdefs) - set(defs.get("artifacts", {})))
    if unknown:
        known = ", ".join(sorted(pdefs)) or "none"
        raise InvalidSpec(
            f"unknown pipeline parameter {unknown[0]!r}; the pipeline takes: {known}",
            field=f"arguments.{unknown[0]}",
        )
    params: dict[str, Any] = {}
    for name, pdef in pdefs.items():
        where = f"pipeline parameter {name!r}"
        if name in arguments:
            params[name] = coerce(arguments[name], pdef.get("parameterType"), where)
        elif "defaultValue" in pdef:
            params[name] = coerce(pdef["defaultValue"], pdef.get("parameterType"), where)
        elif pdef.get("isOptional"):
            continue
        else:
            raise InvalidSpec(
                "is required and has no default; pass it with --param "
                f"{name}=VALUE (or arguments={{'{name}': ...}})",
                field=where,
            )
    artifacts: dict[str, list[dict[str, Any]]] = {}
    for name, adef in defs.get("artifacts", {}).items():
        if name in arguments:
            value = arguments[name]
            uri = getattr(value, "uri", value)
            artifacts[name] = [
                {
                    "name": name,
                    "uri": str(uri),
                    "type": adef.get("artifactType", {}),
                    "metadata": dict(getattr(value, "metadata", {}) or {}),
                }
            ]
        elif not adef.get("isOptional"):
            raise InvalidSpec("artifact input is required", field=f"pipeline input {name!r}")
    return params, artifacts


class Engine:
    def __init__(
        self,
        ctx: RunContext,
        runner: TaskRunner,
        recorder: Any,
        max_parallelism: int | None = None,
        listener: Listener | None = None,
    ):
        self.ctx = ctx
        self.ir = ctx.ir
        self.runner = runner
        self.recorder = recorder
        self.listener = listener
        self.max_parallelism = max(1, max_parallelism or os.cpu_count() or 1)
        self.events: queue.Queue[tuple[str, Node | None]] = queue.Queue()
        self.pool = ThreadPoolExecutor(self.max_parallelism, thread_name_prefix="ketch-task")
        self.nodes: dict[str, Node] = {}
        self.running_leaves = 0
        self.root: Scope | None = None
        self._changed = False

    # ------------------------------------------------------------ entry point

    def execute(self, arguments: dict[str, Any]) -> tuple[str, dict[str, Any], str | None]:
        """Run to completion. Returns (state, outputs, error)."""
        root_params, root_artifacts = root_inputs(self.ir, arguments)
        self.root = Scope("", self.ir.root["dag"], root_params, root_artifacts, owner=None)
        self._populate(self.root)
        self._schedule_all()
        try:
            while not self.root.done():
                try:
                    kind, node = self.events.get(timeout=0.5)
                except queue.Empty:
                    continue
                if kind == "leaf-done" and node is not None:
                    self.running_leaves -= 1
                    node.inflight = False
                    self._finish(node)
                elif kind == "cancel":
                    self._cancel()
                self._schedule_all()
        finally:
            self.pool.shutdown(wait=True)
        outputs, artifacts = self._dag_outputs(self.root)
        state, error = self._root_state()
        return state, {"parameters": outputs, "artifacts": artifacts}, error

    def cancel(self, *, interrupt: bool = False) -> None:
        """Ask the run to stop (thread-safe): running tasks are terminated.

        ``interrupt=True`` is for a stopping server: the run is not canceled but
        left to be resumed when the server starts again.
        """
        self.ctx.interrupted = self.ctx.interrupted or interrupt
        self.ctx.canceled.set()
        self.events.put(("cancel", None))

    # ------------------------------------------------------------ expansion

    def _component(self, task: dict[str, Any]) -> dict[str, Any]:
        return self.ir.components[task["componentRef"]["name"]]

    def _populate(self, scope: Scope) -> None:
        for tname, task in scope.dag.get("tasks", {}).items():
            comp = self._component(task)
            if "parameterIterator" in task or "artifactIterator" in task:
                kind = "loop"
            elif "dag" in comp:
                kind = "dag"
            else:
                executor = self.ir.executors.get(comp.get("executorLabel", ""), {})
                kind = "importer" if "importer" in executor else "container"
            node = Node(
                path=scope.prefix + tname,
                name=tname,
                type=kind,
                task=task,
                component=comp,
                scope=scope,
            )
            if node.path in self.ctx.task_ids:
                node.id = self.ctx.task_ids[node.path]
            scope.nodes[tname] = node
            self.nodes[node.path] = node

    def _schedule_all(self) -> None:
        # Nodes can finish synchronously while scheduling (skipped, reused,
        # failed on inputs); repeat until a pass changes nothing.
        while self.root is not None:
            self._changed = False
            self._schedule(self.root)
            if not self._changed:
                break

    def _schedule(self, scope: Scope) -> None:
        for node in list(scope.nodes.values()):
            if node.state == PENDING:
                self._try_start(node, scope)
            elif node.state == RUNNING and node.child is not None:
                self._schedule(node.child)
                if node.child.done():
                    self._finish_dag(node)
            elif node.state == RUNNING and node.type == "loop":
                self._advance_loop(node)

    def _try_start(self, node: Node, scope: Scope) -> None:
        deps = [scope.nodes[d] for d in producers(node.task)]
        if not all(d.finished for d in deps):
            return
        strategy = node.task.get("triggerPolicy", {}).get(
            "strategy", "ALL_UPSTREAM_TASKS_SUCCEEDED"
        )
        tolerant = strategy == "ALL_UPSTREAM_TASKS_COMPLETED"
        if self.ctx.canceled.is_set():
            return self._end(node, CANCELED, "the run was canceled before this task started")
        bad = [d for d in deps if d.state in (FAILED, CANCELED)]
        if bad and not tolerant:
            return self._end(
                node, SKIPPED, f"not run: upstream task {bad[0].name!r} {bad[0].state}"
            )
        if scope.failing and not tolerant:
            return self._end(node, SKIPPED, "not run: another task in this DAG failed")
        try:
            self._resolve_inputs(node, scope)
            condition = node.task.get("triggerPolicy", {}).get("condition")
            if condition and not conditions.evaluate(condition, node.inputs, node.path):
                return self._end(node, SKIPPED, None)
        except KetchError as exc:
            return self._end(node, FAILED, str(exc))
        node.state = RUNNING
        node.started_at = now()
        if node.type == "dag":
            self._start_dag(node)
        elif node.type == "loop":
            self._start_loop(node)
        elif node.path in self.ctx.finished:
            self._reuse(node, self.ctx.finished[node.path])
        else:
            self.recorder.task_started(self.ctx, node)
            self._notify(node)
            self.running_leaves += 1
            node.inflight = True
            self.pool.submit(self._run_leaf, node)

    def _reuse(self, node: Node, prior: dict[str, Any]) -> None:
        """A task that finished in an earlier attempt of this run is not executed again."""
        node.outputs = dict(prior.get("parameters", {}))
        node.output_artifacts = {k: list(v) for k, v in prior.get("artifacts", {}).items()}
        node.cached = bool(prior.get("cached"))
        node.attempts = int(prior.get("attempts") or 1)
        node.log_path = prior.get("log_path")
        node.cache_key = prior.get("cache_key")
        node.started_at = prior.get("started_at") or node.started_at
        node.finished_at = prior.get("finished_at")
        node.state = SUCCEEDED
        node.reused = True
        self._finish(node)

    def _run_leaf(self, node: Node) -> None:
        try:
            self.runner.run(node, self.ctx)
        except KetchError as exc:
            node.state, node.error = FAILED, str(exc)
        except Exception as exc:  # a bug in Ketch must not hang the run
            log.exception("task %s crashed in the engine", node.path)
            node.state, node.error = FAILED, f"internal error: {type(exc).__name__}: {exc}"
        if node.state not in TERMINAL:
            node.state = FAILED
            node.error = node.error or "task ended without a state"
        self.events.put(("leaf-done", node))

    def _finish(self, node: Node) -> None:
        self._changed = True
        node.finished_at = node.finished_at or now()
        try:
            self.recorder.task_finished(self.ctx, node)
        except Exception:
            log.exception("could not record task %s", node.path)
        if node.state in (FAILED, CANCELED) and node.scope is not None:
            node.scope.failing = True
        self._notify(node)

    def _end(self, node: Node, state: str, error: str | None) -> None:
        node.state = state
        node.error = error
        node.started_at = node.started_at or now()
        node.finished_at = now()
        self._finish(node)

    def _notify(self, node: Node) -> None:
        if self.listener is not None:
            try:
                self.listener(node)
            except Exception:  # a progress display must never break a run
                log.debug("listener failed", exc_info=True)

    # ------------------------------------------------------------ DAGs

    def _child_inputs(self, node: Node) -> tuple[dict[str, Any], dict[str, Any]]:
        return dict(node.inputs), {k: list(v) for k, v in node.input_artifacts.items()}

    def _start_dag(self, node: Node) -> None:
        params, artifacts = self._child_inputs(node)
        node.child = Scope(node.path + "/", node.component["dag"], params, artifacts, owner=node)
        self._populate(node.child)
        self.recorder.task_started(self.ctx, node)
        self._notify(node)
        self._schedule(node.child)
        if node.child.done():
            self._finish_dag(node)

    def _finish_dag(self, node: Node) -> None:
        assert node.child is not None
        children = node.child.nodes.values()
        failed = [c for c in children if c.state == FAILED]
        canceled = [c for c in children if c.state == CANCELED]
        if failed:
            node.state = FAILED
            node.error = f"task {failed[0].path!r} failed: {failed[0].error}"
        elif canceled:
            node.state = CANCELED
        else:
            node.state = SUCCEEDED
            node.outputs, node.output_artifacts = self._dag_outputs(node.child)
        self._finish(node)

    def _dag_outputs(self, scope: Scope) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
        outs = scope.dag.get("outputs", {})
        params: dict[str, Any] = {}
        for name, sel in outs.get("parameters", {}).items():
            selectors = (
                [sel["valueFromParameter"]]
                if "valueFromParameter" in sel
                else sel.get("valueFromOneof", {}).get("parameterSelectors", [])
            )
            for s in selectors:
                producer = scope.nodes.get(s.get("producerSubtask", ""))
                if (
                    producer
                    and producer.state == SUCCEEDED
                    and s.get("outputParameterKey") in producer.outputs
                ):
                    params[name] = producer.outputs[s["outputParameterKey"]]
                    break
        artifacts: dict[str, list[dict[str, Any]]] = {}
        for name, sel in outs.get("artifacts", {}).items():
            for s in sel.get("artifactSelectors", []):
                producer = scope.nodes.get(s.get("producerSubtask", ""))
                if (
                    producer
                    and producer.state == SUCCEEDED
                    and s.get("outputArtifactKey") in producer.output_artifacts
                ):
                    artifacts[name] = producer.output_artifacts[s["outputArtifactKey"]]
                    break
        return params, artifacts

    # ------------------------------------------------------------ loops

    def _start_loop(self, node: Node) -> None:
        task = node.task
        if "parameterIterator" in task:
            it = task["parameterIterator"]
            items_spec = it.get("items", {})
            if "raw" in items_spec:
                import json

                try:
                    items = json.loads(items_spec["raw"])
                except json.JSONDecodeError as exc:
                    return self._end(node, FAILED, f"ParallelFor items are not valid JSON: {exc}")
            else:
                items = node.inputs.get(items_spec.get("inputParameter", ""))
            if isinstance(items, str):
                import json

                try:
                    items = json.loads(items)
                except json.JSONDecodeError:
                    pass
            if not isinstance(items, list):
                return self._end(
                    node, FAILED, f"ParallelFor needs a list to iterate over, got {items!r}"
                )
        else:
            it = task["artifactIterator"]
            items = node.input_artifacts.get(it.get("items", {}).get("inputArtifact", ""), [])
        node.items = [integral(i) for i in items]
        self.recorder.task_started(self.ctx, node)
        self._notify(node)
        self._advance_loop(node)

    def _advance_loop(self, node: Node) -> None:
        limit = int(node.task.get("iteratorPolicy", {}).get("parallelismLimit", 0) or 0)
        for it in node.iterations:
            if it.state == RUNNING and it.child is not None:
                self._schedule(it.child)
                if it.child.done():
                    self._finish_dag(it)
        active = sum(1 for it in node.iterations if it.state not in TERMINAL)
        while node.next_iteration < len(node.items) and (limit <= 0 or active < limit):
            if self.ctx.canceled.is_set() or (
                node.child is None and any(it.state == FAILED for it in node.iterations)
            ):
                break
            self._start_iteration(node, node.next_iteration)
            node.next_iteration += 1
            active += 1
        finished = all(it.state in TERMINAL for it in node.iterations)
        stopped = self.ctx.canceled.is_set() or any(it.state == FAILED for it in node.iterations)
        if finished and (node.next_iteration >= len(node.items) or stopped):
            self._finish_loop(node)

    def _start_iteration(self, loop: Node, index: int) -> None:
        item = loop.items[index]
        path = f"{loop.path}[{index}]"
        it = Node(
            path=path,
            name=f"{loop.name}[{index}]",
            type="iteration",
            task=loop.task,
            component=loop.component,
            scope=loop.scope,
        )
        if path in self.ctx.task_ids:
            it.id = self.ctx.task_ids[path]
        params, artifacts = self._child_inputs(loop)
        comp_inputs = loop.component.get("inputDefinitions", {})
        if "parameterIterator" in loop.task:
            key = loop.task["parameterIterator"]["itemInput"]
            ptype = comp_inputs.get("parameters", {}).get(key, {}).get("parameterType")
            try:
                params[key] = coerce(item, ptype, f"{path}: loop item")
            except InvalidSpec:
                params[key] = integral(item)  # items of mixed shape go through as they are
        else:
            key = loop.task["artifactIterator"]["itemInput"]
            artifacts[key] = [item]
        it.inputs = {"loop-item": item} if not isinstance(item, dict) or "uri" not in item else {}
        it.state = RUNNING
        it.started_at = now()
        it.child = Scope(path + "/", loop.component["dag"], params, artifacts, owner=it)
        loop.iterations.append(it)
        self.nodes[it.path] = it
        self._populate(it.child)
        self.recorder.task_started(self.ctx, it)
        self._notify(it)
        self._schedule(it.child)
        if it.child.done():
            self._finish_dag(it)

    def _finish_loop(self, node: Node) -> None:
        failed = [it for it in node.iterations if it.state == FAILED]
        canceled = [it for it in node.iterations if it.state == CANCELED]
        if failed:
            node.state, node.error = (
                FAILED,
                f"iteration {failed[0].path!r} failed: {failed[0].error}",
            )
        elif canceled or self.ctx.canceled.is_set():
            node.state = CANCELED
        else:
            node.state = SUCCEEDED
            dag_outs = node.component["dag"].get("outputs", {})
            for name, sel in dag_outs.get("parameters", {}).items():
                producer = sel.get("valueFromParameter", {}).get("producerSubtask")
                values: list[Any] = []
                for it in node.iterations:
                    if name not in it.outputs:
                        continue
                    inner = it.child.nodes.get(producer or "") if it.child else None
                    if (
                        inner is not None
                        and inner.type == "loop"
                        and isinstance(it.outputs[name], list)
                    ):
                        values.extend(it.outputs[name])  # Collected over nested loops is flat
                    else:
                        values.append(it.outputs[name])
                node.outputs[name] = values
            for name in dag_outs.get("artifacts", {}):
                arts: list[dict[str, Any]] = []
                for it in node.iterations:
                    arts.extend(it.output_artifacts.get(name, []))
                node.output_artifacts[name] = arts
        self._finish(node)

    # ------------------------------------------------------------ cancel & result

    def _cancel(self) -> None:
        # Running processes are terminated; pending nodes become CANCELED as the
        # scheduler reaches them, and loops stop expanding.
        self.runner.cancel_all()

    def _root_state(self) -> tuple[str, str | None]:
        assert self.root is not None
        nodes = list(self.root.nodes.values())
        failed = [
            n
            for n in self.nodes.values()
            if n.state == FAILED and n.type in ("container", "importer")
        ]
        if self.ctx.canceled.is_set():
            return CANCELED, "the run was canceled"
        if any(n.state == FAILED for n in nodes):
            culprit = failed[0] if failed else next(n for n in nodes if n.state == FAILED)
            return FAILED, f"task {culprit.path!r} failed: {culprit.error}"
        if any(n.state == CANCELED for n in nodes):
            return CANCELED, "the run was canceled"
        return SUCCEEDED, None

    # ------------------------------------------------------------ input resolution

    def _resolve_inputs(self, node: Node, scope: Scope) -> None:
        comp_defs = node.component.get("inputDefinitions", {})
        pdefs = comp_defs.get("parameters", {})
        task_inputs = node.task.get("inputs", {})
        params: dict[str, Any] = {}
        for name, src in task_inputs.get("parameters", {}).items():
            where = f"task {node.path!r} input {name!r}"
            found, value = self._param_source(src, scope, where, node)
            if found and "parameterExpressionSelector" in src:
                value = conditions.select(src["parameterExpressionSelector"], value, where)
            if found:
                params[name] = coerce(value, pdefs.get(name, {}).get("parameterType"), where)
        iterator = node.task.get("parameterIterator") or node.task.get("artifactIterator") or {}
        item_input = iterator.get("itemInput")
        for name, pdef in pdefs.items():
            if name in params or name == item_input:
                continue
            if "defaultValue" in pdef:
                params[name] = coerce(
                    pdef["defaultValue"],
                    pdef.get("parameterType"),
                    f"task {node.path!r} input {name!r}",
                )
            elif not pdef.get("isOptional"):
                why = self._missing_reason(task_inputs.get("parameters", {}).get(name), scope)
                raise InvalidSpec(
                    f"required input {name!r} has no value{why}", field=f"task {node.path!r}"
                )
        artifacts: dict[str, list[dict[str, Any]]] = {}
        adefs = comp_defs.get("artifacts", {})
        for name, src in task_inputs.get("artifacts", {}).items():
            if "componentInputArtifact" in src:
                arts = scope.artifacts.get(src["componentInputArtifact"])
            elif "taskOutputArtifact" in src:
                ref = src["taskOutputArtifact"]
                producer = scope.nodes[ref["producerTask"]]
                arts = (
                    producer.output_artifacts.get(ref["outputArtifactKey"])
                    if producer.state == SUCCEEDED
                    else None
                )
            else:
                arts = None
            if arts is not None:
                artifacts[name] = arts
        for name, adef in adefs.items():
            if name not in artifacts and name != item_input and not adef.get("isOptional"):
                why = self._missing_reason(task_inputs.get("artifacts", {}).get(name), scope)
                raise InvalidSpec(
                    f"required artifact input {name!r} has no value{why}",
                    field=f"task {node.path!r}",
                )
        node.inputs = params
        node.input_artifacts = artifacts

    def _run_placeholders(self, text: str, node: Node) -> str:
        """Run and task placeholders passed as task arguments (``dsl.PIPELINE_JOB_NAME_PLACEHOLDER``)."""
        values = run_values(self.ctx, node)
        for key, value in values.items():
            text = text.replace("{{$." + key + "}}", value)
        return text

    def _param_source(
        self, src: dict[str, Any], scope: Scope, where: str, node: Node
    ) -> tuple[bool, Any]:
        if "componentInputParameter" in src:
            key = src["componentInputParameter"]
            return (key in scope.params, scope.params.get(key))
        if "taskOutputParameter" in src:
            ref = src["taskOutputParameter"]
            producer = scope.nodes[ref["producerTask"]]
            key = ref["outputParameterKey"]
            if producer.state == SUCCEEDED and key in producer.outputs:
                return True, producer.outputs[key]
            return False, None
        if "runtimeValue" in src:
            rv = src["runtimeValue"]
            if "constant" in rv:
                const = rv["constant"]
                if isinstance(const, str) and "{{$." in const:
                    const = self._run_placeholders(const, node)
                return True, const
            const = rv.get("constantValue", {})
            for k in ("stringValue", "intValue", "doubleValue"):
                if k in const:
                    return True, int(const[k]) if k == "intValue" else const[k]
            return False, None
        if "taskFinalStatus" in src:
            producer = scope.nodes[src["taskFinalStatus"]["producerTask"]]
            error: dict[str, Any] = {}
            if producer.state in (FAILED, CANCELED):
                error = {
                    "code": 2 if producer.state == FAILED else 1,
                    "message": producer.error or "",
                }
            return True, {
                "state": final_state(producer),
                "pipelineJobResourceName": resource_name(self.ctx),
                "pipelineTaskName": producer.name,
                "error": error,
            }
        raise InvalidSpec(f"unsupported input source {sorted(src)}", field=where)

    def _missing_reason(self, src: dict[str, Any] | None, scope: Scope) -> str:
        if not src:
            return " (nothing is connected to it)"
        ref = src.get("taskOutputParameter") or src.get("taskOutputArtifact")
        if ref:
            producer = scope.nodes.get(ref.get("producerTask", ""))
            if producer is not None:
                return f" (producer task {producer.name!r} is {producer.state})"
        return ""


# The state PipelineTaskFinalStatus reports: the KFP backend hands over the ML
# Metadata state of the producer's execution, not the run-state name.
_FINAL_STATES = {SUCCEEDED: "COMPLETE", FAILED: "FAILED", CANCELED: "CANCELED", SKIPPED: "CANCELED"}


def final_state(node: Node) -> str:
    if node.state == SUCCEEDED and node.cached:
        return "CACHED"
    return _FINAL_STATES.get(node.state, node.state)


# Kubernetes' generateName suffix: 5 characters from this alphabet, after a base
# cut to 58 characters (a name is at most 63).
_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def resource_name(ctx: RunContext) -> str:
    """The run's resource name as the KFP backend names it: the Argo workflow's name,
    ``<pipeline-name>-<5 characters>`` (generateName ``<pipeline-name>-``). The
    suffix is derived from the run id, so it stays the same when the run resumes."""
    digest = int(hashlib.sha256(ctx.run_id.encode()).hexdigest(), 16)
    suffix = ""
    for _ in range(5):
        digest, index = divmod(digest, len(_SUFFIX_ALPHABET))
        suffix += _SUFFIX_ALPHABET[index]
    base = ctx.ir.name.rsplit("/", 1)[-1] + "-"
    return base[:58] + suffix


def run_values(ctx: RunContext, node: Node) -> dict[str, str]:
    """The values of KFP's run and task placeholders for a task."""
    stamp = ctx.created_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "pipeline_job_name": ctx.display_name,
        "pipeline_job_resource_name": resource_name(ctx),
        "pipeline_job_uuid": ctx.run_id,
        "pipeline_task_name": node.name,
        "pipeline_task_uuid": node.id,
        "pipeline_root": ctx.pipeline_root,
        "pipeline_job_create_time_utc": stamp,
        "pipeline_job_schedule_time_utc": stamp,
        "workspace_path": str(ctx.work_dir / "workspace"),
    }
