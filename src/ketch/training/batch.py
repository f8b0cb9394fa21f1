"""The Kubernetes ``batch/v1`` ``Job``: pods run to completion, as local processes.

A pod is its containers' ``command`` + ``args`` run through the compute backend
with their ``env`` and ``workingDir`` (a leading ``python``/``python3`` is this
server's interpreter; ``image`` is recorded and reported as not used). Pods are
named ``<job>-<n>``, ``n`` counting the pods the Job created from 0, so the
first pod's log is ``status.logPaths["<job>-0"]`` (the first container's; a
pod's other containers are ``<pod>/<container>``).

Semantics are Kubernetes': ``completions`` successful pods (default 1; none with
``parallelism`` set: a work queue, done once a pod succeeded and none runs),
``completionMode: Indexed`` (``JOB_COMPLETION_INDEX``), at most ``parallelism``
pods at once (default 1). ``restartPolicy: OnFailure`` restarts a failed
container in its pod (the Job fails once the restarts of its running pods reach
``backoffLimit``), after the kubelet's crash-loop back-off (10 s, doubling to
5 minutes; a ``BackOff`` event says how long); ``Never`` counts a failed pod and
starts a new one at once (the Job fails once more than ``backoffLimit``, default
6, pods failed). ``activeDeadlineSeconds``
fails the Job (``DeadlineExceeded``); ``suspend`` stops its pods (not counted as
failed) and resets ``startTime`` on resume; ``ttlSecondsAfterFinished`` deletes
it. Each pod is admitted on its own when its CPU/memory requests fit
(:mod:`ketch.training.admission`).

Status is what Kubernetes writes: ``conditions`` (``Complete``, ``Failed``,
``Suspended``), ``active``, ``ready``, ``succeeded``, ``failed`` (zero counts
omitted, ``ready`` always), ``completedIndexes``, ``startTime``,
``completionTime``; plus ``logPaths`` (pod -> log file) for ``ketch logs``. A
restarted server keeps the counts and starts the pods that had not finished
again.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ketch.core.backend import (
    Backend,
    ProcessHandle,
    ProcessSpec,
)
from ketch.core.controller import Controller, Events, Key, Result, StatusController
from ketch.core.errors import InvalidSpec, NotFound
from ketch.core.resource import Resource, format_time, get_condition, utcnow
from ketch.core.store.resources import ResourceStore
from ketch.training import gpus
from ketch.training.backoff import Backoff, describe
from ketch.training.batch_spec import BatchJob, parse_batch_job
from ketch.training.batch_status import (
    completed_indexes,
    finished_at,
    is_finished,
    parse_indexes,
    set_job_condition,
)
from ketch.training.controller import (
    POLL,
    STOP_GRACE,
    WAIT_FOR_RESOURCES,
    _parse_time,
    admission,
    container_process,
    object_dir,
    reports_exit,
    wake_on_exit,
)
from ketch.training.spec import Container
from ketch.training.validation import ManifestValidator

log = logging.getLogger("ketch.training.batch")

KIND = "Job"
SAFETY_POLL = 5.0  # when every process's exit wakes the controller
START_ERROR = 128  # the exit code Kubernetes reports for a container that could not start


@dataclass
class Run:
    """One container of a pod: its process, and how often it was restarted in place."""

    name: str
    spec: ProcessSpec
    handle: ProcessHandle | None = None
    exit_code: int | None = None
    restarts: int = 0
    started_at: float = 0.0  # time.monotonic() when its current run started
    failures: int = 0  # failures in a row, for the back-off
    restart_at: float | None = None  # set while it waits out the back-off after a failure

    @property
    def running(self) -> bool:
        return self.exit_code is None


@dataclass
class Pod:
    name: str
    index: int | None
    runs: list[Run]
    phase: str = "Running"  # Running | Succeeded | Failed

    @property
    def restarts(self) -> int:
        return sum(r.restarts for r in self.runs)


@dataclass
class Runtime:
    """What runs for one Job, and its counts (kept in status across restarts)."""

    uid: str | None
    workdir: Path
    pods: dict[str, Pod] = field(default_factory=dict)
    next_pod: int = 0
    succeeded: int = 0
    failed: int = 0
    done_indexes: set[int] = field(default_factory=set)
    waiting: str | None = None  # the pod waiting for admission
    images_reported: bool = False
    gpus_reported: bool = False
    backoff_exceeded: bool = False

    def active(self) -> list[Pod]:
        return [p for p in self.pods.values() if p.phase == "Running"]


class _StartError:
    """The handle of a container whose process could not be started."""

    pid: int | None = None

    def __init__(self, spec: ProcessSpec, log_path: Path) -> None:
        self.spec = spec
        self._log_path = log_path

    @property
    def stdout_path(self) -> Path:
        """The container's log, which holds why it could not start."""
        return self._log_path

    @property
    def stderr_path(self) -> Path:
        return self.spec.stderr_path or self._log_path

    def poll(self) -> int | None:
        return START_ERROR

    def wait(self, timeout: float | None = None) -> int | None:
        return START_ERROR

    def cancel(self, grace: float = 5.0) -> None:
        return None

    def add_exit_callback(self, callback: Callable[[ProcessHandle], None]) -> None:
        callback(self)  # it never ran: it has already ended


