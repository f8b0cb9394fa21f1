"""The TrainJob controller (Kubeflow Trainer, ``trainer.kubeflow.org/v1alpha1``).

A TrainJob names a runtime: ``runtimeRef.kind: TrainingRuntime`` is looked up
in the job's namespace, ``ClusterTrainingRuntime`` among the cluster-scoped
ones. When ``runtimeRef.kind`` is left out it is ClusterTrainingRuntime, as in
Kubeflow; when no cluster runtime has that name, a TrainingRuntime of that name
in the job's namespace is used (Kubeflow would fail the job).
A missing runtime fails the job (reason ``TrainingRuntimeNotFound``) saying which
runtimes exist. The runtime is read once, when the job first runs, and kept
while the job lives (Trainer keeps a snapshot the same way).

The job then runs through the shared training machinery
(:class:`~ketch.training.controller.TrainingJobController`: gang admission,
restarts, deadline, suspend) as the plan of :mod:`ketch.training.mlpolicy`: the
initializers first (:mod:`ketch.training.initializers` fetches ``storageUri``
into the job's workspace when the runtime has no initializer command of its
own), then ``numNodes`` node processes with the ML policy's environment
(:mod:`ketch.training.trainer_envs`). The workspace, which Trainer mounts at
``/workspace``, is ``KETCH_HOME/workspaces/trainjobs/<namespace>/<name>``; it is
removed with the job.

Status is Trainer's: conditions ``Created`` (``JobsCreationSucceeded``),
``Suspended`` (``Suspended``/``Resumed``), ``Complete`` (``AllJobsCompleted``)
and ``Failed`` (``FailedJobs``, ``DeadlineExceeded``, ``TrainingRuntimeNotFound``,
``InvalidSpec``, ``JobsCreationFailed``); ``jobsStatus`` per replicated job
(``ready``, ``succeeded``, ``failed``, ``active``, ``suspended``, counting child
Jobs as JobSet does); ``trainerStatus`` from what the trainer reports
(:mod:`ketch.training.progress`); plus ``startTime``, ``completionTime``,
``restartCount`` and ``logPaths`` (``node-0``, ``dataset-initializer-0``, ...) for
``ketch logs trainjob NAME --replica node-0``. A TrainJob with ``managedBy:
kueue.x-k8s.io/multikueue`` is left to that manager.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ketch.core import config
from ketch.core.backend import Backend, ProcessSpec, command_entry
from ketch.core.controller import Controller, Key
from ketch.core.errors import InvalidSpec, NotFound
from ketch.core.resource import DEFAULT_NAMESPACE, Resource, get_condition, set_condition
from ketch.core.store.resources import ResourceStore
from ketch.training import commands, progress, trainer_envs
from ketch.training.controller import (
    BACKOFF,
    FAILED,
    RUNNING,
    SUCCEEDED,
    Events,
    Replica,
    Runtime,
    TrainingJobController,
    _is_true,
)
from ketch.training.envs import Addresses
from ketch.training.mlpolicy import TrainJobPlan, plan
from ketch.training.runtimes import install_builtins
from ketch.training.spec import Job
from ketch.training.trainer_spec import (
    CLUSTER_RUNTIME,
    MULTIKUEUE,
    NAMESPACED_RUNTIME,
    RuntimeRef,
    TrainingRuntimeSpec,
    parse_runtime,
    parse_trainjob,
)
from ketch.training.validation import ManifestValidator

log = logging.getLogger("ketch.training.trainjob")

KIND = "TrainJob"
FAILED_REASONS = {
    "failed": "FailedJobs",
    "backoff": "FailedJobs",
    "deadline": "DeadlineExceeded",
    "runtime": "TrainingRuntimeNotFound",
    "invalid": "InvalidSpec",
    "start": "JobsCreationFailed",
}


class RuntimeNotFound(InvalidSpec):
    """The TrainJob's runtimeRef names no runtime this server has."""


def workspace_dir(namespace: str, name: str) -> Path:
    """The job's local stand-in for Trainer's ``/workspace`` volume."""
    return config.ketch_home() / "workspaces" / "trainjobs" / namespace / name


