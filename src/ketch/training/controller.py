"""The training-job controllers: PyTorchJob, TFJob, XGBoostJob, MPIJob, JAXJob, PaddleJob, MXJob.

Each replica (``<job>-<type>-<index>``) runs its container's ``command`` +
``args`` with its ``env`` and ``workingDir`` as a local process through the
compute backend, plus the environment the kind's operator injects
(:mod:`ketch.training.envs`). The container ``image`` is recorded and reported
as not used: the command runs on this machine, its program found in Ketch's own
environment first, then on ``PATH`` (:mod:`ketch.training.commands`; ``python``
is this server's interpreter). ``nvidia.com/gpu`` requests the machine cannot
meet are reported with a ``GPUNotAvailable`` Warning (:mod:`ketch.training.gpus`).
A job starts as a gang, once all its replicas fit on the machine
(:mod:`ketch.training.admission`). Jobs are checked when applied, with the
operator's admission rules (:mod:`ketch.training.validation`).

Status is the operator's: conditions ``Created``, ``Running``, ``Restarting``,
``Succeeded``, ``Failed``, ``Suspended`` with reasons such as
``PyTorchJobSucceeded``, ``replicaStatuses``, ``startTime``, ``completionTime``,
and ``logPaths`` (replica -> log file) for ``ketch logs``. Logs live in a folder
of the object's own (``logs/training/<ns>/<kind>/<name>/<uid>``): a job deleted
and created again under its name starts with fresh logs.

A replica that fails under restartPolicy ``OnFailure``, ``ExitCode`` (for exit
codes 128 and above) or ``Always`` is started again after the kubelet's
crash-loop back-off (:mod:`ketch.training.backoff`: 10 s, doubling to 5 minutes,
reset after 10 minutes of running): a ``BackOff`` Warning says how long, the job
is ``Restarting``, and the replica counts as active while it waits.

What runs lives in this process: deleting a job stops its processes, stopping the
server stops them all (the backend's shutdown), and on the next start every job
that had not finished starts again from its stored spec. Restarts are counted in
``status.restartCount``, so ``backoffLimit`` also counts those made before a server
restart. An elastic PyTorchJob (``elasticPolicy``) whose Worker ``replicas`` change
while it runs is scaled in place, within ``minReplicas``/``maxReplicas``: new
workers join torchrun's c10d rendezvous, removed ones are stopped.

The loop is shared with ``TrainJob`` (:mod:`ketch.training.trainjob`) through the
hooks of :class:`TrainingJobController`; replicas may start in stages (a TrainJob's
initializers before its nodes).
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ketch.core import config
from ketch.core.backend import (
    Backend,
    ProcessHandle,
    ProcessSpec,
    Resources,
    command_entry,
)
from ketch.core.controller import Controller, Events, Key, Result, StatusController
from ketch.core.errors import InvalidSpec, NotFound
from ketch.core.resource import Resource, format_time, get_condition, set_condition, utcnow
from ketch.core.store.resources import ResourceStore
from ketch.training import commands, envs, gpus
from ketch.training.admission import Admission, job_request
from ketch.training.backoff import Backoff, describe
from ketch.training.spec import KINDS, Container, Job, MXJobSpec, PyTorchJobSpec, TFJobSpec, parse

log = logging.getLogger("ketch.training.controller")

POLL = 0.2  # how often a running job is looked at when its backend cannot report exits
EXIT_POLL = 5.0  # a safety net when every process's exit wakes the controller
WAIT_FOR_RESOURCES = 0.5
STOP_GRACE = 3.0
RUNNING, SUCCEEDED, FAILED, PENDING = "running", "succeeded", "failed", "pending"
BACKOFF = "backoff"  # failed, waiting out the crash-loop back-off before it starts again

_admission: Admission | None = None
_admission_lock = threading.Lock()


def admission() -> Admission:
    """The machine's ledger, shared by every training controller in this process."""
    global _admission
    with _admission_lock:
        if _admission is None:
            _admission = Admission()
        return _admission