class JobController(StatusController):
    """Reconciles ``batch/v1`` Jobs into pods of local processes."""

    kind = KIND
    workers = 4

    def __init__(self, store: ResourceStore, backend: Backend) -> None:
        super().__init__(store)
        self.backend = backend
        self.backoff = Backoff.from_env()
        self.runtimes: dict[Key, Runtime] = {}
        self._lock = threading.Lock()

    def tracked_keys(self) -> Iterable[Key]:
        with self._lock:
            return list(self.runtimes)

    def gone(self, key: Key) -> None:
        self._teardown(key)

    def replaced(self, key: Key, uid: str | None) -> None:
        runtime = self.runtimes.get(key)
        if runtime is not None and runtime.uid != uid:
            self._teardown(key)  # deleted and created again

    # -- one pass ------------------------------------------------------------------

    def sync(
        self, key: Key, resource: Resource, status: dict[str, Any], events: Events
    ) -> Result | None:
        namespace, name = key
        if is_finished(status):
            return self._after_finish(key, resource, status)
        try:
            job = parse_batch_job(name, namespace, resource.spec)
        except InvalidSpec as exc:  # stored without going through the API's validator
            self._fail(key, status, events, "InvalidSpec", f"Job {name} has an invalid spec: {exc}")
            return None
        if job.spec.suspend:
            self._suspend(key, status, events)
            return None
        if _condition_true(status, "Suspended"):
            set_job_condition(status, "Suspended", "False", "JobResumed", "Job resumed")
            status["startTime"] = format_time(utcnow())  # the deadline counts from the resume
            events.append(("Resumed", "Job resumed", "Normal"))
        status.setdefault("startTime", format_time(utcnow()))
        runtime = self._runtime(key, resource, status)
        self._poll(key, job, runtime, events)
        outcome = self._outcome(job, runtime, status)
        if outcome is not None:
            reason, message = outcome
            if reason == "CompletionsReached":
                self._complete(key, status, events)
            else:
                self._fail(key, status, events, reason, message)
            self._write_counts(job, runtime, status)
            return self._after_finish(key, resource, status)
        waiting = self._start_pods(key, job, runtime, status, events)
        self._write_counts(job, runtime, status)
        wait = WAIT_FOR_RESOURCES if waiting else self._poll_interval(runtime)
        deadline = job.spec.activeDeadlineSeconds
        if deadline is not None:
            elapsed = (utcnow() - _parse_time(status["startTime"])).total_seconds()
            wait = max(0.05, min(wait, deadline - elapsed))
        return Result(requeue_after=wait)

    def _runtime(self, key: Key, resource: Resource, status: dict[str, Any]) -> Runtime:
        runtime = self.runtimes.get(key)
        if runtime is not None:
            return runtime
        namespace, name = key
        workdir = object_dir(KIND, key, resource.metadata.uid)  # fresh for a re-created Job
        workdir.mkdir(parents=True, exist_ok=True)
        runtime = Runtime(
            uid=resource.metadata.uid,
            workdir=workdir,
            next_pod=_next_pod(name, status.get("logPaths") or {}),
            succeeded=int(status.get("succeeded") or 0),
            failed=int(status.get("failed") or 0),
            done_indexes=parse_indexes(str(status.get("completedIndexes") or "")),
        )
        with self._lock:
            self.runtimes[key] = runtime
        return runtime

    def _poll(self, key: Key, job: BatchJob, runtime: Runtime, events: Events) -> None:
        """Note the containers that ended: restart in place (OnFailure) or end the pod."""
        for pod in runtime.active():
            for run in pod.runs:
                if not run.running or run.handle is None:
                    continue
                code = run.handle.poll()
                if code is None:
                    continue
                run.exit_code = code
                if code == 0 or job.restart_policy == "Never":
                    continue
                run.restarts += 1
                if _over_backoff(job, runtime):
                    runtime.backoff_exceeded = True  # the Job fails (see _outcome)
                    continue
                now = time.monotonic()
                run.failures = self.backoff.failures_after(run.failures, now - run.started_at)
                delay = self.backoff.delay(run.failures)
                run.restart_at = now + delay
                events.append(
                    (
                        "BackOff",
                        f"Back-off {describe(delay)} restarting failed container {run.name} in "
                        f"pod {pod.name} (exit code {code})",
                        "Warning",
                    )
                )
            for run in pod.runs:
                if run.restart_at is not None and run.restart_at <= time.monotonic():
                    run.restart_at = None
                    run.exit_code = None
                    run.handle = self._start_run(key, run, fresh=False)
                    events.append(
                        ("Restarted", f"Restarted container {run.name} of pod {pod.name}", "Normal")
                    )
            if job.restart_policy == "Never" and any(
                r.exit_code not in (None, 0) for r in pod.runs
            ):
                pod.phase = "Failed"
                _stop([r for r in pod.runs if r.running])
                runtime.failed += 1
            elif all(r.exit_code == 0 for r in pod.runs):
                pod.phase = "Succeeded"
                runtime.succeeded += 1
                if pod.index is not None:
                    runtime.done_indexes.add(pod.index)
            if pod.phase != "Running":
                admission().release((KIND, job.namespace, pod.name))

    def _outcome(
        self, job: BatchJob, runtime: Runtime, status: dict[str, Any]
    ) -> tuple[str, str] | None:
        """``(reason, message)`` once the Job is done, else ``None``."""
        if runtime.backoff_exceeded or (
            job.restart_policy == "Never" and runtime.failed > job.backoff_limit
        ):
            return "BackoffLimitExceeded", "Job has reached the specified backoff limit"
        completions = job.completions
        active = runtime.active()
        if job.indexed and completions is not None:
            if len(runtime.done_indexes) >= completions:
                return "CompletionsReached", "Reached expected number of succeeded pods"
        elif completions is not None:
            if runtime.succeeded >= completions:
                return "CompletionsReached", "Reached expected number of succeeded pods"
        elif runtime.succeeded > 0 and not active:
            return "CompletionsReached", "Reached expected number of succeeded pods"
        deadline = job.spec.activeDeadlineSeconds
        if deadline is not None:
            elapsed = (utcnow() - _parse_time(status["startTime"])).total_seconds()
            if elapsed >= deadline:
                return "DeadlineExceeded", "Job was active longer than specified deadline"
        return None

    # -- starting pods -------------------------------------------------------------

    def _start_pods(
        self, key: Key, job: BatchJob, runtime: Runtime, status: dict[str, Any], events: Events
    ) -> bool:
        """Start the pods the Job wants now; True when one waits for resources."""
        active = runtime.active()
        indexes: list[int | None]
        if job.indexed:
            taken = runtime.done_indexes | {p.index for p in active if p.index is not None}
            free = [i for i in range(job.completions or 0) if i not in taken]
            indexes = list(free[: max(0, job.parallelism - len(active))])
        else:
            completions = job.completions
            if completions is None:  # a work queue: no new pods once one succeeded
                want = 0 if runtime.succeeded else job.parallelism
            else:
                want = min(job.parallelism, completions - runtime.succeeded)
            indexes = [None] * max(0, want - len(active))
        request = job.pod_request()
        for index in indexes:
            pod_name = f"{job.name}-{runtime.next_pod}"
            ok, why = admission().try_admit((KIND, job.namespace, pod_name), request)
            if not ok:
                if runtime.waiting != pod_name or status.get("admission") != why:
                    events.append(("WaitingForResources", why, "Normal"))
                runtime.waiting = pod_name
                status["admission"] = why
                return True
            runtime.waiting = None
            status.pop("admission", None)
            runtime.next_pod += 1
            pod = self._new_pod(job, runtime, pod_name, index)
            runtime.pods[pod_name] = pod
            for run in pod.runs:
                run.handle = self._start_run(key, run, fresh=True)
            paths = status.setdefault("logPaths", {})
            for run in pod.runs:
                paths[_log_key(pod, run)] = str(run.spec.stdout_path)
            events.append(("SuccessfulCreate", f"Created pod: {pod_name}", "Normal"))
            no_gpu = gpus.warning(
                (f"{pod_name}/{c.name}", gpus.requested(c)) for c in job.containers
            )
            if no_gpu and not runtime.gpus_reported:
                runtime.gpus_reported = True
                events.append((gpus.REASON, no_gpu, "Warning"))
            images = sorted({c.image for c in job.containers if c.image})
            if images and not runtime.images_reported:
                runtime.images_reported = True
                events.append(
                    (
                        "ImageNotUsed",
                        f"image {', '.join(images)} is not used: the local backend runs each "
                        "container's command on this machine",
                        "Normal",
                    )
                )
        return False

    def _new_pod(self, job: BatchJob, runtime: Runtime, pod_name: str, index: int | None) -> Pod:
        runs = []
        for position, container in enumerate(job.containers):
            suffix = "" if position == 0 else f".{container.name or position}"
            log_path = runtime.workdir / f"{pod_name}{suffix}.log"
            runs.append(
                Run(
                    container.name or str(position),
                    _process(job, pod_name, index, container, log_path),
                )
            )
        return Pod(pod_name, index, runs)

    def _start_run(self, key: Key, run: Run, *, fresh: bool) -> ProcessHandle:
        log_path = run.spec.stdout_path
        assert log_path is not None
        if fresh:
            log_path.write_bytes(b"")  # a name reused by an earlier Job of the same name
        try:
            handle: ProcessHandle = self.backend.start(run.spec)
        except Exception as exc:
            with log_path.open("a") as out:
                out.write(f"ketch: could not start the container: {exc}\n")
            self.enqueue(key)
            return _StartError(run.spec, log_path)
        run.started_at = time.monotonic()
        wake_on_exit(self, key, handle)
        return handle

    # -- ending ------------------------------------------------------------------

    def _complete(self, key: Key, status: dict[str, Any], events: Events) -> None:
        message = "Reached expected number of succeeded pods"
        set_job_condition(status, "Complete", "True", "CompletionsReached", message)
        status["completionTime"] = (get_condition(status, "Complete") or {}).get(
            "lastTransitionTime", format_time(utcnow())
        )
        status.pop("admission", None)
        events.append(("Completed", "Job completed", "Normal"))
        self._stop_pods(key, status, events, count_failed=False)

    def _fail(
        self, key: Key, status: dict[str, Any], events: Events, reason: str, message: str
    ) -> None:
        set_job_condition(status, "Failed", "True", reason, message)
        status.pop("admission", None)
        events.append((reason, message, "Warning"))
        self._stop_pods(key, status, events, count_failed=True)

    def _suspend(self, key: Key, status: dict[str, Any], events: Events) -> None:
        self._stop_pods(key, status, events, count_failed=False)
        with self._lock:
            runtime = self.runtimes.pop(key, None)
        if runtime is not None:
            self._release(key, runtime)
        if not _condition_true(status, "Suspended"):
            set_job_condition(status, "Suspended", "True", "JobSuspended", "Job suspended")
            events.append(("Suspended", "Job suspended", "Normal"))
        status.pop("startTime", None)
        status.pop("admission", None)
        status.pop("active", None)
        status["ready"] = 0

    def _stop_pods(
        self, key: Key, status: dict[str, Any], events: Events, *, count_failed: bool
    ) -> None:
        runtime = self.runtimes.get(key)
        if runtime is None:
            return
        active = runtime.active()
        _stop([r for p in active for r in p.runs if r.running])
        for pod in active:
            pod.phase = "Failed" if count_failed else "Deleted"
            events.append(("SuccessfulDelete", f"Deleted pod: {pod.name}", "Normal"))
            if count_failed:
                runtime.failed += 1
        self._release(key, runtime)

    def _after_finish(self, key: Key, resource: Resource, status: dict[str, Any]) -> Result | None:
        """A finished Job: release what it held, honour ``ttlSecondsAfterFinished``."""
        with self._lock:
            runtime = self.runtimes.pop(key, None)
        if runtime is not None:
            self._release(key, runtime)
        ttl = resource.spec.get("ttlSecondsAfterFinished")
        ended = finished_at(status)
        if not isinstance(ttl, int) or ended is None:
            return None
        left = ttl - (utcnow() - _parse_time(ended)).total_seconds()
        if left > 0:
            return Result(requeue_after=left)
        with contextlib.suppress(NotFound):
            self.store.delete(KIND, key[0], key[1])
        return None

    def _write_counts(self, job: BatchJob, runtime: Runtime, status: dict[str, Any]) -> None:
        active = len(runtime.active())
        for name, value in (
            ("active", active),
            ("succeeded", runtime.succeeded),
            ("failed", runtime.failed),
        ):
            if value:
                status[name] = value
            else:
                status.pop(name, None)
        status["ready"] = active
        if job.indexed:
            status["completedIndexes"] = completed_indexes(runtime.done_indexes)

    def _poll_interval(self, runtime: Runtime) -> float:
        handles = [r.handle for p in runtime.active() for r in p.runs if r.running]
        wait = SAFETY_POLL if all(reports_exit(h) for h in handles) else POLL
        backing_off = [
            r.restart_at - time.monotonic()
            for p in runtime.active()
            for r in p.runs
            if r.restart_at is not None
        ]
        return max(0.05, min(wait, *backing_off)) if backing_off else wait

    def _release(self, key: Key, runtime: Runtime) -> None:
        for pod in runtime.pods.values():
            admission().release((KIND, key[0], pod.name))
        if runtime.waiting is not None:
            admission().release((KIND, key[0], runtime.waiting))
            runtime.waiting = None

    def _teardown(self, key: Key) -> None:
        with self._lock:
            runtime = self.runtimes.pop(key, None)
        if runtime is None:
            return
        _stop([r for p in runtime.active() for r in p.runs if r.running])
        self._release(key, runtime)


