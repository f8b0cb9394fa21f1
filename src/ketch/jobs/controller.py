"""The training-job controllers: PyTorchJob, TFJob, XGBoostJob, MPIJob, JAXJob, PaddleJob, MXJob.

Each replica (``<job>-<type>-<index>``) runs its container's ``command`` +
``args`` with its ``env`` and ``workingDir`` as a local process through the
compute backend, plus the environment the kind's operator injects
(:mod:`ketch.jobs.envs`). The container ``image`` is recorded and reported as not
used: the command runs on this machine, its program found in Ketch's own
environment first, then on ``PATH`` (:mod:`ketch.core.workloads.containers`;
``python`` is this server's interpreter). ``nvidia.com/gpu`` requests the machine
cannot meet are reported with a ``GPUNotAvailable`` Warning. A job starts as a
gang, once all its replicas fit on the machine, and restarts failed replicas
after the kubelet's crash-loop back-off: the loop is the shared one of
:class:`~ketch.core.workloads.controller.GangController`. Jobs are checked when
applied, with the operator's admission rules (:mod:`ketch.jobs.validation`).

Status is the operator's: conditions ``Created``, ``Running``, ``Restarting``,
``Succeeded``, ``Failed``, ``Suspended`` with reasons such as
``PyTorchJobSucceeded`` (the one that changed last is last, the State that ``kubectl
get`` shows), ``replicaStatuses``, ``startTime``, ``completionTime``,
``restartCount`` and ``logPaths`` (replica -> log file) for ``ketch logs``. Logs
live in a folder of the object's own (``logs/training/<ns>/<kind>/<name>/<uid>``):
a job deleted and created again under its name starts with fresh logs.

An elastic PyTorchJob (``elasticPolicy``) whose Worker ``replicas`` change while it
runs is scaled in place, within ``minReplicas``/``maxReplicas``: new workers join
torchrun's c10d rendezvous, removed ones are stopped. Each new worker is charged to
its namespace's quota before it starts (one at a time, as Kubernetes creates pods);
one that does not fit waits, with a ``FailedCreate`` Warning, and starts once the
quota has room; a removed worker gives its charge back.

Each replica is a pod named ``<job>-<type>-<index>`` with the operator's labels
(:func:`operator_labels`: ``training.kubeflow.org/job-name``, ``replica-type`` in
lower case, ``replica-index``, ``operator-name`` and ``job-role: master`` on the
replica the operator calls master), as ``kubectl get pods -l
training.kubeflow.org/job-name=NAME`` and Katib's ``primaryPodLabels`` find them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ketch.core import charges
from ketch.core.backend import Backend
from ketch.core.conditions import get_condition, is_true
from ketch.core.controller import Controller, Events, Key
from ketch.core.errors import InvalidSpec
from ketch.core.resource import ConditionStatus, set_condition
from ketch.core.store.resources import ResourceStore
from ketch.core.workloads.controller import GangController
from ketch.core.workloads.gang import (
    BACKOFF,
    FAILED,
    PENDING,
    RUNNING,
    SUCCEEDED,
    Addresses,
    Gang,
    GangRun,
    Replica,
)
from ketch.core.workloads.processes import stop
from ketch.jobs import envs
from ketch.jobs.spec import KINDS, Job, MXJobSpec, PyTorchJobSpec, TFJobSpec, parse


def _set(
    status: dict[str, Any], type_: str, value: ConditionStatus, reason: str, message: str
) -> None:
    """Set a condition as the training operator does: one that changes goes last, so the
    last one (the CRDs' State column) is what happened last."""
    set_condition(status, type_, value, reason, message, last=True)


class TrainingJobController(GangController):
    """Reconciles the jobs of one kubeflow.org/v1 kind (set by subclasses), with the
    training operator's conditions, reasons and replica statuses."""

    kind = "PyTorchJob"

    def __init__(self, store: ResourceStore, backend: Backend) -> None:
        super().__init__(store, backend)
        # the refusal last reported of the workers an elastic job waits to add, by job
        self._scale_refusals: dict[Key, str] = {}

    def _parse(self, key: Key, raw_spec: dict[str, Any]) -> Job | None:
        namespace, name = key
        return parse(self.kind, name, namespace, raw_spec)

    def _reportable(self, raw_spec: dict[str, Any]) -> bool:
        return has_containers(raw_spec)

    def _invalid_message(self, name: str, exc: InvalidSpec) -> str:
        return f"{self.kind} {name} has an invalid spec: {exc}"

    def _terminal(self, status: dict[str, Any]) -> bool:
        return is_true(status, "Succeeded") or is_true(status, "Failed")

    # -- conditions ------------------------------------------------------------------

    def _mark_created(
        self, name: str, status: dict[str, Any], events: Events, *, quiet: bool = False
    ) -> None:
        if get_condition(status, "Created") is None:
            kind, message = self.kind, f"{self.kind} {name} is created."
            _set(status, "Created", "True", f"{kind}Created", message)
            if not quiet:
                events.append((f"{kind}Created", message, "Normal"))

    def _mark_suspended(self, job: Gang, status: dict[str, Any], events: Events) -> None:
        kind = self.kind
        if not is_true(status, "Suspended"):
            message = f"{kind} {job.name} is suspended."
            _set(status, "Running", "False", f"{kind}Suspended", message)
            _set(status, "Suspended", "True", f"{kind}Suspended", message)
            status.pop("startTime", None)
            events.append((f"{kind}Suspended", message, "Normal"))

    def _mark_resumed(self, name: str, status: dict[str, Any], events: Events) -> None:
        if is_true(status, "Suspended"):
            kind = self.kind
            message = f"{kind} {name} is resumed."
            _set(status, "Suspended", "False", f"{kind}Resumed", message)
            events.append((f"{kind}Resumed", message, "Normal"))

    def _mark_running(self, job: Gang, status: dict[str, Any], events: Events) -> None:
        kind = self.kind
        message = f"{kind} {job.name} is running."
        if not is_true(status, "Running"):
            if get_condition(status, "Restarting") is not None:
                _set(status, "Restarting", "False", f"{kind}Running", message)
            _set(status, "Running", "True", f"{kind}Running", message)
            events.append((f"{kind}Running", message, "Normal"))

    def _mark_restarting(
        self, job: Gang, status: dict[str, Any], events: Events, restarted: list[Replica]
    ) -> None:
        kind = self.kind
        names = ", ".join(r.name for r in restarted)
        message = (
            f"{kind} {job.name} is restarting because {len(restarted)} "
            f"{restarted[0].rtype} replica(s) failed."
        )
        _set(status, "Running", "False", f"{kind}Restarting", message)
        _set(status, "Restarting", "True", f"{kind}Restarting", message)
        events.append((f"{kind}Restarting", f"{message} Restarting: {names}", "Warning"))

    def _mark_finished(
        self, status: dict[str, Any], events: Events, outcome: str, cause: str, message: str
    ) -> None:
        reason = f"{self.kind}{outcome}"
        _set(status, "Running", "False", reason, message)
        if get_condition(status, "Restarting") is not None:
            _set(status, "Restarting", "False", reason, message)
        _set(status, outcome, "True", reason, message)
        events.append((reason, message, "Normal" if outcome == "Succeeded" else "Warning"))

    # -- messages --------------------------------------------------------------------

    def _failure_message(self, job: Gang, failed: list[Replica]) -> str:
        by_type: dict[str, int] = {}
        for replica in failed:
            by_type[replica.rtype] = by_type.get(replica.rtype, 0) + 1
        rtype, count = next(iter(by_type.items()))
        return f"{self.kind} {job.name} is failed because {count} {rtype} replica(s) failed."

    def _backoff_message(self, job: Gang) -> str:
        return f"Job {job.name} has failed because it has reached the specified backoff limit"

    def _deadline_message(self, job: Gang) -> str:
        return f"Job {job.name} has failed because it was active longer than specified deadline"

    def _success_message(self, job: Gang) -> str:
        return f"{self.kind} {job.name} is successfully completed."

    # -- replicas --------------------------------------------------------------------

    def _write_replicas(self, status: dict[str, Any], job: Gang, run: GangRun | None) -> None:
        status["replicaStatuses"] = replica_statuses(job, run)

    def _pod_labels(self, job: Gang, replica: Replica) -> dict[str, str]:
        assert isinstance(job, Job)
        return operator_labels(job, replica.rtype, replica.index)

    def _succeeded(self, job: Gang, run: GangRun) -> bool:
        assert isinstance(job, Job)
        return succeeded(job, run)

    def _allocate(self, job: Gang, workdir: Path) -> Addresses:
        """Ports (and files) the replicas need; the v1 operators' layout."""
        assert isinstance(job, Job)
        addresses = envs.allocate(job, self.backend, workdir)
        envs.write_mpi_files(job, addresses)
        return addresses

    def _replica_env(
        self, job: Gang, rtype: str, index: int, addresses: Addresses
    ) -> dict[str, str]:
        assert isinstance(job, Job)
        return envs.replica_env(job, rtype, index, addresses)

    # -- elastic scaling -------------------------------------------------------------

    def _elastic_target(self, job: Gang) -> tuple[str, int, int, int] | None:
        """``(type, wanted, min, max)`` of the replica type a running job may be scaled in."""
        spec = job.spec if isinstance(job, Job) else None
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
        self, key: Key, job: Gang, run: GangRun, status: dict[str, Any], events: Events
    ) -> None:
        """Start or stop replicas of an elastic job whose replica count changed (within
        min/max); torchrun's c10d rendezvous then re-forms the worker group."""
        target = self._elastic_target(job)
        if target is None or run.addresses is None or run.workdir is None:
            return
        assert isinstance(job, Job)
        rtype, wanted, low, high = target
        current = sorted(
            (r for r in run.replicas.values() if r.rtype == rtype), key=lambda r: r.index
        )
        want = max(low, min(high, wanted))
        if want == len(current):
            self._scale_refusals.pop(key, None)
            return
        if want != wanted:
            events.append(
                (
                    "ReplicasOutOfRange",
                    f"{rtype} replicas {wanted} is outside elasticPolicy [{low}, {high}]; scaling to {want}",
                    "Warning",
                )
            )
        added = len(current)
        if want > len(current):
            log_paths = status.setdefault("logPaths", {})
            for index in range(len(current), want):
                name = f"{job.name}-{rtype.lower()}-{index}"
                if not self._charge_worker(key, job, rtype, name, events):
                    break  # the namespace's quota: the next pass asks again
                added += 1
                port = self.backend.reserve_port(envs.declared_port(job, rtype))
                run.addresses.ports[name] = port
                run.ports.add(port)
                spec = self._replica_spec(job, rtype, index, name, run.addresses, run.workdir)
                replica = Replica(
                    rtype, index, name, spec, state=PENDING, stage=self._stage(job, rtype)
                )
                run.replicas[name] = replica
                if spec.stdout_path is not None:
                    log_paths[self._log_key(job, rtype, index, name)] = str(spec.stdout_path)
            if added == len(current):
                return
            self._launch_next_stage(key, run, events)
        else:
            extra = current[want:]
            stop(r.handle for r in extra if r.state == RUNNING)
            self.pods.remove(job.namespace, [self._pod_name(job, r) for r in extra])
            for replica in extra:
                run.replicas.pop(replica.name, None)
                port = run.addresses.ports.pop(replica.name, 0)
                run.ports.discard(port)
                self.backend.release_ports([port])
            charges.ledger_of(self.store).release(
                self._charge_key(key), [replica.name for replica in extra]
            )
            added = want
        events.append(
            (
                "ScaledUp" if added > len(current) else "ScaledDown",
                f"{self.kind} {job.name}: {rtype} replicas {len(current)} -> {added}",
                "Normal",
            )
        )

    def _waiting(self, key: Key) -> bool:
        return key in self._scale_refusals

    def _charge_worker(self, key: Key, job: Job, rtype: str, name: str, events: Events) -> bool:
        """Charge one more replica of a running gang to its namespace's quota; when it
        does not fit, a ``FailedCreate`` Warning says why (once until that changes)."""
        refused = charges.ledger_of(self.store).admit(
            self.store, self._charge_key(key), job.namespace, [(name, [job.container(rtype)])]
        )
        if refused is None:
            self._scale_refusals.pop(key, None)
            return True
        if self._scale_refusals.get(key) != refused:
            self._scale_refusals[key] = refused
            events.append(("FailedCreate", refused, "Warning"))
        return False