@dataclass
class Replica:
    rtype: str
    index: int
    name: str
    spec: ProcessSpec
    handle: ProcessHandle | None = None
    state: str = RUNNING
    exit_code: int | None = None
    restarts: int = 0
    stage: int = 0  # replicas of a stage start once every replica of the stages before succeeded
    started_at: float = 0.0  # time.monotonic() when its current run started
    failures: int = 0  # failures in a row, for the back-off
    restart_at: float = 0.0  # time.monotonic() when a replica in BACKOFF starts again


@dataclass
class Runtime:
    uid: str | None
    replicas: dict[str, Replica] = field(default_factory=dict)
    ports: set[int] = field(default_factory=set)
    restarts: int = 0
    workdir: Path | None = None
    addresses: envs.Addresses | None = None

    def running(self) -> list[Replica]:
        return [r for r in self.replicas.values() if r.state == RUNNING]

    def pending(self) -> list[Replica]:
        return [r for r in self.replicas.values() if r.state == PENDING]

    def backing_off(self) -> list[Replica]:
        return [r for r in self.replicas.values() if r.state == BACKOFF]


class TrainingJobController(StatusController):
    """Reconciles the jobs of one training kind (set by subclasses).

    The loop (gang admission, start, restarts, backoff, deadline, suspend, TTL) is
    shared; what a kind calls things is in the hooks below (``_parse``,
    ``_mark_*``, ``_write_replicas``, ``_replica_spec``, ``_succeeded``, ...),
    which the kubeflow.org/v1 kinds use as they are and ``TrainJob`` overrides.
    """

    kind = "PyTorchJob"

    def __init__(self, store: ResourceStore, backend: Backend) -> None:
        super().__init__(store)
        self.backend = backend
        self.runtimes: dict[Key, Runtime] = {}
        self._lock = threading.Lock()
        self._reserved_ports: set[int] = _RESERVED_PORTS
        self.backoff = Backoff.from_env()

    # -- the loop ------------------------------------------------------------------

    def tracked_keys(self) -> Iterable[Key]:
        with self._lock:
            return list(self.runtimes)

    def gone(self, key: Key) -> None:
        self._teardown(key, deleted=True)

    def replaced(self, key: Key, uid: str | None) -> None:
        runtime = self.runtimes.get(key)
        if runtime is not None and runtime.uid != uid:
            self._teardown(key, deleted=True)  # deleted and created again

    def sync(
        self, key: Key, resource: Resource, status: dict[str, Any], events: Events
    ) -> Result | None:
        return self._reconcile(key, resource.metadata.uid, resource.spec, status, events)

    def _reconcile(
        self,
        key: Key,
        uid: str | None,
        raw_spec: dict[str, Any],
        status: dict[str, Any],
        events: Events,
    ) -> Result | None:
        namespace, name = key
        kind = self.kind
        terminal = self._terminal(status)
        try:
            job = self._parse(key, raw_spec)
        except InvalidSpec as exc:
            if not self._reportable(raw_spec):
                # a bare object (nothing to run anywhere): nothing to report
                log.debug("%s %s/%s has nothing to run; left alone", kind, namespace, name)
                return None
            if not terminal:
                self._mark_created(name, status, events, quiet=True)
                message = self._invalid_message(name, exc)
                self._finish(key, status, events, "Failed", message, None, self._invalid_cause(exc))
            return None
        if job is None:
            return None  # managed elsewhere
        self._mark_created(name, status, events)
        if terminal:
            return self._after_finish(key, job, status)
        runtime = self.runtimes.get(key)
        if job.run_policy.suspend:
            if runtime is not None:
                self._teardown(key)
            self._mark_suspended(job, status, events)
            self._write_replicas(status, job, None)
            return None
        self._mark_resumed(name, status, events)
        if runtime is None:
            ok, why = admission().try_admit((kind, namespace, name), job_request(job))
            if not ok:
                if status.get("admission") != why:
                    events.append(("WaitingForResources", why, "Normal"))
                status["admission"] = why
                self._write_replicas(status, job, None)
                return Result(requeue_after=WAIT_FOR_RESOURCES)
            status.pop("admission", None)
            try:
                runtime = self._start(key, uid, job, status, events)
            except Exception as exc:
                self._teardown(key)
                message = f"{kind} {name} could not start: {exc}"
                self._finish(key, status, events, "Failed", message, job, "start")
                return None
        if "startTime" not in status:
            status["startTime"] = format_time(utcnow())
        return self._watch(key, job, runtime, status, events)

    # -- what a kind calls things (overridden by TrainJob) ----------------------------

    def _parse(self, key: Key, raw_spec: dict[str, Any]) -> Job | None:
        """The job to run, or ``None`` when another controller manages it."""
        namespace, name = key
        return parse(self.kind, name, namespace, raw_spec)

    def _reportable(self, raw_spec: dict[str, Any]) -> bool:
        """Whether an invalid spec is worth a Failed condition (it has something to run)."""
        return _has_containers(raw_spec)

    def _invalid_message(self, name: str, exc: InvalidSpec) -> str:
        return f"{self.kind} {name} has an invalid spec: {exc}"

    def _invalid_cause(self, exc: InvalidSpec) -> str:
        """The ``cause`` :meth:`_mark_finished` gets for a spec that cannot run."""
        return "invalid"

    def _terminal(self, status: dict[str, Any]) -> bool:
        return _is_true(status, "Succeeded") or _is_true(status, "Failed")

    def _mark_created(
        self, name: str, status: dict[str, Any], events: Events, *, quiet: bool = False
    ) -> None:
        if get_condition(status, "Created") is None:
            kind, message = self.kind, f"{self.kind} {name} is created."
            set_condition(status, "Created", "True", f"{kind}Created", message)
            if not quiet:
                events.append((f"{kind}Created", message, "Normal"))

    def _mark_suspended(self, job: Job, status: dict[str, Any], events: Events) -> None:
        kind = self.kind
        if not _is_true(status, "Suspended"):
            message = f"{kind} {job.name} is suspended."
            set_condition(status, "Suspended", "True", f"{kind}Suspended", message)
            set_condition(status, "Running", "False", f"{kind}Suspended", message)
            status.pop("startTime", None)
            events.append((f"{kind}Suspended", message, "Normal"))

    def _mark_resumed(self, name: str, status: dict[str, Any], events: Events) -> None:
        if _is_true(status, "Suspended"):
            kind = self.kind
            message = f"{kind} {name} is resumed."
            set_condition(status, "Suspended", "False", f"{kind}Resumed", message)
            events.append((f"{kind}Resumed", message, "Normal"))

    def _mark_running(self, job: Job, status: dict[str, Any], events: Events) -> None:
        kind = self.kind
        message = f"{kind} {job.name} is running."
        if not _is_true(status, "Running"):
            set_condition(status, "Running", "True", f"{kind}Running", message)
            if get_condition(status, "Restarting") is not None:
                set_condition(status, "Restarting", "False", f"{kind}Running", message)
            events.append((f"{kind}Running", message, "Normal"))

    def _mark_restarting(
        self, job: Job, status: dict[str, Any], events: Events, restarted: list[Replica]
    ) -> None:
        kind = self.kind
        names = ", ".join(r.name for r in restarted)
        message = (
            f"{kind} {job.name} is restarting because {len(restarted)} "
            f"{restarted[0].rtype} replica(s) failed."
        )
        set_condition(status, "Restarting", "True", f"{kind}Restarting", message)
        set_condition(status, "Running", "False", f"{kind}Restarting", message)
        events.append((f"{kind}Restarting", f"{message} Restarting: {names}", "Warning"))

    def _mark_finished(
        self, status: dict[str, Any], events: Events, outcome: str, cause: str, message: str
    ) -> None:
        """Write the terminal conditions; ``cause`` is succeeded, failed, backoff,
        deadline, invalid or start."""
        reason = f"{self.kind}{outcome}"
        set_condition(status, outcome, "True", reason, message)
        set_condition(status, "Running", "False", reason, message)
        if get_condition(status, "Restarting") is not None:
            set_condition(status, "Restarting", "False", reason, message)
        events.append((reason, message, "Normal" if outcome == "Succeeded" else "Warning"))

    def _failure_message(self, job: Job, failed: list[Replica]) -> str:
        by_type: dict[str, int] = {}
        for replica in failed:
            by_type[replica.rtype] = by_type.get(replica.rtype, 0) + 1
        rtype, count = next(iter(by_type.items()))
        return f"{self.kind} {job.name} is failed because {count} {rtype} replica(s) failed."

    def _backoff_message(self, job: Job) -> str:
        return f"Job {job.name} has failed because it has reached the specified backoff limit"

    def _deadline_message(self, job: Job) -> str:
        return f"Job {job.name} has failed because it was active longer than specified deadline"

    def _success_message(self, job: Job) -> str:
        return f"{self.kind} {job.name} is successfully completed."

    def _write_replicas(self, status: dict[str, Any], job: Job, runtime: Runtime | None) -> None:
        status["replicaStatuses"] = _replica_statuses(job, runtime)

    def _succeeded(self, job: Job, runtime: Runtime) -> bool:
        return _succeeded(job, runtime)

    def _observe(self, key: Key, job: Job, runtime: Runtime, status: dict[str, Any]) -> None:
        """Read what running replicas report (nothing for the v1 kinds)."""

    # -- starting ------------------------------------------------------------------

    def _workdir(self, key: Key, uid: str | None) -> Path:
        """The folder of one object's logs and files: a job deleted and created again
        under its name (a new uid) starts with fresh logs."""
        return object_dir(self.kind, key, uid)

    def _allocate(self, job: Job, workdir: Path) -> envs.Addresses:
        """Ports (and files) the replicas need; the v1 operators' layout."""
        addresses = envs.allocate(job, self._reserved_ports, workdir)
        envs.write_mpi_files(job, addresses)
        return addresses

    def _replica_env(
        self, job: Job, rtype: str, index: int, addresses: envs.Addresses
    ) -> dict[str, str]:
        return envs.replica_env(job, rtype, index, addresses)

    def _replica_spec(
        self,
        job: Job,
        rtype: str,
        index: int,
        replica_name: str,
        addresses: envs.Addresses,
        workdir: Path,
    ) -> ProcessSpec:
        """The process of replica ``replica_name``: its container's command, env and limits."""
        container = job.container(rtype)
        env = {e.name: e.value or "" for e in container.env}
        env.update(self._replica_env(job, rtype, index, addresses))
        return container_process(
            container,
            name=f"{self.kind} {job.namespace}/{job.name} replica {replica_name}",
            env=env,
            log_path=workdir / f"{replica_name}.log",
            ports=tuple(p for p in [addresses.ports.get(replica_name, 0)] if p),
        )

    def _log_key(self, job: Job, rtype: str, index: int, replica_name: str) -> str:
        """The name ``status.logPaths`` (and ``ketch logs --replica``) knows the replica by."""
        return replica_name

    def _stage(self, job: Job, rtype: str) -> int:
        return 0

    def _start(
        self,
        key: Key,
        uid: str | None,
        job: Job,
        status: dict[str, Any],
        events: Events,
    ) -> Runtime:
        workdir = self._workdir(key, uid)
        workdir.mkdir(parents=True, exist_ok=True)
        runtime = Runtime(uid=uid, workdir=workdir, restarts=int(status.get("restartCount") or 0))
        with self._lock:
            self.runtimes[key] = runtime
        addresses = self._allocate(job, workdir)
        runtime.addresses = addresses
        runtime.ports = set(addresses.ports.values()) | ({addresses.rdzv_port} - {0})
        log_paths: dict[str, str] = {}
        images: set[str] = set()
        for rtype, index, replica_name in job.replica_names():
            container = job.container(rtype)
            if container.image:
                images.add(container.image)
            spec = self._replica_spec(job, rtype, index, replica_name, addresses, workdir)
            if spec.stdout_path is not None:
                log_paths[self._log_key(job, rtype, index, replica_name)] = str(spec.stdout_path)
            runtime.replicas[replica_name] = Replica(
                rtype, index, replica_name, spec, state=PENDING, stage=self._stage(job, rtype)
            )
        self._launch_next_stage(
            key, runtime, events
        )  # the gang (of the first stage) starts together
        no_gpu = gpus.warning(
            (name, gpus.requested(job.container(rtype))) for rtype, _i, name in job.replica_names()
        )
        if no_gpu:
            events.append((gpus.REASON, no_gpu, "Warning"))
        if images:
            events.append(
                (
                    "ImageNotUsed",
                    f"image {', '.join(sorted(images))} is not used: the local backend runs "
                    "each container's command on this machine",
                    "Normal",
                )
            )
        status["logPaths"] = log_paths
        return runtime

    def _launch_next_stage(self, key: Key, runtime: Runtime, events: Events) -> bool:
        """Start the pending replicas of the earliest stage once the stages before it
        all succeeded; whether any started."""
        pending = runtime.pending()
        if not pending:
            return False
        stage = min(r.stage for r in pending)
        before = [r for r in runtime.replicas.values() if r.stage < stage]
        if any(r.state != SUCCEEDED for r in before):
            return False
        for replica in pending:
            if replica.stage != stage:
                continue
            replica.state = RUNNING
            replica.started_at = time.monotonic()
            replica.handle = self.backend.start(replica.spec)
            wake_on_exit(self, key, replica.handle)
            events.append(("SuccessfulCreatePod", f"Created pod: {replica.name}", "Normal"))
        return True

    # -- elastic scaling -------------------------------------------------------------

    def _elastic_target(self, job: Job) -> tuple[str, int, int, int] | None:
        """``(type, wanted, min, max)`` of the replica type a running job may be scaled in."""
        spec = job.spec
        if (
            not isinstance(spec, PyTorchJobSpec)
            or spec.elasticPolicy is None
            or "Worker" not in job.replicas
        ):
            return None
        wanted = job.replicas["Worker"].replicas
        low = spec.elasticPolicy.minReplicas or 1
        high = spec.elasticPolicy.maxReplicas or max(wanted, low)
        return "Worker", wanted, low, high

    def _rescale(
        self, key: Key, job: Job, runtime: Runtime, status: dict[str, Any], events: Events
    ) -> None:
        """Start or stop replicas of an elastic job whose replica count changed (within
        min/max); torchrun's c10d rendezvous then re-forms the worker group."""
        target = self._elastic_target(job)
        if target is None or runtime.addresses is None or runtime.workdir is None:
            return
        rtype, wanted, low, high = target
        current = sorted(
            (r for r in runtime.replicas.values() if r.rtype == rtype), key=lambda r: r.index
        )
        want = max(low, min(high, wanted))
        if want == len(current):
            return
        if want != wanted:
            events.append(
                (
                    "ReplicasOutOfRange",
                    f"{rtype} replicas {wanted} is outside elasticPolicy [{low}, {high}]; scaling to {want}",
                    "Warning",
                )
            )
        if want > len(current):
            log_paths = status.setdefault("logPaths", {})
            for index in range(len(current), want):
                name = f"{job.name}-{rtype.lower()}-{index}"
                port = envs.free_port(envs.declared_port(job, rtype), self._reserved_ports)
                runtime.addresses.ports[name] = port
                runtime.ports.add(port)
                spec = self._replica_spec(
                    job, rtype, index, name, runtime.addresses, runtime.workdir
                )
                replica = Replica(
                    rtype, index, name, spec, state=PENDING, stage=self._stage(job, rtype)
                )
                runtime.replicas[name] = replica
                if spec.stdout_path is not None:
                    log_paths[self._log_key(job, rtype, index, name)] = str(spec.stdout_path)
            self._launch_next_stage(key, runtime, events)
        else:
            extra = current[want:]
            _stop([r for r in extra if r.state == RUNNING])
            for replica in extra:
                runtime.replicas.pop(replica.name, None)
                port = runtime.addresses.ports.pop(replica.name, 0)
                runtime.ports.discard(port)
                self._reserved_ports.discard(port)
        events.append(
            (
                "ScaledUp" if want > len(current) else "ScaledDown",
                f"{self.kind} {job.name}: {rtype} replicas {len(current)} -> {want}",
                "Normal",
            )
        )

    # -- watching ------------------------------------------------------------------

    def _watch(
        self,
        key: Key,
        job: Job,
        runtime: Runtime,
        status: dict[str, Any],
        events: Events,
    ) -> Result | None:
        self._rescale(key, job, runtime, status, events)
        restarted: list[Replica] = []  # failed and backing off before they start again
        now = time.monotonic()
        for replica in runtime.running():
            assert replica.handle is not None
            code = replica.handle.poll()
            if code is None:
                continue
            replica.exit_code = code
            if code == 0:
                replica.state = SUCCEEDED
                continue
            policy = job.restart_policy(replica.rtype)
            retry = policy in ("Always", "OnFailure") or (
                policy == "ExitCode" and (code < 0 or code >= 128)
            )
            if not retry:
                replica.state = FAILED
                continue
            limit = job.run_policy.backoffLimit
            if limit is not None and runtime.restarts + 1 > limit:
                replica.state = FAILED
                self._observe(key, job, runtime, status)
                self._finish(
                    key, status, events, "Failed", self._backoff_message(job), job, "backoff"
                )
                return self._after_finish(key, job, status)
            replica.failures = self.backoff.failures_after(
                replica.failures, now - replica.started_at
            )
            delay = self.backoff.delay(replica.failures)
            replica.state = BACKOFF
            replica.restart_at = now + delay
            container = job.container(replica.rtype).name or replica.rtype.lower()
            events.append(
                (
                    "BackOff",
                    f"Back-off {describe(delay)} restarting failed container {container} in pod "
                    f"{replica.name} (exit code {code})",
                    "Warning",
                )
            )
            restarted.append(replica)
        self._observe(key, job, runtime, status)
        failed = [r for r in runtime.replicas.values() if r.state == FAILED]
        if failed:
            self._finish(
                key, status, events, "Failed", self._failure_message(job, failed), job, "failed"
            )
            return self._after_finish(key, job, status)
        if self._succeeded(job, runtime):
            self._finish(
                key, status, events, "Succeeded", self._success_message(job), job, "succeeded"
            )
            return self._after_finish(key, job, status)
        deadline = job.run_policy.activeDeadlineSeconds
        remaining: float | None = None
        if deadline is not None and "startTime" in status:
            remaining = deadline - (utcnow() - _parse_time(status["startTime"])).total_seconds()
            if remaining <= 0:
                self._finish(
                    key, status, events, "Failed", self._deadline_message(job), job, "deadline"
                )
                return self._after_finish(key, job, status)
        self._launch_next_stage(key, runtime, events)
        self._restart_due(key, runtime, status, time.monotonic())
        if restarted:
            self._mark_restarting(job, status, events, restarted)
        elif not runtime.backing_off():
            self._mark_running(job, status, events)
        self._write_replicas(status, job, runtime)
        poll = EXIT_POLL if all(reports_exit(r.handle) for r in runtime.running()) else POLL
        wait = poll if remaining is None else max(0.05, min(poll, remaining))
        waiting = [r.restart_at - time.monotonic() for r in runtime.backing_off()]
        if waiting:  # come back when the next back-off is over, not before
            wait = max(0.05, min(wait, *waiting))
        return Result(requeue_after=wait)

    def _restart_due(self, key: Key, runtime: Runtime, status: dict[str, Any], now: float) -> None:
        """Start again the replicas whose back-off is over."""
        for replica in runtime.backing_off():
            if replica.restart_at > now:
                continue
            runtime.restarts += 1
            replica.restarts += 1
            status["restartCount"] = runtime.restarts
            replica.state = RUNNING
            replica.exit_code = None
            replica.started_at = now
            replica.handle = self.backend.start(replica.spec)
            wake_on_exit(self, key, replica.handle)

    def _finish(
        self,
        key: Key,
        status: dict[str, Any],
        events: Events,
        outcome: str,
        message: str,
        job: Job | None,
        cause: str = "failed",
    ) -> None:
        self._mark_finished(status, events, outcome, cause, message)
        status["completionTime"] = format_time(utcnow())
        status.pop("admission", None)
        runtime = self.runtimes.get(key)
        if runtime is None:
            return
        policy = job.clean_pod_policy() if job is not None else "All"
        for replica in runtime.backing_off():  # not started again: it stays failed
            replica.state = FAILED
        if outcome == "Failed" or policy in ("All", "Running"):
            _stop(runtime.running())
            for replica in runtime.running():
                replica.state = FAILED if outcome == "Failed" else SUCCEEDED
        if job is not None:
            self._write_replicas(status, job, runtime)

    def _after_finish(self, key: Key, job: Job, status: dict[str, Any]) -> Result | None:
        """A finished job: follow replicas left running (cleanPodPolicy None), honour the TTL."""
        runtime = self.runtimes.get(key)
        wait: float | None = None
        if runtime is not None:
            for replica in runtime.running():
                assert replica.handle is not None
                code = replica.handle.poll()
                if code is not None:
                    replica.exit_code = code
                    replica.state = SUCCEEDED if code == 0 else FAILED
            self._write_replicas(status, job, runtime)
            if runtime.running():
                wait = 1.0
            else:
                self._release(key, runtime)
        ttl = job.run_policy.ttlSecondsAfterFinished
        completed = status.get("completionTime")
        if ttl is not None and completed:
            left = ttl - (utcnow() - _parse_time(completed)).total_seconds()
            if left <= 0:
                self._teardown(key)
                with contextlib.suppress(NotFound):
                    self.store.delete(self.kind, key[0], key[1])
                return None
            wait = left if wait is None else min(wait, left)
        return Result(requeue_after=wait) if wait is not None else None

    # -- stopping ------------------------------------------------------------------

    def _release(self, key: Key, runtime: Runtime) -> None:
        admission().release((self.kind, key[0], key[1]))
        self._reserved_ports.difference_update(runtime.ports)
        runtime.ports = set()

    def _teardown(self, key: Key, *, deleted: bool = False) -> None:
        """Stop what runs for ``key``; ``deleted``: the object is gone (or replaced)."""
        with self._lock:
            runtime = self.runtimes.pop(key, None)
        admission().release((self.kind, key[0], key[1]))
        if runtime is None:
            return
        _stop(runtime.running())
        self._reserved_ports.difference_update(runtime.ports)