def _process(
    job: BatchJob, pod: str, index: int | None, container: Container, log_path: Path
) -> ProcessSpec:
    env = {"PYTHONUNBUFFERED": "1"}
    if index is not None:
        env["JOB_COMPLETION_INDEX"] = str(index)
    env.update({e.name: e.value or "" for e in container.env})
    return container_process(
        container,
        name=f"Job {job.namespace}/{job.name} pod {pod} container {container.name}",
        env=env,
        log_path=log_path,
    )


def _log_key(pod: Pod, run: Run) -> str:
    return pod.name if run is pod.runs[0] else f"{pod.name}/{run.name}"


def _next_pod(job: str, log_paths: dict[str, Any]) -> int:
    """The number of the next pod: one more than the highest in ``logPaths``."""
    highest = -1
    for key in log_paths:
        number = key.split("/", 1)[0].removeprefix(f"{job}-")
        if number.isdigit():
            highest = max(highest, int(number))
    return highest + 1


def _over_backoff(job: BatchJob, runtime: Runtime) -> bool:
    """OnFailure: the restarts of the running pods reached ``backoffLimit`` (any, for 0)."""
    restarts = sum(p.restarts for p in runtime.active())
    return restarts > 0 if job.backoff_limit == 0 else restarts >= job.backoff_limit


