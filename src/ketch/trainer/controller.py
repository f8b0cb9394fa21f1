"""The TrainJob controller (Kubeflow Trainer, ``trainer.kubeflow.org/v1alpha1``).

A TrainJob names a runtime, looked up as :func:`ketch.trainer.runtimes.find_runtime`
says; a missing runtime fails the job (reason ``TrainingRuntimeNotFound``) saying
which runtimes exist. The runtime is read once, when the job first runs, and kept
while the job lives (Trainer keeps a snapshot the same way).

The job then runs through the shared gang machinery
(:class:`~ketch.core.workloads.controller.GangController`: gang admission,
restarts, deadline, suspend) as the plan of :mod:`ketch.trainer.mlpolicy`: the
initializers first (:mod:`ketch.trainer.initializers` fetches ``storageUri``
into the job's workspace when the runtime has no initializer command of its
own), then ``numNodes`` node processes with the ML policy's environment
(:mod:`ketch.trainer.envs`). The workspace, which Trainer mounts at
``/workspace``, is ``KETCH_HOME/workspaces/trainjobs/<namespace>/<name>``; it is
removed with the job.

Status is Trainer's: conditions ``Created`` (``JobsCreationSucceeded``),
``Suspended`` (``Suspended``/``Resumed``), ``Complete`` (``AllJobsCompleted``)
and ``Failed`` (``FailedJobs``, ``DeadlineExceeded``, ``TrainingRuntimeNotFound``,
``InvalidSpec``, ``JobsCreationFailed``); ``jobsStatus`` per replicated job
(``ready``, ``succeeded``, ``failed``, ``active``, ``suspended``, counting child
Jobs as JobSet does); ``trainerStatus`` from what the trainer reports
(:mod:`ketch.trainer.progress`); plus ``startTime``, ``completionTime``,
``restartCount`` and ``logPaths`` (``node-0``, ``dataset-initializer-0``, ...) for
``ketch logs trainjob NAME --replica node-0``. A TrainJob with ``managedBy:
kueue.x-k8s.io/multikueue`` is left to that manager.

Each process is a pod named as JobSet's are, ``<trainjob>-<step>-0-<index>`` (the
one child Job of each replicated job, then the completion index), with JobSet's
labels (``jobset.sigs.k8s.io/jobset-name``, ``jobset.sigs.k8s.io/replicatedjob-name``,
``batch.kubernetes.io/job-completion-index``, ...), which ``TrainerClient`` reads a
job's steps and logs from.
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
from ketch.core.conditions import get_condition, is_true
from ketch.core.controller import Controller, Events, Key
from ketch.core.errors import InvalidSpec
from ketch.core.resource import set_condition
from ketch.core.store.resources import ResourceStore
from ketch.core.workloads import containers
from ketch.core.workloads.controller import GangController
from ketch.core.workloads.gang import (
    BACKOFF,
    FAILED,
    RUNNING,
    SUCCEEDED,
    Addresses,
    CleanPodPolicy,
    Gang,
    GangRun,
    Replica,
)
from ketch.trainer import envs, progress
from ketch.trainer.mlpolicy import TrainJobPlan, plan
from ketch.trainer.runtimes import RuntimeNotFound, find_runtime, install_builtins
from ketch.trainer.spec import MULTIKUEUE, TrainingRuntimeSpec, parse_trainjob

log = logging.getLogger("ketch.trainer.controller")

KIND = "TrainJob"
FAILED_REASONS = {
    "failed": "FailedJobs",
    "backoff": "FailedJobs",
    "deadline": "DeadlineExceeded",
    "runtime": "TrainingRuntimeNotFound",
    "invalid": "InvalidSpec",
    "start": "JobsCreationFailed",
}


def workspace_dir(namespace: str, name: str) -> Path:
    """The job's local stand-in for Trainer's ``/workspace`` volume."""
    return config.ketch_home() / "workspaces" / "trainjobs" / namespace / name


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


class TrainJobController(GangController):
    """Runs TrainJobs as their runtime's plan, with Trainer's status."""

    kind = KIND

    def __init__(self, store: ResourceStore, backend: Backend) -> None:
        super().__init__(store, backend)
        # the runtime each job resolved, kept while it lives: (runtimeRef, label, spec)
        self._snapshots: dict[Key, tuple[tuple[str | None, str], str, TrainingRuntimeSpec]] = {}
        self._reported: dict[Key, float] = {}

    # -- what runs -----------------------------------------------------------------

    def _parse(self, key: Key, raw_spec: dict[str, Any]) -> TrainJobPlan | None:
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

    def _invalid_message(self, name: str, exc: InvalidSpec) -> str:
        if isinstance(exc, RuntimeNotFound):
            return str(exc)
        return f"TrainJob {name} cannot run: {exc}"

    def _invalid_cause(self, exc: InvalidSpec) -> str:
        return "runtime" if isinstance(exc, RuntimeNotFound) else "invalid"

    def _stage(self, job: Gang, rtype: str) -> int:
        assert isinstance(job, TrainJobPlan)
        return job.stages.get(rtype, 0)

    def _log_key(self, job: Gang, rtype: str, index: int, replica_name: str) -> str:
        return f"{rtype}-{index}"

    def _pod_name(self, job: Gang, replica: Replica) -> str:
        return f"{job.name}-{replica.rtype}-0-{replica.index}"

    def _pod_labels(self, job: Gang, replica: Replica) -> dict[str, str]:
        return jobset_labels(job.name, replica.rtype, replica.index)

    def _pods_removed_on_finish(self, job: Gang) -> CleanPodPolicy:
        return "None"  # JobSet keeps a finished job's pods (and TrainerClient reads them)

    def _allocate(self, job: Gang, workdir: Path) -> Addresses:
        assert isinstance(job, TrainJobPlan)
        return envs.allocate(job, self.backend, workdir)

    def _replica_env(
        self, job: Gang, rtype: str, index: int, addresses: Addresses
    ) -> dict[str, str]:
        assert isinstance(job, TrainJobPlan)
        run = self.runs.get((job.namespace, job.name))
        assert run is not None and run.workdir is not None  # set by _start
        return envs.replica_env(job, rtype, index, addresses, run.workdir)

    def _replica_spec(
        self,
        job: Gang,
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
        command = containers.resolve(envs.command(job, rtype, container), spec.env)
        return dataclasses.replace(
            spec,
            name=f"TrainJob {job.namespace}/{job.name} {rtype}-{index}",
            command=command,
            python=command_entry(command, sys.executable),
            env={k: envs.rewrite(v, workspace) for k, v in spec.env.items()},
            cwd=Path(envs.rewrite(container.workingDir, workspace))
            if container.workingDir
            else None,
            owned=(*spec.owned, workspace),  # its profile's OS user's in multi-user mode
        )

    def _start(
        self, key: Key, uid: str | None, job: Gang, status: dict[str, Any], events: Events
    ) -> GangRun:
        assert isinstance(job, TrainJobPlan)
        run = super()._start(key, uid, job, status, events)
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
        return run

    def _succeeded(self, job: Gang, run: GangRun) -> bool:
        assert isinstance(job, TrainJobPlan)
        if run.pending():
            return False
        trainers = [r for r in run.replicas.values() if r.rtype == job.trainer_step]
        return bool(trainers) and all(r.state == SUCCEEDED for r in trainers)

    def _observe(self, key: Key, job: Gang, run: GangRun, status: dict[str, Any]) -> None:
        if run.workdir is None:
            return
        path = envs.status_file(run.workdir)
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
        return is_true(status, "Complete") or is_true(status, "Failed")

    def _mark_created(
        self, name: str, status: dict[str, Any], events: Events, *, quiet: bool = False
    ) -> None:
        """Trainer says Created once the jobs exist (see :meth:`_start`)."""

    def _mark_suspended(self, job: Gang, status: dict[str, Any], events: Events) -> None:
        if not is_true(status, "Suspended"):
            set_condition(status, "Suspended", "True", "Suspended", "TrainJob is suspended")
            status.pop("startTime", None)
            events.append(("Suspended", f"TrainJob {job.name} is suspended", "Normal"))

    def _mark_resumed(self, name: str, status: dict[str, Any], events: Events) -> None:
        if is_true(status, "Suspended"):
            set_condition(status, "Suspended", "False", "Resumed", "TrainJob is resumed")
            events.append(("Resumed", f"TrainJob {name} is resumed", "Normal"))

    def _mark_running(self, job: Gang, status: dict[str, Any], events: Events) -> None:
        """Trainer has no Running condition: ``jobsStatus`` says what is active."""

    def _mark_restarting(
        self, job: Gang, status: dict[str, Any], events: Events, restarted: list[Replica]
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

    def _success_message(self, job: Gang) -> str:
        return "jobset completed successfully"

    def _failure_message(self, job: Gang, failed: list[Replica]) -> str:
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

    def _backoff_message(self, job: Gang) -> str:
        limit = job.run_policy.backoffLimit
        return f"jobset failed due to one or more job failures: the trainer's pods restarted {limit} times (backoffLimit)"

    def _deadline_message(self, job: Gang) -> str:
        seconds = job.run_policy.activeDeadlineSeconds
        return (
            f"TrainJob exceeded its activeDeadlineSeconds ({seconds}s); its processes were stopped"
        )

    def _write_replicas(self, status: dict[str, Any], job: Gang, run: GangRun | None) -> None:
        status["jobsStatus"] = jobs_status(job, run)

    # -- stopping ------------------------------------------------------------------

    def _teardown(self, key: Key, *, deleted: bool = False) -> None:
        run = self.runs.get(key)
        super()._teardown(key, deleted=deleted)
        if not deleted:
            return
        self._snapshots.pop(key, None)
        self._reported.pop(key, None)
        namespace, name = key
        if run is not None and run.workdir is not None:
            envs.status_file(run.workdir).unlink(missing_ok=True)
        shutil.rmtree(workspace_dir(namespace, name), ignore_errors=True)


def jobset_labels(name: str, step: str, index: int) -> dict[str, str]:
    """The labels JobSet puts on the pod of completion index ``index`` of replicated
    job ``step`` (its one child Job, ``<name>-<step>-0``)."""
    child = f"{name}-{step}-0"
    return {
        "jobset.sigs.k8s.io/jobset-name": name,
        "jobset.sigs.k8s.io/replicatedjob-name": step,
        "jobset.sigs.k8s.io/replicatedjob-replicas": "1",
        "jobset.sigs.k8s.io/job-index": "0",
        "batch.kubernetes.io/job-name": child,
        "job-name": child,
        "batch.kubernetes.io/job-completion-index": str(index),
    }


def jobs_status(job: Gang, run: GangRun | None) -> list[dict[str, Any]]:
    """``status.jobsStatus``: per replicated job, its one child Job counted as JobSet does."""
    out: list[dict[str, Any]] = []
    suspended = 1 if job.run_policy.suspend else 0
    for step in job.replica_types:
        replicas = [] if run is None else [r for r in run.replicas.values() if r.rtype == step]
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


def _factory(store: ResourceStore, backend: Backend) -> Controller:
    try:
        install_builtins(store)
    except Exception:  # the server still runs; TrainJobs naming a built-in say it is missing
        log.exception("could not install the built-in ClusterTrainingRuntimes")
    return TrainJobController(store, backend)


FACTORY: Callable[[ResourceStore, Backend], Controller] = _factory


__all__ = ["FACTORY", "KIND", "TrainJobController", "jobs_status", "workspace_dir"]