_RESERVED_PORTS: set[int] = envs.ReservedPorts()


def object_dir(kind: str, key: Key, uid: str | None) -> Path:
    """``KETCH_HOME/logs/training/<namespace>/<kind>/<name>/<uid>``: one object's logs
    (published in ``status.logPaths``) and files, never shared with an earlier object
    of the same name."""
    namespace, name = key
    folder = config.logs_dir() / "training" / namespace / kind.lower() / name
    return folder / uid if uid else folder


def reports_exit(handle: ProcessHandle | None) -> bool:
    """Whether ``handle``'s backend calls back when the process ends."""
    return callable(getattr(handle, "add_exit_callback", None))


def wake_on_exit(controller: Controller, key: Key, handle: ProcessHandle) -> None:
    """Reconcile ``key`` as soon as ``handle``'s process ends, instead of at the next poll
    (backends that cannot call back are polled every ``POLL`` seconds)."""
    add = getattr(handle, "add_exit_callback", None)
    if callable(add):
        add(lambda _handle: controller.enqueue(key))


def _stop(replicas: list[Replica]) -> None:
    """Stop ``replicas`` together (SIGTERM, SIGKILL after a grace period)."""
    handles = [r.handle for r in replicas if r.handle is not None and r.handle.poll() is None]
    threads = [threading.Thread(target=h.cancel, args=(STOP_GRACE,), daemon=True) for h in handles]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(STOP_GRACE + 15)


