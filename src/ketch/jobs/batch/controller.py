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
it. Each pod is admitted on its own when its CPU/memory requests fit (the
backend's admission ledger, :mod:`ketch.core.backend.host`). The pods and their
containers' processes are :mod:`ketch.jobs.batch.pods`.

Status is what Kubernetes writes: ``conditions`` (``Complete``, ``Failed``,
``Suspended``), ``active``, ``ready``, ``succeeded``, ``failed`` (zero counts
omitted, ``ready`` always), ``completedIndexes``, ``startTime``,
``completionTime``; plus ``logPaths`` (pod -> log file) for ``ketch logs``. A
restarted server keeps the counts and starts the pods that had not finished
again.

Each pod is recorded (:mod:`ketch.core.store.pods`) with the labels Kubernetes
gives a Job's pods (``batch.kubernetes.io/job-name``, ``job-name``,
``controller-uid``, the completion index) and its containers' states, restarts and
logs. Finished pods stay until the Job is deleted (or its TTL removes it); pods
stopped because the Job ended, failed or was suspended are removed, as the Job
controller deletes them. A client's ``DELETE`` of a running pod stops it and counts
it failed, and the Job starts another pod in its place; a finished pod is just
removed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from ketch.core import charges
from ketch.core.access import workload_env
from ketch.core.backend import Backend, ProcessHandle
from ketch.core.conditions import get_condition, is_true
from ketch.core.controller import Controller, Events, Key, Result, StatusController
from ketch.core.errors import InvalidSpec, KetchError, NotFound
from ketch.core.resource import Resource
from ketch.core.store.pods import (
    ContainerRecord,
    ContainerState,
    Phase,
    PodRecord,
    PodStore,
    Terminated,
    log_size,
)
from ketch.core.store.resources import ResourceStore
from ketch.core.timestamps import format_time, parse_time, utcnow
from ketch.core.workloads.backoff import Backoff, describe
from ketch.core.workloads.containers import (
    GPU_REASON,
    IMAGE_REASON,
    gpu_warning,
    gpus_requested,
    image_notice,
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
from ketch.jobs.batch.pods import (
    ContainerRun,
    JobRun,
    Pod,
    StartError,
    admission_key,
    log_key,
    new_pod,
    next_pod,
    over_backoff,
)
from ketch.jobs.batch.spec import KIND, BatchJob, parse_batch_job
from ketch.jobs.batch.status import (
    completed_indexes,
    finished_at,
    is_finished,
    parse_indexes,
    set_job_condition,
)

log = logging.getLogger("ketch.jobs.batch")


class JobController(StatusController):
    """Reconciles ``batch/v1`` Jobs into pods of local processes."""

    kind = KIND
    workers = 4

    def __init__(self, store: ResourceStore, backend: Backend) -> None:
        super().__init__(store)
        self.backend = backend
        self.backoff = Backoff.from_env()
        self.runs: dict[Key, JobRun] = {}
        self._lock = threading.Lock()
        self.pods = PodStore(store.database)
        self._pod_owners: dict[Key, str] = {}  # the uid each key's pods were last kept for

    def tracked_keys(self) -> Iterable[Key]:
        with self._lock:
            return list(self.runs)

    def gone(self, key: Key) -> None:
        self._teardown(key)
        self._pod_owners.pop(key, None)
        self.pods.remove_owned(KIND, key[0], key[1])

    def replaced(self, key: Key, uid: str | None) -> None:
        job_run = self.runs.get(key)
        if job_run is not None and job_run.uid != uid:
            self._teardown(key)  # deleted and created again

    # -- one pass ------------------------------------------------------------------

    def sync(
        self, key: Key, resource: Resource, status: dict[str, Any], events: Events
    ) -> Result | None:
        uid = resource.metadata.uid or ""
        if self._pod_owners.get(key) != uid:  # pods of an earlier Job of this name
            self.pods.remove_owned(KIND, key[0], key[1], keep_uid=uid)
            self._pod_owners[key] = uid
        self._delete_requested(key, resource, status, events)
        result = self._sync(key, resource, status, events)
        # what its pods held before a restart: charged again as they started, or not needed
        charges.ledger_of(self.store).settle(charges.owner_key(KIND, *key))
        self._record_pods(key, resource)
        return result

    def _sync(
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
        if is_true(status, "Suspended"):
            set_job_condition(status, "Suspended", "False", "JobResumed", "Job resumed")
            status["startTime"] = format_time(utcnow())  # the deadline counts from the resume
            events.append(("Resumed", "Job resumed", "Normal"))
        status.setdefault("startTime", format_time(utcnow()))
        job_run = self._run_of(key, resource, status)
        self._poll(key, job, job_run, events)
        outcome = self._outcome(job, job_run, status)
        if outcome is not None:
            reason, message = outcome
            if reason == "CompletionsReached":
                self._complete(key, status, events)
            else:
                self._fail(key, status, events, reason, message)
            self._write_counts(job, job_run, status)
            return self._after_finish(key, resource, status)
        waiting = self._start_pods(key, job, job_run, status, events)
        self._write_counts(job, job_run, status)
        wait = WAIT_FOR_RESOURCES if waiting else self._poll_interval(job_run)
        deadline = job.spec.activeDeadlineSeconds
        if deadline is not None:
            elapsed = (utcnow() - parse_time(status["startTime"])).total_seconds()
            wait = max(0.05, min(wait, deadline - elapsed))
        return Result(requeue_after=wait)

    def _run_of(self, key: Key, resource: Resource, status: dict[str, Any]) -> JobRun:
        job_run = self.runs.get(key)
        if job_run is not None:
            return job_run
        namespace, name = key
        workdir = object_dir(KIND, key, resource.metadata.uid)  # fresh for a re-created Job
        workdir.mkdir(parents=True, exist_ok=True)
        job_run = JobRun(
            uid=resource.metadata.uid,
            workdir=workdir,
            next_pod=next_pod(name, status.get("logPaths") or {}),
            succeeded=int(status.get("succeeded") or 0),
            failed=int(status.get("failed") or 0),
            done_indexes=parse_indexes(str(status.get("completedIndexes") or "")),
        )
        with self._lock:
            self.runs[key] = job_run
        return job_run

    def _poll(self, key: Key, job: BatchJob, job_run: JobRun, events: Events) -> None:
        """Note the containers that ended: restart in place (OnFailure) or end the pod."""
        for pod in job_run.active():
            for run in pod.runs:
                if not run.running or run.handle is None:
                    continue
                code = run.handle.poll()
                if code is None:
                    continue
                run.exit_code = code
                run.finished_wall = utcnow()
                if code == 0 or job.restart_policy == "Never":
                    continue
                run.restarts += 1
                if over_backoff(job, job_run):
                    job_run.backoff_exceeded = True  # the Job fails (see _outcome)
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
                    run.last_run = Terminated(
                        run.exit_code if run.exit_code is not None else 1,
                        run.started_wall,
                        run.finished_wall,
                    )
                    run.exit_code = None
                    run.handle = self._start_run(key, run, fresh=False)
                    events.append(
                        ("Restarted", f"Restarted container {run.name} of pod {pod.name}", "Normal")
                    )
            if job.restart_policy == "Never" and any(
                r.exit_code not in (None, 0) for r in pod.runs
            ):
                pod.phase = "Failed"
                stop(r.handle for r in pod.runs if r.running)
                job_run.failed += 1
            elif all(r.exit_code == 0 for r in pod.runs):
                pod.phase = "Succeeded"
                job_run.succeeded += 1
                if pod.index is not None:
                    job_run.done_indexes.add(pod.index)
            if pod.phase != "Running":
                self._release_pod(job.namespace, pod.name)

    def _outcome(
        self, job: BatchJob, job_run: JobRun, status: dict[str, Any]
    ) -> tuple[str, str] | None:
        """``(reason, message)`` once the Job is done, else ``None``."""
        if job_run.backoff_exceeded or (
            job.restart_policy == "Never" and job_run.failed > job.backoff_limit
        ):
            return "BackoffLimitExceeded", "Job has reached the specified backoff limit"
        completions = job.completions
        active = job_run.active()
        if job.indexed and completions is not None:
            if len(job_run.done_indexes) >= completions:
                return "CompletionsReached", "Reached expected number of succeeded pods"
        elif completions is not None:
            if job_run.succeeded >= completions:
                return "CompletionsReached", "Reached expected number of succeeded pods"
        elif job_run.succeeded > 0 and not active:
            return "CompletionsReached", "Reached expected number of succeeded pods"
        deadline = job.spec.activeDeadlineSeconds
        if deadline is not None:
            elapsed = (utcnow() - parse_time(status["startTime"])).total_seconds()
            if elapsed >= deadline:
                return "DeadlineExceeded", "Job was active longer than specified deadline"
        return None

    # -- starting pods -------------------------------------------------------------

    def _start_pods(
        self, key: Key, job: BatchJob, job_run: JobRun, status: dict[str, Any], events: Events
    ) -> bool:
        """Start the pods the Job wants now; True when one waits for resources."""
        active = job_run.active()
        indexes: list[int | None]
        if job.indexed:
            taken = job_run.done_indexes | {p.index for p in active if p.index is not None}
            free = [i for i in range(job.completions or 0) if i not in taken]
            indexes = list(free[: max(0, job.parallelism - len(active))])
        else:
            completions = job.completions
            if completions is None:  # a work queue: no new pods once one succeeded
                want = 0 if job_run.succeeded else job.parallelism
            else:
                want = min(job.parallelism, completions - job_run.succeeded)
            indexes = [None] * max(0, want - len(active))
        request = job.pod_request()
        for index in indexes:
            pod_name = f"{job.name}-{job_run.next_pod}"
            refused = charges.ledger_of(self.store).admit(
                self.store,
                (KIND, job.namespace, pod_name),
                job.namespace,
                [(pod_name, job.containers)],
                owner=charges.owner_key(KIND, job.namespace, job.name),
            )
            if refused is not None:  # the namespace's quota (kf-resource-quota)
                if job_run.waiting != pod_name or status.get("admission") != refused:
                    events.append(("FailedCreate", refused, "Warning"))
                job_run.waiting = pod_name
                status["admission"] = refused
                return True
            ok, why = self.backend.admit(admission_key(job.namespace, pod_name), request)
            if not ok:
                if job_run.waiting != pod_name or status.get("admission") != why:
                    events.append(("WaitingForResources", why, "Normal"))
                job_run.waiting = pod_name
                status["admission"] = why
                return True
            job_run.waiting = None
            status.pop("admission", None)
            job_run.next_pod += 1
            pod = new_pod(job, job_run, pod_name, index)
            pod.started_wall = utcnow()
            job_run.pods[pod_name] = pod
            for run in pod.runs:
                run.handle = self._start_run(key, run, fresh=True)
            paths = status.setdefault("logPaths", {})
            for run in pod.runs:
                paths[log_key(pod, run)] = str(run.spec.stdout_path)
            events.append(("SuccessfulCreate", f"Created pod: {pod_name}", "Normal"))
            no_gpu = gpu_warning(
                ((f"{pod_name}/{c.name}", gpus_requested(c)) for c in job.containers),
                self.backend.gpus(),
            )
            if no_gpu and not job_run.gpus_reported:
                job_run.gpus_reported = True
                events.append((GPU_REASON, no_gpu, "Warning"))
            images = sorted({c.image for c in job.containers if c.image})
            if images and not job_run.images_reported:
                job_run.images_reported = True
                events.append((IMAGE_REASON, image_notice(images), "Normal"))
        return False

    def _start_run(self, key: Key, run: ContainerRun, *, fresh: bool) -> ProcessHandle:
        log_path = run.spec.stdout_path
        assert log_path is not None
        if fresh:
            log_path.write_bytes(b"")  # a name reused by an earlier Job of the same name
        else:
            run.previous_log_start = run.log_start
        run.log_start = log_size(log_path)
        run.started_wall = utcnow()
        run.finished_wall = None
        spec = run.spec
        job_run = self.runs.get(key)
        if job_run is not None:  # a folder of the Job's own for what it makes
            outputs = str(outputs_dir(job_run.workdir))
            spec = dataclasses.replace(spec, env={OUTPUT_ENV: outputs, **spec.env})
        # the namespace's service-account token, once authentication is on (never shown)
        secret = workload_env(self.store.database, key[0])
        if secret:
            spec = dataclasses.replace(spec, secret_env=secret)
        try:
            handle: ProcessHandle = self.backend.start(spec)
        except (KetchError, OSError, ValueError) as exc:
            with log_path.open("a") as out:
                out.write(f"ketch: could not start the container: {exc}\n")
            self.enqueue(key)
            return StartError(run.spec, log_path)
        run.started_at = time.monotonic()
        wake_on_exit(self, key, handle, self.backend)
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
            job_run = self.runs.pop(key, None)
        if job_run is not None:
            self._release(key, job_run)
        if not is_true(status, "Suspended"):
            set_job_condition(status, "Suspended", "True", "JobSuspended", "Job suspended")
            events.append(("Suspended", "Job suspended", "Normal"))
        status.pop("startTime", None)
        status.pop("admission", None)
        status.pop("active", None)
        status["ready"] = 0

    def _stop_pods(
        self, key: Key, status: dict[str, Any], events: Events, *, count_failed: bool
    ) -> None:
        job_run = self.runs.get(key)
        if job_run is None:
            return
        active = job_run.active()
        stop(r.handle for p in active for r in p.runs if r.running)
        for pod in active:
            pod.phase = "Failed" if count_failed else "Deleted"
            pod.removed = True
            events.append(("SuccessfulDelete", f"Deleted pod: {pod.name}", "Normal"))
            if count_failed:
                job_run.failed += 1
        self.pods.remove(key[0], [p.name for p in active])
        self._release(key, job_run)

    def _after_finish(self, key: Key, resource: Resource, status: dict[str, Any]) -> Result | None:
        """A finished Job: release what it held, honour ``ttlSecondsAfterFinished``."""
        self._record_pods(key, resource)  # how its pods ended
        with self._lock:
            job_run = self.runs.pop(key, None)
        if job_run is not None:
            self._release(key, job_run)
        ttl = resource.spec.get("ttlSecondsAfterFinished")
        ended = finished_at(status)
        if not isinstance(ttl, int) or ended is None:
            return None
        left = ttl - (utcnow() - parse_time(ended)).total_seconds()
        if left > 0:
            return Result(requeue_after=left)
        with contextlib.suppress(NotFound):
            self.store.delete(KIND, key[0], key[1])
        return None

    def _write_counts(self, job: BatchJob, job_run: JobRun, status: dict[str, Any]) -> None:
        active = len(job_run.active())
        for name, value in (
            ("active", active),
            ("succeeded", job_run.succeeded),
            ("failed", job_run.failed),
        ):
            if value:
                status[name] = value
            else:
                status.pop(name, None)
        status["ready"] = active
        if job.indexed:
            status["completedIndexes"] = completed_indexes(job_run.done_indexes)

    def _poll_interval(self, job_run: JobRun) -> float:
        handles = [r.handle for p in job_run.active() for r in p.runs if r.running]
        wait = poll_interval(self.backend, bool(handles))
        backing_off = [
            r.restart_at - time.monotonic()
            for p in job_run.active()
            for r in p.runs
            if r.restart_at is not None
        ]
        return max(0.05, min(wait, *backing_off)) if backing_off else wait

    def _release_pod(self, namespace: str, pod: str) -> None:
        """Give back what a pod took of the machine and of its namespace's quota."""
        charges.ledger_of(self.store).release((KIND, namespace, pod))
        self.backend.release(admission_key(namespace, pod))

    def _release(self, key: Key, job_run: JobRun) -> None:
        for pod in job_run.pods.values():
            self._release_pod(key[0], pod.name)
        if job_run.waiting is not None:
            self._release_pod(key[0], job_run.waiting)
            job_run.waiting = None

    def _teardown(self, key: Key) -> None:
        with self._lock:
            job_run = self.runs.pop(key, None)
        if job_run is None:
            return
        stop(r.handle for p in job_run.active() for r in p.runs if r.running)
        self._release(key, job_run)

    # -- pods ------------------------------------------------------------------------

    def _delete_requested(
        self, key: Key, resource: Resource, status: dict[str, Any], events: Events
    ) -> None:
        """The pods a client deleted: a running one is stopped and counted failed (the
        Job starts another in its place), a finished one is removed."""
        requested = self.pods.deletion_requests(resource.metadata.uid or "")
        if not requested:
            return
        job_run = self.runs.get(key)
        pods = job_run.pods if job_run is not None else {}
        for name in requested:
            pod = pods.get(name)
            if job_run is not None and pod is not None and pod.phase == "Running":
                stop(r.handle for r in pod.runs if r.running)
                pod.phase = "Failed"
                job_run.failed += 1
                self._release_pod(key[0], pod.name)
                events.append(("SuccessfulDelete", f"Deleted pod: {pod.name}", "Normal"))
            if pod is not None:
                pod.removed = True
        self.pods.remove(key[0], requested)

    def _record_pods(self, key: Key, resource: Resource) -> None:
        """Record the Job's pods as they are now."""
        job_run = self.runs.get(key)
        if job_run is None:
            return
        try:
            job = parse_batch_job(key[1], key[0], resource.spec)
        except InvalidSpec:
            return
        self.pods.put(
            self._pod_record(resource, job, pod)
            for pod in job_run.pods.values()
            if not pod.removed and pod.phase != "Deleted"
        )

    def _pod_record(self, resource: Resource, job: BatchJob, pod: Pod) -> PodRecord:
        containers: list[ContainerRecord] = []
        for container, run in zip(job.containers, pod.runs, strict=False):
            state: ContainerState = "running"
            reason: str | None = None
            ended: Terminated | None = None
            last = run.last_run
            if run.restart_at is not None:
                state, reason = "waiting", "CrashLoopBackOff"
                last = Terminated(
                    run.exit_code if run.exit_code is not None else 1,
                    run.started_wall,
                    run.finished_wall,
                )
            elif run.exit_code is not None:
                state = "terminated"
                ended = Terminated(run.exit_code, run.started_wall, run.finished_wall)
            elif pod.phase != "Running":  # stopped with its pod
                code = run.handle.poll() if run.handle is not None else None
                state = "terminated"
                ended = Terminated(code if code is not None else 137, run.started_wall, utcnow())
            containers.append(
                ContainerRecord(
                    name=run.name,
                    spec=container_spec(container, run.spec),
                    state=state,
                    reason=reason,
                    started_at=run.started_wall,
                    ended=ended,
                    restarts=run.restarts,
                    last=last,
                    log=process_log(run.spec, run.log_start, run.previous_log_start),
                )
            )
        containers = with_trial_collector(resource, containers)
        # the pod's node: where its containers were started (together, on one node)
        handle = next((r.handle for r in pod.runs if r.handle is not None), None)
        phase: Phase = "Running"
        if pod.phase in ("Succeeded", "Failed"):
            phase = "Succeeded" if pod.phase == "Succeeded" else "Failed"
        uid = resource.metadata.uid or ""
        labels = {
            **{str(k): str(v) for k, v in (job.spec.template.metadata.get("labels") or {}).items()},
            **inherited_labels(resource),
            "batch.kubernetes.io/controller-uid": uid,
            "controller-uid": uid,
            "batch.kubernetes.io/job-name": job.name,
            "job-name": job.name,
        }
        annotations = {
            str(k): str(v) for k, v in (job.spec.template.metadata.get("annotations") or {}).items()
        }
        if pod.index is not None:
            labels["batch.kubernetes.io/job-completion-index"] = str(pod.index)
            annotations["batch.kubernetes.io/job-completion-index"] = str(pod.index)
        annotations.update(image_annotations(containers))
        return PodRecord(
            namespace=job.namespace,
            name=pod.name,
            owner=owner_of(resource),
            uid=pod.uid,
            labels=labels,
            annotations=annotations,
            containers=containers,
            phase=phase,
            restart_policy=job.restart_policy,
            start_time=pod.started_wall,
            node=handle.node if handle is not None else None,
            ip=handle.host if handle is not None else None,
        )


def _factory(store: ResourceStore, backend: Backend) -> Controller:
    return JobController(store, backend)


FACTORY: Callable[[ResourceStore, Backend], Controller] = _factory


__all__ = ["FACTORY", "JobController"]