def find_runtime(
    store: ResourceStore, namespace: str, ref: RuntimeRef
) -> tuple[str, TrainingRuntimeSpec]:
    """``(label, spec)`` of the runtime ``ref`` names; ``RuntimeNotFound`` says what exists."""
    kinds = [ref.kind] if ref.kind else [CLUSTER_RUNTIME, NAMESPACED_RUNTIME]
    for kind in kinds:
        found = _get_runtime(store, kind, namespace, ref.name)
        if found is not None:
            label = f"{kind} {found.metadata.name!r}"
            return label, parse_runtime(found.spec, field=f"{kind}({found.metadata.name}).spec")
    cluster = sorted({r.metadata.name for r in store.list(CLUSTER_RUNTIME, namespace=None)})
    local = sorted(r.metadata.name for r in store.list(NAMESPACED_RUNTIME, namespace=namespace))
    wanted = ref.kind or f"{NAMESPACED_RUNTIME} or {CLUSTER_RUNTIME}"
    where = f" in namespace {namespace!r}" if ref.kind == NAMESPACED_RUNTIME else ""
    known = [f"ClusterTrainingRuntimes: {', '.join(cluster) or 'none'}"]
    known.append(f"TrainingRuntimes in {namespace!r}: {', '.join(local) or 'none'}")
    raise RuntimeNotFound(
        f"{wanted} {ref.name!r} not found{where}; {'; '.join(known)}",
        field="spec.runtimeRef.name",
        hint="list them with: ketch get clustertrainingruntimes",
    )


def _get_runtime(store: ResourceStore, kind: str, namespace: str, name: str) -> Resource | None:
    if kind == NAMESPACED_RUNTIME:
        try:
            return store.get(kind, namespace, name)
        except NotFound:
            return None
    try:  # cluster-scoped: stored in the default namespace, else wherever it was applied
        return store.get(kind, DEFAULT_NAMESPACE, name)
    except NotFound:
        pass
    return next((r for r in store.list(kind, namespace=None) if r.metadata.name == name), None)


_LAUNCHER_ERRORS = ("torch.distributed.elastic.",)  # torchrun's summary of a worker's error
_ERROR_LINE = re.compile(r"^(error\b|[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b)")


def _last_error(path: Path | None) -> str:
    """What a failed replica's log ends with: its last error line (a Python exception,
    ``error: ...``, not torchrun's summary of it), else its last line with words in it."""
    if path is None:
        return ""
    try:
        with path.open("rb") as handle:
            handle.seek(0, 2)
            handle.seek(max(0, handle.tell() - 16384))
            lines = [line.strip() for line in handle.read().decode(errors="replace").splitlines()]
    except OSError:
        return ""
    lines = [line for line in lines if any(c.isalnum() for c in line)]
    errors = [
        line for line in lines if _ERROR_LINE.match(line) and not line.startswith(_LAUNCHER_ERRORS)
    ]
    found = errors[-1] if errors else None
    text = found if found is not None else (lines[-1] if lines else "")
    return text[:400]