def _succeeded(job: Job, runtime: Runtime) -> bool:
    """The kind's success rule."""
    by_type: dict[str, list[Replica]] = {}
    for replica in runtime.replicas.values():
        by_type.setdefault(replica.rtype, []).append(replica)

    def done(rtype: str, *, every: bool = True) -> bool:
        replicas = by_type.get(rtype, [])
        states = [r.state == SUCCEEDED for r in replicas]
        return bool(replicas) and (all(states) if every else any(states))

    spec = job.spec
    kind = job.kind
    if kind == "PyTorchJob":
        assert isinstance(spec, PyTorchJobSpec)
        if "Master" in by_type:
            return done("Master")
        if spec.elasticPolicy is not None:
            return done("Worker", every=False)
        return done("Worker")
    if kind == "TFJob":
        assert isinstance(spec, TFJobSpec)
        for chief in ("Chief", "Master"):
            if chief in by_type:
                return done(chief)
        workers = by_type.get("Worker", [])
        if spec.successPolicy == "AllWorkers":
            return done("Worker")
        return any(r.index == 0 and r.state == SUCCEEDED for r in workers)
    if kind == "MPIJob":
        return done("Launcher")
    if kind == "MXJob":
        # the operator: the scheduler's success ends the job, or a single worker's
        # (no scheduler, no servers); a tuning job ends with its tuner
        if "Scheduler" in by_type:
            return done("Scheduler")
        if "Tuner" in by_type and isinstance(spec, MXJobSpec) and spec.jobMode == "MXTune":
            return done("Tuner")
        return done("Worker")
    if kind in ("XGBoostJob", "PaddleJob") and "Master" in by_type:
        return done("Master")
    return done("Worker")