def _condition_true(status: dict[str, Any], type_: str) -> bool:
    condition = get_condition(status, type_)
    return condition is not None and condition.get("status") == "True"


def _stop(runs: list[Run]) -> None:
    """Stop ``runs`` together (SIGTERM, SIGKILL after a grace period)."""
    handles = [r.handle for r in runs if r.handle is not None and r.handle.poll() is None]
    threads = [threading.Thread(target=h.cancel, args=(STOP_GRACE,), daemon=True) for h in handles]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(STOP_GRACE + 15)


def validate_manifest(manifest: dict[str, Any]) -> None:
    """Refuse a Job manifest Ketch cannot run (``InvalidSpec`` names the field); a
    template without a name (a Katib trial's) is checked too."""
    metadata = manifest.get("metadata")
    metadata = metadata if isinstance(metadata, dict) else {}
    spec = manifest.get("spec")
    if not isinstance(spec, dict):
        raise InvalidSpec("a Job needs a spec object", field="spec")
    parse_batch_job(
        str(metadata.get("name") or "job"), str(metadata.get("namespace") or "default"), spec
    )


#: the registered check: called with a Resource, or ``validate.validate_manifest(manifest)``
validate = ManifestValidator(KIND, validate_manifest)


def _factory(store: ResourceStore, backend: Backend) -> Controller:
    return JobController(store, backend)


FACTORY: Callable[[ResourceStore, Backend], Controller] = _factory


__all__ = ["FACTORY", "JobController", "validate", "validate_manifest"]