class TrainJobController(TrainingJobController):
    """Runs TrainJobs as their runtime's plan, with Trainer's status."""

    kind = KIND

    def __init__(self, store: ResourceStore, backend: Backend) -> None:
        super().__init__(store, backend)
        # the runtime each job resolved, kept while it lives: (runtimeRef, label, spec)
        self._snapshots: dict[Key, tuple[tuple[str | None, str], str, TrainingRuntimeSpec]] = {}
        self._reported: dict[Key, float] = {}

    # -- what runs -----------------------------------------------------------------

    def _parse(self, key: Key, raw_spec: dict[str, Any]) -> Job | None:
        namespace, name = key
        spec = parse_trainjob(raw_spec)
        if spec.managedBy == MULTIKUEUE:
            return None
        ref = (spec.runtimeRef.kind, spec.runtimeRef.name)
        snapshot = self._snapshots.get(key)
        if snapshot is None or snapshot[0] != ref:
            snapshot = (ref, *find_runtime(self.store, namespace, spec.runtimeRef))
            self._snapshots[key] = snapshot
        _ref, label, runtime = snapshot
        return plan(name, namespace, spec, runtime, label, workspace_dir(namespace, name))

    def _reportable(self, raw_spec: dict[str, Any]) -> bool:
        return True

    def _invalid_message(self, name: str, exc: InvalidSpec) -> str:
        if isinstance(exc, RuntimeNotFound):
            return str(exc)
        return f"TrainJob {name} cannot run: {exc}"

    def _invalid_cause(self, exc: InvalidSpec) -> str:
        return "runtime" if isinstance(exc, RuntimeNotFound) else "invalid"

    def _stage(self, job: Job, rtype: str) -> int:
        assert isinstance(job, TrainJobPlan)
        return job.stages.get(rtype, 0)

    def _log_key(self, job: Job, rtype: str, index: int, replica_name: str) -> str:
        return f"{rtype}-{index}"

    def _allocate(self, job: Job, workdir: Path) -> Addresses:
        assert isinstance(job, TrainJobPlan)
        return trainer_envs.allocate(job, self._reserved_ports, workdir)

    def _replica_env(
        self, job: Job, rtype: str, index: int, addresses: Addresses
    ) -> dict[str, str]:
        assert isinstance(job, TrainJobPlan)
        runtime = self.runtimes.get((job.namespace, job.name))
        assert runtime is not None and runtime.workdir is not None  # set by _start
        return trainer_envs.replica_env(job, rtype, index, addresses, runtime.workdir)

    def _replica_spec(
        self,
        job: Job,
        rtype: str,
        index: int,
        replica_name: str,
        addresses: Addresses,
        workdir: Path,
    ) -> ProcessSpec:
        assert isinstance(job, TrainJobPlan)
        spec = super()._replica_spec(job, rtype, index, replica_name, addresses, workdir)
        container = job.container(rtype)
        workspace = job.workspace
        command = commands.resolve(trainer_envs.command(job, rtype, container), spec.env)
        return dataclasses.replace(
            spec,
            name=f"TrainJob {job.namespace}/{job.name} {rtype}-{index}",
            command=command,
            python=command_entry(command, sys.executable),
            env={k: trainer_envs.rewrite(v, workspace) for k, v in spec.env.items()},
            cwd=Path(trainer_envs.rewrite(container.workingDir, workspace))
            if container.workingDir
            else None,
        )

    def _start(
        self, key: Key, uid: str | None, job: Job, status: dict[str, Any], events: Events
    ) -> Runtime:
        assert isinstance(job, TrainJobPlan)
        runtime = super()._start(key, uid, job, status, events)
        if get_condition(status, "Created") is None:
            set_condition(
                status, "Created", "True", "JobsCreationSucceeded", "Succeeded to create Jobs"
            )
        events.append(
            ("RuntimeResolved", f"running with {job.runtime} ({job.framework})", "Normal")
        )
        if job.skipped:
            events.append(
                (
                    "JobsNotRun",
                    f"replicated jobs {', '.join(job.skipped)} of {job.runtime} are not run on this machine",
                    "Normal",
                )
            )
        return runtime

    def _succeeded(self, job: Job, runtime: Runtime) -> bool:
        assert isinstance(job, TrainJobPlan)
        if runtime.pending():
            return False
        trainers = [r for r in runtime.replicas.values() if r.rtype == job.trainer_step]
        return bool(trainers) and all(r.state == SUCCEEDED for r in trainers)

    def _observe(self, key: Key, job: Job, runtime: Runtime, status: dict[str, Any]) -> None:
        if runtime.workdir is None:
            return
        path = trainer_envs.status_file(runtime.workdir)
        try:
            mtime = path.stat().st_mtime_ns
        except OSError:
            return
        if self._reported.get(key) == mtime:
            return
        reported = progress.read(path)
        if reported is not None:
            status["trainerStatus"] = reported
            self._reported[key] = mtime

    # -- Trainer's vocabulary ------------------------------------------------------

    def _terminal(self, status: dict[str, Any]) -> bool:
        return _is_true(status, "Complete") or _is_true(status, "Failed")

    def _mark_created(
        self, name: str, status: dict[str, Any], events: Events, *, quiet: bool = False
    ) -> None:
        """Trainer says Created once the jobs exist (see :meth:`_start`)."""

    def _mark_suspended(self, job: Job, status: dict[str, Any], events: Events) -> None:
        if not _is_true(status, "Suspended"):
            set_condition(status, "Suspended", "True", "Suspended", "TrainJob is suspended")
            status.pop("startTime", None)
            events.append(("Suspended", f"TrainJob {job.name} is suspended", "Normal"))

    def _mark_resumed(self, name: str, status: dict[str, Any], events: Events) -> None:
        if _is_true(status, "Suspended"):
            set_condition(status, "Suspended", "False", "Resumed", "TrainJob is resumed")
            events.append(("Resumed", f"TrainJob {name} is resumed", "Normal"))

    def _mark_running(self, job: Job, status: dict[str, Any], events: Events) -> None:
        """Trainer has no Running condition: ``jobsStatus`` says what is active."""

    def _mark_restarting(
        self, job: Job, status: dict[str, Any], events: Events, restarted: list[Replica]
    ) -> None:
        names = ", ".join(f"{r.rtype}-{r.index}" for r in restarted)
        events.append(
            ("Restarting", f"TrainJob {job.name} restarts {names} after a failure", "Warning")
        )

    def _mark_finished(
        self, status: dict[str, Any], events: Events, outcome: str, cause: str, message: str
    ) -> None:
        if outcome == "Succeeded":
            set_condition(status, "Complete", "True", "AllJobsCompleted", message)
            events.append(("Completed", message, "Normal"))
            return
        reason = FAILED_REASONS.get(cause, "FailedJobs")
        set_condition(status, "Failed", "True", reason, message)
        events.append((reason, message, "Warning"))

    def _success_message(self, job: Job) -> str:
        return "jobset completed successfully"

    def _failure_message(self, job: Job, failed: list[Replica]) -> str:
        replica = failed[0]
        code = replica.exit_code
        what = (
            f"{replica.rtype}-{replica.index} exited with code {code}"
            if code is not None
            else (f"{replica.rtype}-{replica.index} was stopped")
        )
        detail = _last_error(replica.spec.stdout_path) if code is not None else ""
        message = f"jobset failed due to one or more job failures: {what}"
        return f"{message}: {detail}" if detail else message

    def _backoff_message(self, job: Job) -> str:
        limit = job.run_policy.backoffLimit
        return f"jobset failed due to one or more job failures: the trainer's pods restarted {limit} times (backoffLimit)"

    def _deadline_message(self, job: Job) -> str:
        seconds = job.run_policy.activeDeadlineSeconds
        return (
            f"TrainJob exceeded its activeDeadlineSeconds ({seconds}s); its processes were stopped"
        )

    def _write_replicas(self, status: dict[str, Any], job: Job, runtime: Runtime | None) -> None:
        status["jobsStatus"] = jobs_status(job, runtime)

    # -- stopping ------------------------------------------------------------------

    def _teardown(self, key: Key, *, deleted: bool = False) -> None:
        runtime = self.runtimes.get(key)
        super()._teardown(key, deleted=deleted)
        if not deleted:
            return
        self._snapshots.pop(key, None)
        self._reported.pop(key, None)
        namespace, name = key
        if runtime is not None and runtime.workdir is not None:
            trainer_envs.status_file(runtime.workdir).unlink(missing_ok=True)
        shutil.rmtree(workspace_dir(namespace, name), ignore_errors=True)