def _replica_statuses(job: Job, runtime: Runtime | None) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for rtype in job.replicas:
        counts = {"active": 0, "succeeded": 0, "failed": 0}
        if runtime is not None:
            for replica in runtime.replicas.values():
                if replica.rtype != rtype:
                    continue
                key = {
                    RUNNING: "active",
                    BACKOFF: "active",
                    SUCCEEDED: "succeeded",
                    FAILED: "failed",
                }.get(replica.state)
                if key is not None:
                    counts[key] += 1
        out[rtype] = {k: v for k, v in counts.items() if v} or {}
    return out


def _has_containers(spec: dict[str, Any]) -> bool:
    for key, value in spec.items():
        if not key.endswith("ReplicaSpecs") or not isinstance(value, dict):
            continue
        for replica in value.values():
            template = replica.get("template") if isinstance(replica, dict) else None
            pod = template.get("spec") if isinstance(template, dict) else None
            if isinstance(pod, dict) and pod.get("containers"):
                return True
    return False


def container_process(
    container: Container,
    *,
    name: str,
    env: dict[str, str],
    log_path: Path,
    ports: tuple[int, ...] = (),
) -> ProcessSpec:
    """The local process of ``container``: its command and args (the program found
    by :mod:`ketch.training.commands`: ``python``/``python3`` is this server's
    interpreter, started from the warm fork server when it can be), ``env``, working
    directory and CPU/memory quantities, with stdout and stderr in ``log_path``."""
    command = commands.resolve([*container.command, *container.args], env)
    env = commands.child_env(env)
    requests, limits = container.resources.requests, container.resources.limits
    return ProcessSpec(
        name=name,
        command=command,
        env=env,
        cwd=Path(container.workingDir) if container.workingDir else None,
        stdout_path=log_path,
        stderr_path=log_path,
        resources=Resources(
            cpu_request=_quantity(requests.get("cpu")),
            cpu_limit=_quantity(limits.get("cpu")),
            memory_request=_quantity(requests.get("memory")),
            memory_limit=_quantity(limits.get("memory")),
        ),
        ports=ports,
        python=command_entry(command, sys.executable),
    )


def _quantity(value: str | int | float | None) -> str | None:
    return None if value is None else str(value)


def _is_true(status: dict[str, Any], type_: str) -> bool:
    condition = get_condition(status, type_)
    return condition is not None and condition.get("status") == "True"


def _parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _make(kind: str) -> type[TrainingJobController]:
    return type(f"{kind}Controller", (TrainingJobController,), {"kind": kind})


CONTROLLERS: dict[str, type[TrainingJobController]] = {kind: _make(kind) for kind in KINDS}


def _factory(kind: str) -> Callable[[ResourceStore, Backend], Controller]:
    def factory(store: ResourceStore, backend: Backend) -> Controller:
        return CONTROLLERS[kind](store, backend)

    factory.__name__ = f"{kind.lower()}_controller"
    return factory


FACTORIES: tuple[Callable[[ResourceStore, Backend], Controller], ...] = tuple(
    _factory(k) for k in KINDS
)

__all__ = ["CONTROLLERS", "FACTORIES", "TrainingJobController"]
