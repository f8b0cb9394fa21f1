"""The controller loop of a gang: a job whose replicas run as local processes.

Each replica runs its container's command as a process through the injected
compute backend (:mod:`ketch.core.workloads.containers`). A gang starts once all of
it fits on the machine (the backend's admission ledger), as one gang: replicas may
start in stages (a TrainJob's initializers before its nodes), a stage once every
replica of the stages before it succeeded.

A replica that fails under restartPolicy ``OnFailure``, ``ExitCode`` (for exit
codes 128 and above, or a signal) or ``Always`` is started again after the
kubelet's crash-loop back-off (:mod:`ketch.core.workloads.backoff`): a ``BackOff``
Warning says how long, and the replica counts as active while it waits. Restarts
are counted in ``status.restartCount``, so ``backoffLimit`` also counts those made
before a server restart. ``activeDeadlineSeconds`` fails the gang, ``suspend``
stops it, ``ttlSecondsAfterFinished`` deletes it once finished, and
``cleanPodPolicy`` says which replicas stop when it ends.

What runs lives in this process: deleting a job stops its processes, stopping the
server stops them all (the backend's shutdown), and on the next start every job
that had not finished starts again from its stored spec.

Each replica that has started is recorded as a pod (:mod:`ketch.core.store.pods`,
named by :meth:`GangController._pod_name`, with the operator's labels from
:meth:`GangController._pod_labels`): its phase, its container's state, restarts and
log. Pods stay once their process ended until the job is deleted, its TTL removes
it, it is suspended, or its ``cleanPodPolicy`` says (``All``: every pod once the job
finished, ``Running``: those still running then, ``None``: none). A client's
``DELETE`` of a pod replaces it as the operator does: the replica's process is
stopped and started again as a new pod of the same name (a finished job's pod is
just removed).

What a kind calls things (its conditions, reasons, messages, replica statuses, its
success rule, the environment and ports of its replicas) is in the hooks of
:class:`GangController`, which the kubeflow.org/v1 jobs (:mod:`ketch.jobs`) and
Trainer's TrainJob (:mod:`ketch.trainer`) implement.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ketch.core import charges
from ketch.core.access import workload_env
from ketch.core.backend import Backend, ProcessSpec
from ketch.core.controller import Events, Key, Result, StatusController
from ketch.core.errors import InvalidSpec, NotFound
from ketch.core.resource import Resource
from ketch.core.store.pods import (
    ContainerRecord,
    ContainerState,
    Phase,
    PodRecord,
    PodStore,
    Terminated,
    log_size,
    new_uid,
)
from ketch.core.store.resources import ResourceStore
from ketch.core.timestamps import format_time, parse_time, utcnow
from ketch.core.workloads.backoff import Backoff, describe
from ketch.core.workloads.containers import (
    GPU_REASON,
    IMAGE_REASON,
    container_process,
    gpu_warning,
    gpus_requested,
    image_notice,
)
from ketch.core.workloads.gang import (
    BACKOFF,
    FAILED,
    PENDING,
    RUNNING,
    SUCCEEDED,
    Addresses,
    CleanPodPolicy,
    Gang,
    GangRun,
    Replica,
)
from ketch.core.workloads.podrecords import (
    container_spec,
    image_annotations,
    inherited_labels,
    owner_of,
    process_log,
    with_trial_collector,
)
from ketch.core.workloads.processes import (
    WAIT_FOR_RESOURCES,
    object_dir,
    poll_interval,
    stop,
    wake_on_exit,
)
from ketch.core.workloads.provenance import OUTPUT_ENV, outputs_dir

log = logging.getLogger("ketch.core.workloads.controller")


class GangController(StatusController):
    """Reconciles the gangs of one kind (``kind``, set by subclasses).

    The loop (gang admission, start, restarts, back-off, deadline, suspend, TTL) is
    here; what a kind calls things is in the abstract hooks (``_parse``,
    ``_mark_*``, the messages, ``_write_replicas``, ``_succeeded``, ``_allocate``,
    ``_replica_env``) and the overridable ones with a default (``_replica_spec``,
    ``_stage``, ``_log_key``, ``_observe``, ``_rescale``, ...).
    """

    kind = ""

    def __init__(self, store: ResourceStore, backend: Backend) -> None:
        super().__init__(store)
        self.backend = backend
        self.runs: dict[Key, GangRun] = {}
        self._lock = threading.Lock()
        self.backoff = Backoff.from_env()
        self.pods = PodStore(store.database)
        self._pod_owners: dict[Key, str] = {}  # the uid each key's pods were last kept for

    # -- the loop ------------------------------------------------------------------

    def tracked_keys(self) -> Iterable[Key]:
        with self._lock:
            return list(self.runs)

    def gone(self, key: Key) -> None:
        self._teardown(key, deleted=True)
        self._pod_owners.pop(key, None)

    def replaced(self, key: Key, uid: str | None) -> None:
        run = self.runs.get(key)
        if run is not None and run.uid != uid:
            self._teardown(key, deleted=True)  # deleted and created again

    def sync(
        self, key: Key, resource: Resource, status: dict[str, Any], events: Events
    ) -> Result | None:
        result = self._reconcile(key, resource.metadata.uid, resource.spec, status, events)
        # what its pods held before a restart: charged again as it started, or not needed
        charges.ledger_of(self.store).settle(self._charge_key(key))
        self._record_pods(key, resource, status, events)
        return result

    def _charge_key(self, key: Key) -> tuple[str, str, str]:
        """What the gang's pods are charged under in its namespace's quota (the key of
        what they held before a restart too)."""
        return charges.owner_key(self.kind, key[0], key[1])

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
        run = self.runs.get(key)
        if run is not None:
            run.gang = job
        if terminal:
            return self._after_finish(key, job, status)
        if job.run_policy.suspend:
            if run is not None:
                self._teardown(key)
            self._mark_suspended(job, status, events)
            self._write_replicas(status, job, None)
            return None
        self._mark_resumed(name, status, events)
        if run is None:
            pods = [(n, [job.container(rtype)]) for rtype, _i, n in job.replica_names()]
            refused = charges.ledger_of(self.store).admit(
                self.store, self._charge_key(key), namespace, pods
            )
            if refused is not None:  # the namespace's quota: all of the gang fits, or none
                if status.get("admission") != refused:
                    events.append(("FailedCreate", refused, "Warning"))
                status["admission"] = refused
                self._write_replicas(status, job, None)
                return Result(requeue_after=WAIT_FOR_RESOURCES)
            ok, why = self.backend.admit((kind, namespace, name), job.request())
            if not ok:
                if status.get("admission") != why:
                    events.append(("WaitingForResources", why, "Normal"))
                status["admission"] = why
                self._write_replicas(status, job, None)
                return Result(requeue_after=WAIT_FOR_RESOURCES)
            status.pop("admission", None)
            try:
                run = self._start(key, uid, job, status, events)
            except Exception as exc:  # noqa: BLE001 - one bad object must not stop the controller: it ends Failed
                self._teardown(key)
                message = f"{kind} {name} could not start: {exc}"
                log.warning("%s (%s)", message, type(exc).__name__)
                self._finish(key, status, events, "Failed", message, job, "start")
                return None
        if "startTime" not in status:
            status["startTime"] = format_time(utcnow())
        return self._watch(key, job, run, status, events)

    # -- what a kind calls things ----------------------------------------------------

    @abc.abstractmethod
    def _parse(self, key: Key, raw_spec: dict[str, Any]) -> Gang | None:
        """The gang to run, or ``None`` when another controller manages it."""

    def _reportable(self, raw_spec: dict[str, Any]) -> bool:
        """Whether an invalid spec is worth a Failed condition (it has something to run)."""
        return True

    @abc.abstractmethod
    def _invalid_message(self, name: str, exc: InvalidSpec) -> str: ...

    def _invalid_cause(self, exc: InvalidSpec) -> str:
        """The ``cause`` :meth:`_mark_finished` gets for a spec that cannot run."""
        return "invalid"

    @abc.abstractmethod
    def _terminal(self, status: dict[str, Any]) -> bool:
        """Whether ``status`` says the job has finished."""

    @abc.abstractmethod
    def _mark_created(
        self, name: str, status: dict[str, Any], events: Events, *, quiet: bool = False
    ) -> None: ...

    @abc.abstractmethod
    def _mark_suspended(self, job: Gang, status: dict[str, Any], events: Events) -> None: ...

    @abc.abstractmethod
    def _mark_resumed(self, name: str, status: dict[str, Any], events: Events) -> None: ...

    @abc.abstractmethod
    def _mark_running(self, job: Gang, status: dict[str, Any], events: Events) -> None: ...

    @abc.abstractmethod
    def _mark_restarting(
        self, job: Gang, status: dict[str, Any], events: Events, restarted: list[Replica]
    ) -> None: ...

    @abc.abstractmethod
    def _mark_finished(
        self, status: dict[str, Any], events: Events, outcome: str, cause: str, message: str
    ) -> None:
        """Write the terminal conditions; ``outcome`` is Succeeded or Failed, ``cause``
        succeeded, failed, backoff, deadline, invalid, start (or the kind's own)."""

    @abc.abstractmethod
    def _failure_message(self, job: Gang, failed: list[Replica]) -> str: ...

    @abc.abstractmethod
    def _backoff_message(self, job: Gang) -> str: ...

    @abc.abstractmethod
    def _deadline_message(self, job: Gang) -> str: ...

    @abc.abstractmethod
    def _success_message(self, job: Gang) -> str: ...

    @abc.abstractmethod
    def _write_replicas(self, status: dict[str, Any], job: Gang, run: GangRun | None) -> None:
        """Write the replica counts of ``status`` (``run`` is ``None`` before it starts)."""

    @abc.abstractmethod
    def _succeeded(self, job: Gang, run: GangRun) -> bool:
        """The kind's success rule."""

    def _observe(self, key: Key, job: Gang, run: GangRun, status: dict[str, Any]) -> None:
        """Read what running replicas report (nothing by default)."""

    # -- starting ------------------------------------------------------------------

    def _workdir(self, key: Key, uid: str | None) -> Path:
        """The folder of one object's logs and files: a job deleted and created again
        under its name (a new uid) starts with fresh logs."""
        return object_dir(self.kind, key, uid)

    @abc.abstractmethod
    def _allocate(self, job: Gang, workdir: Path) -> Addresses:
        """Ports (reserved through the backend) and files the replicas need."""

    @abc.abstractmethod
    def _replica_env(
        self, job: Gang, rtype: str, index: int, addresses: Addresses
    ) -> dict[str, str]:
        """The variables the kind's operator sets on a replica."""

    def _replica_spec(
        self,
        job: Gang,
        rtype: str,
        index: int,
        replica_name: str,
        addresses: Addresses,
        workdir: Path,
    ) -> ProcessSpec:
        """The process of replica ``replica_name``: its container's command, env and limits."""
        container = job.container(rtype)
        # a folder of the job's own for what it makes (its models, for the registry)
        env = {OUTPUT_ENV: str(outputs_dir(workdir))}
        env.update({e.name: e.value or "" for e in container.env})
        env.update(self._replica_env(job, rtype, index, addresses))
        spec = container_process(
            container,
            name=f"{self.kind} {job.namespace}/{job.name} replica {replica_name}",
            env=env,
            log_path=workdir / f"{replica_name}.log",
            ports=tuple(p for p in [addresses.ports.get(replica_name, 0)] if p),
            namespace=job.namespace,
        )
        # on its member of the gang as admitted (a node of its own on a cluster backend)
        spec = dataclasses.replace(spec, placement=job.placement(replica_name))
        # the namespace's service-account token, once authentication is on (never shown)
        secret = workload_env(self.store.database, job.namespace)
        return dataclasses.replace(spec, secret_env=secret) if secret else spec

    def _log_key(self, job: Gang, rtype: str, index: int, replica_name: str) -> str:
        """The name ``status.logPaths`` (and ``ketch logs --replica``) knows the replica by."""
        return replica_name

    def _pod_name(self, job: Gang, replica: Replica) -> str:
        """The name of the replica's pod (``<job>-<type>-<index>``, as the training
        operator names its pods)."""
        return replica.name

    def _pods_removed_on_finish(self, job: Gang) -> CleanPodPolicy:
        """Which pods go once the job finished (its ``cleanPodPolicy`` by default)."""
        return job.clean_pod_policy()

    def _pod_labels(self, job: Gang, replica: Replica) -> dict[str, str]:
        """The labels the kind's operator puts on the replica's pod (besides those of
        its template); none by default."""
        return {}

    def _stage(self, job: Gang, rtype: str) -> int:
        return 0

    def _start(
        self,
        key: Key,
        uid: str | None,
        job: Gang,
        status: dict[str, Any],
        events: Events,
    ) -> GangRun:
        workdir = self._workdir(key, uid)
        workdir.mkdir(parents=True, exist_ok=True)
        # pods of an earlier run of the job (before a restart of the server, a suspend)
        self.pods.remove_owned(self.kind, key[0], key[1])
        run = GangRun(
            uid=uid, workdir=workdir, restarts=int(status.get("restartCount") or 0), gang=job
        )
        with self._lock:
            self.runs[key] = run
        addresses = self._allocate(job, workdir)
        run.addresses = addresses
        run.ports = set(addresses.ports.values()) | ({addresses.rdzv_port} - {0})
        log_paths: dict[str, str] = {}
        images: set[str] = set()
        for rtype, index, replica_name in job.replica_names():
            container = job.container(rtype)
            if container.image:
                images.add(container.image)
            spec = self._replica_spec(job, rtype, index, replica_name, addresses, workdir)
            if spec.stdout_path is not None:
                log_paths[self._log_key(job, rtype, index, replica_name)] = str(spec.stdout_path)
            run.replicas[replica_name] = Replica(
                rtype, index, replica_name, spec, state=PENDING, stage=self._stage(job, rtype)
            )
        self._launch_next_stage(key, run, events)  # the gang (of the first stage) starts together
        no_gpu = gpu_warning(
            (
                (name, gpus_requested(job.container(rtype)))
                for rtype, _i, name in job.replica_names()
            ),
            self.backend.gpus(),
        )
        if no_gpu:
            events.append((GPU_REASON, no_gpu, "Warning"))
        if images:
            events.append((IMAGE_REASON, image_notice(images), "Normal"))
        status["logPaths"] = log_paths
        return run

    def _launch_next_stage(self, key: Key, run: GangRun, events: Events) -> bool:
        """Start the pending replicas of the earliest stage once the stages before it
        all succeeded; whether any started."""
        pending = run.pending()
        if not pending:
            return False
        stage = min(r.stage for r in pending)
        before = [r for r in run.replicas.values() if r.stage < stage]
        if any(r.state != SUCCEEDED for r in before):
            return False
        for replica in pending:
            if replica.stage != stage:
                continue
            self._run_replica(key, replica)
            events.append(("SuccessfulCreatePod", f"Created pod: {replica.name}", "Normal"))
        return True

    def _run_replica(self, key: Key, replica: Replica, *, again: bool = False) -> None:
        """Start ``replica``'s process (``again``: its container restarts in its pod,
        whose previous run is kept as the pod's last state and previous log)."""
        if again and replica.started_wall is not None:
            code = replica.exit_code if replica.exit_code is not None else 1
            replica.last_run = Terminated(
                code, replica.started_wall, replica.finished_wall or utcnow()
            )
            replica.previous_log_start = replica.log_start
            replica.pod_restarts += 1
        replica.log_start = log_size(replica.spec.stdout_path)
        replica.state = RUNNING
        replica.exit_code = None
        replica.started_at = time.monotonic()
        replica.started_wall = utcnow()
        replica.finished_wall = None
        replica.handle = self.backend.start(replica.spec)
        wake_on_exit(self, key, replica.handle, self.backend)

    def _rescale(
        self, key: Key, job: Gang, run: GangRun, status: dict[str, Any], events: Events
    ) -> None:
        """Start or stop replicas of a running gang whose replica count changed (an
        elastic job's); nothing by default."""

    def _waiting(self, key: Key) -> bool:
        """Whether replicas :meth:`_rescale` would add wait for the namespace's quota
        (the gang is then looked at again soon); never by default."""
        return False

    # -- watching ------------------------------------------------------------------

    def _watch(
        self,
        key: Key,
        job: Gang,
        run: GangRun,
        status: dict[str, Any],
        events: Events,
    ) -> Result | None:
        self._rescale(key, job, run, status, events)
        restarted: list[Replica] = []  # failed and backing off before they start again
        now = time.monotonic()
        for replica in run.running():
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
            if limit is not None and run.restarts + 1 > limit:
                replica.state = FAILED
                self._observe(key, job, run, status)
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
        self._observe(key, job, run, status)
        failed = [r for r in run.replicas.values() if r.state == FAILED]
        if failed:
            self._finish(
                key, status, events, "Failed", self._failure_message(job, failed), job, "failed"
            )
            return self._after_finish(key, job, status)
        if self._succeeded(job, run):
            self._finish(
                key, status, events, "Succeeded", self._success_message(job), job, "succeeded"
            )
            return self._after_finish(key, job, status)
        deadline = job.run_policy.activeDeadlineSeconds
        remaining: float | None = None
        if deadline is not None and "startTime" in status:
            remaining = deadline - (utcnow() - parse_time(status["startTime"])).total_seconds()
            if remaining <= 0:
                self._finish(
                    key, status, events, "Failed", self._deadline_message(job), job, "deadline"
                )
                return self._after_finish(key, job, status)
        self._launch_next_stage(key, run, events)
        self._restart_due(key, run, status, time.monotonic())
        if restarted:
            self._mark_restarting(job, status, events, restarted)
        elif not run.backing_off():
            self._mark_running(job, status, events)
        self._write_replicas(status, job, run)
        poll = poll_interval(self.backend, bool(run.running()))
        if self._waiting(key):
            poll = min(poll, WAIT_FOR_RESOURCES)
        wait = poll if remaining is None else max(0.05, min(poll, remaining))
        waiting = [r.restart_at - time.monotonic() for r in run.backing_off()]
        if waiting:  # come back when the next back-off is over, not before
            wait = max(0.05, min(wait, *waiting))
        return Result(requeue_after=wait)

    def _restart_due(self, key: Key, run: GangRun, status: dict[str, Any], now: float) -> None:
        """Start again the replicas whose back-off is over."""
        for replica in run.backing_off():
            if replica.restart_at > now:
                continue
            run.restarts += 1
            replica.restarts += 1
            status["restartCount"] = run.restarts
            self._run_replica(key, replica, again=True)

    def _finish(
        self,
        key: Key,
        status: dict[str, Any],
        events: Events,
        outcome: str,
        message: str,
        job: Gang | None,
        cause: str = "failed",
    ) -> None:
        self._mark_finished(status, events, outcome, cause, message)
        status["completionTime"] = format_time(utcnow())
        status.pop("admission", None)
        run = self.runs.get(key)
        if run is None:
            return
        policy = job.clean_pod_policy() if job is not None else "All"
        removes = self._pods_removed_on_finish(job) if job is not None else "All"
        if removes == "All":
            run.pods_to_remove |= set(run.replicas)
        elif removes == "Running":
            run.pods_to_remove |= {r.name for r in (*run.running(), *run.backing_off())}
        for replica in run.backing_off():  # not started again: it stays failed
            replica.state = FAILED
        if outcome == "Failed" or policy in ("All", "Running"):
            stop(r.handle for r in run.running())
            for replica in run.running():
                replica.state = FAILED if outcome == "Failed" else SUCCEEDED
        if job is not None:
            self._write_replicas(status, job, run)

    def _after_finish(self, key: Key, job: Gang, status: dict[str, Any]) -> Result | None:
        """A finished job: follow replicas left running (cleanPodPolicy None), honour the TTL."""
        run = self.runs.get(key)
        wait: float | None = None
        if run is not None:
            for replica in run.running():
                assert replica.handle is not None
                code = replica.handle.poll()
                if code is not None:
                    replica.exit_code = code
                    replica.state = SUCCEEDED if code == 0 else FAILED
            self._write_replicas(status, job, run)
            if run.running():
                wait = 1.0
            else:
                self._release(key, run)
        ttl = job.run_policy.ttlSecondsAfterFinished
        completed = status.get("completionTime")
        if ttl is not None and completed:
            left = ttl - (utcnow() - parse_time(completed)).total_seconds()
            if left <= 0:
                self._teardown(key)
                with contextlib.suppress(NotFound):
                    self.store.delete(self.kind, key[0], key[1])
                return None
            wait = left if wait is None else min(wait, left)
        return Result(requeue_after=wait) if wait is not None else None

    # -- stopping ------------------------------------------------------------------

    def _release(self, key: Key, run: GangRun) -> None:
        charges.ledger_of(self.store).release(self._charge_key(key))
        self.backend.release((self.kind, key[0], key[1]))
        self.backend.release_ports(run.ports)
        run.ports = set()

    def _teardown(self, key: Key, *, deleted: bool = False) -> None:
        """Stop what runs for ``key``; ``deleted``: the object is gone (or replaced)."""
        with self._lock:
            run = self.runs.pop(key, None)
        charges.ledger_of(self.store).release(self._charge_key(key))
        self.backend.release((self.kind, key[0], key[1]))
        self.pods.remove_owned(self.kind, key[0], key[1])
        if run is None:
            return
        stop(r.handle for r in run.running())
        self.backend.release_ports(run.ports)

    # -- pods ----------------------------------------------------------------------

    def _record_pods(
        self, key: Key, resource: Resource, status: dict[str, Any], events: Events
    ) -> None:
        """Record the pods of the replicas that started, as they are now; replace the
        pods a client deleted (remove them once the job finished), and remove those
        ``cleanPodPolicy`` says."""
        namespace = key[0]
        uid = resource.metadata.uid or ""
        if self._pod_owners.get(key) != uid:  # pods of an earlier object of this name
            self.pods.remove_owned(self.kind, namespace, key[1], keep_uid=uid)
            self._pod_owners[key] = uid
        requested = self.pods.deletion_requests(uid)
        run = self.runs.get(key)
        job = run.gang if run is not None else None
        if run is None or job is None:
            if requested:
                self.pods.remove(namespace, requested)
            return
        by_pod = {self._pod_name(job, r): r for r in run.replicas.values()}
        finished = self._terminal(status)
        replaced = False
        for name in sorted(requested):
            replica = by_pod.get(name)
            if replica is None or finished or replica.handle is None:
                self.pods.remove(namespace, [name])
                run.pods_removed.add(name)
                continue
            if replica.handle.poll() is None:
                stop([replica.handle])
            replica.uid = new_uid()
            replica.pod_restarts = 0
            replica.last_run = None
            replica.previous_log_start = None
            replica.failures = 0
            self._run_replica(key, replica)
            events.append(("SuccessfulCreatePod", f"Created pod: {name}", "Normal"))
            replaced = True
        removing = {
            self._pod_name(job, run.replicas[r]) for r in run.pods_to_remove if r in run.replicas
        } - run.pods_removed
        if removing:
            self.pods.remove(namespace, removing)
            run.pods_removed |= removing
        self.pods.put(
            self._pod_record(resource, job, replica, name)
            for name, replica in by_pod.items()
            if replica.handle is not None and name not in run.pods_removed
        )
        if replaced:
            self.enqueue(key)  # the status counts the replaced replicas at the next pass

    def _pod_record(self, resource: Resource, job: Gang, replica: Replica, name: str) -> PodRecord:
        """The pod of ``replica`` (which has started) as it is now."""
        container = job.container(replica.rtype)
        state: ContainerState = "waiting"
        phase: Phase = "Pending"
        reason: str | None = None
        message: str | None = None
        ended: Terminated | None = None
        if replica.state == RUNNING:
            state, phase = "running", "Running"
        elif replica.state == BACKOFF:
            phase, reason = "Running", "CrashLoopBackOff"
            message = f"back-off restarting failed container {container.name or replica.rtype}"
        elif replica.state in (SUCCEEDED, FAILED):
            code = replica.exit_code
            if code is None and replica.handle is not None:
                code = replica.handle.poll()
            if code is None:
                code = 0 if replica.state == SUCCEEDED else 1
            if replica.finished_wall is None:
                replica.finished_wall = utcnow()
            ended = Terminated(code, replica.started_wall, replica.finished_wall)
            state = "terminated"
            phase = "Succeeded" if replica.state == SUCCEEDED else "Failed"
        if replica.state == BACKOFF and replica.finished_wall is None:
            replica.finished_wall = utcnow()
        last = replica.last_run
        if replica.state == BACKOFF and replica.started_wall is not None:
            code = replica.exit_code if replica.exit_code is not None else 1
            last = Terminated(code, replica.started_wall, replica.finished_wall)
        containers = with_trial_collector(
            resource,
            [
                ContainerRecord(
                    name=container.name or replica.rtype.lower(),
                    spec=container_spec(container, replica.spec),
                    state=state,
                    reason=reason,
                    message=message,
                    started_at=replica.started_wall,
                    ended=ended,
                    restarts=replica.pod_restarts,
                    last=last,
                    log=process_log(replica.spec, replica.log_start, replica.previous_log_start),
                )
            ],
        )
        template = (
            job.replicas[replica.rtype].template.metadata if replica.rtype in job.replicas else {}
        )
        policy = job.restart_policy(replica.rtype)
        return PodRecord(
            namespace=job.namespace,
            name=name,
            owner=owner_of(resource),
            uid=replica.uid,
            labels={
                **{str(k): str(v) for k, v in (template.get("labels") or {}).items()},
                **inherited_labels(resource),
                **self._pod_labels(job, replica),
            },
            annotations={
                **{str(k): str(v) for k, v in (template.get("annotations") or {}).items()},
                **image_annotations(containers),
            },
            containers=containers,
            phase=phase,
            restart_policy="Never" if policy == "ExitCode" else policy,
            start_time=replica.started_wall,
            node=replica.handle.node if replica.handle is not None else None,
            ip=replica.handle.host if replica.handle is not None else None,
        )


__all__ = ["GangController"]