def jobs_status(job: Job, runtime: Runtime | None) -> list[dict[str, Any]]:
    """``status.jobsStatus``: per replicated job, its one child Job counted as JobSet does."""
    out: list[dict[str, Any]] = []
    suspended = 1 if job.run_policy.suspend else 0
    for step in job.info.replica_types:
        replicas = (
            [] if runtime is None else [r for r in runtime.replicas.values() if r.rtype == step]
        )
        states = [r.state for r in replicas]
        succeeded = 1 if states and all(s == SUCCEEDED for s in states) else 0
        failed = 1 if FAILED in states else 0
        active = 1 if (RUNNING in states or BACKOFF in states) and not failed else 0
        ready = 1 if active and all(s in (RUNNING, SUCCEEDED) for s in states) else 0
        out.append(
            {
                "name": step,
                "ready": ready,
                "succeeded": succeeded,
                "failed": failed,
                "active": active,
                "suspended": suspended,
            }
        )
    return out


# -- registration ------------------------------------------------------------------


def _spec(manifest: dict[str, Any]) -> dict[str, Any]:
    spec = manifest.get("spec")
    if not isinstance(spec, dict):
        raise InvalidSpec(
            f"a {manifest.get('kind') or 'manifest'} needs a spec object", field="spec"
        )
    return spec


def _check_trainjob(manifest: dict[str, Any]) -> None:
    parse_trainjob(_spec(manifest))


def _check_runtime(manifest: dict[str, Any]) -> None:
    parse_runtime(_spec(manifest))


#: refuses a TrainJob whose spec does not parse (the runtime is looked up when it runs)
validate_trainjob = ManifestValidator(KIND, _check_trainjob)
#: refuse a (Cluster)TrainingRuntime whose spec does not parse (replicated jobs without
#: containers included)
validate_runtime = ManifestValidator(NAMESPACED_RUNTIME, _check_runtime)
validate_cluster_runtime = ManifestValidator(CLUSTER_RUNTIME, _check_runtime)


def _factory(store: ResourceStore, backend: Backend) -> Controller:
    try:
        install_builtins(store)
    except Exception:  # the server still runs; TrainJobs naming a built-in say it is missing
        log.exception("could not install the built-in ClusterTrainingRuntimes")
    return TrainJobController(store, backend)


FACTORY: Callable[[ResourceStore, Backend], Controller] = _factory


__all__ = ["FACTORY", "TrainJobController", "find_runtime", "jobs_status"]