def succeeded(job: Job, run: GangRun) -> bool:
    """The kind's success rule."""
    by_type: dict[str, list[Replica]] = {}
    for replica in run.replicas.values():
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


def is_master(job: Job, rtype: str, index: int) -> bool:
    """Whether the operator calls the replica master (``job-role: master``): the
    master or chief, an MPIJob's launcher, an MXJob's scheduler; a TFJob or JAXJob
    without a chief or master, its first worker."""
    kind = job.kind
    if kind in ("PyTorchJob", "XGBoostJob", "PaddleJob"):
        return rtype == "Master"
    if kind == "TFJob":
        if "Chief" in job.replicas or "Master" in job.replicas:
            return rtype in ("Chief", "Master")
        return rtype == "Worker" and index == 0
    if kind == "MPIJob":
        return rtype == "Launcher"
    if kind == "MXJob":
        return rtype == "Scheduler"
    return rtype == "Worker" and index == 0  # JAXJob


def operator_labels(job: Job, rtype: str, index: int) -> dict[str, str]:
    """The labels the training operator puts on a replica's pod."""
    labels = {
        "training.kubeflow.org/operator-name": f"{job.kind.lower()}-controller",
        "training.kubeflow.org/job-name": job.name,
        "training.kubeflow.org/replica-type": rtype.lower(),
        "training.kubeflow.org/replica-index": str(index),
    }
    if is_master(job, rtype, index):
        labels["training.kubeflow.org/job-role"] = "master"
    return labels


def replica_statuses(job: Gang, run: GangRun | None) -> dict[str, dict[str, int]]:
    """``status.replicaStatuses``: per replica type, its active, succeeded and failed
    replicas (zero counts left out)."""
    out: dict[str, dict[str, int]] = {}
    for rtype in job.replicas:
        counts = {"active": 0, "succeeded": 0, "failed": 0}
        if run is not None:
            for replica in run.replicas.values():
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


def has_containers(spec: dict[str, Any]) -> bool:
    """Whether a raw job spec has a replica with containers (something to run)."""
    for key, value in spec.items():
        if not key.endswith("ReplicaSpecs") or not isinstance(value, dict):
            continue
        for replica in value.values():
            template = replica.get("template") if isinstance(replica, dict) else None
            pod = template.get("spec") if isinstance(template, dict) else None
            if isinstance(pod, dict) and pod.get("containers"):
                return True
    return False


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
