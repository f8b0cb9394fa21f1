"""What runs for a ``batch/v1`` Job: its pods, each a set of container processes.

Pods are named ``<job>-<n>``, ``n`` counting the pods the Job created from 0; a
pod's first container logs to ``<pod>.log`` (``status.logPaths["<pod>"]``), its
other containers to ``<pod>.<container>.log`` (``"<pod>/<container>"``). The counts
(:class:`JobRun`) are kept in ``status`` across server restarts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ketch.core.backend import Placement, ProcessHandle, ProcessSpec
from ketch.core.backend.host import LOCAL_HOST
from ketch.core.store.pods import Terminated, new_uid
from ketch.core.workloads.containers import container_process
from ketch.core.workloads.pods import Container
from ketch.jobs.batch.spec import KIND, BatchJob

START_ERROR = 128  # the exit code Kubernetes reports for a container that could not start


@dataclass
class ContainerRun:
    """One container of a pod: its process, and how often it was restarted in place."""

    name: str
    spec: ProcessSpec
    handle: ProcessHandle | None = None
    exit_code: int | None = None
    restarts: int = 0
    started_at: float = 0.0  # time.monotonic() when its current run started
    failures: int = 0  # failures in a row, for the back-off
    restart_at: float | None = None  # set while it waits out the back-off after a failure
    # as its pod shows it: where its current and previous runs' output begin in its
    # log, when its run started and ended, how the run before ended
    log_start: int = 0
    previous_log_start: int | None = None
    started_wall: datetime | None = None
    finished_wall: datetime | None = None
    last_run: Terminated | None = None

    @property
    def running(self) -> bool:
        return self.exit_code is None


@dataclass
class Pod:
    name: str
    index: int | None
    runs: list[ContainerRun]
    phase: str = "Running"  # Running | Succeeded | Failed | Deleted (stopped, not counted)
    uid: str = field(default_factory=new_uid)
    started_wall: datetime | None = None
    removed: bool = False  # its pod was removed (stopped when the Job ended, deleted)

    @property
    def restarts(self) -> int:
        return sum(r.restarts for r in self.runs)


@dataclass
class JobRun:
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


class StartError:
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

    @property
    def host(self) -> str:
        return LOCAL_HOST

    @property
    def node(self) -> str | None:
        return None

    def poll(self) -> int | None:
        return START_ERROR

    def wait(self, timeout: float | None = None) -> int | None:
        return START_ERROR

    def cancel(self, grace: float = 5.0) -> None:
        return None

    def add_exit_callback(self, callback: Callable[[ProcessHandle], None]) -> None:
        callback(self)  # it never ran: it has already ended


def new_pod(job: BatchJob, run: JobRun, pod_name: str, index: int | None) -> Pod:
    """Pod ``pod_name`` (completion index ``index``) of ``job``, not started yet."""
    runs = []
    for position, container in enumerate(job.containers):
        suffix = "" if position == 0 else f".{container.name or position}"
        log_path = run.workdir / f"{pod_name}{suffix}.log"
        runs.append(
            ContainerRun(
                container.name or str(position),
                pod_process(job, pod_name, index, container, log_path),
            )
        )
    return Pod(pod_name, index, runs)


def pod_process(
    job: BatchJob, pod: str, index: int | None, container: Container, log_path: Path
) -> ProcessSpec:
    """The process of one container of ``pod`` (``JOB_COMPLETION_INDEX`` when indexed),
    placed where the pod was admitted (see :func:`admission_key`)."""
    env = {"PYTHONUNBUFFERED": "1"}
    if index is not None:
        env["JOB_COMPLETION_INDEX"] = str(index)
    env.update({e.name: e.value or "" for e in container.env})
    spec = container_process(
        container,
        name=f"Job {job.namespace}/{job.name} pod {pod} container {container.name}",
        env=env,
        log_path=log_path,
        namespace=job.namespace,
    )
    return dataclasses.replace(spec, placement=Placement(admission_key(job.namespace, pod)))


def admission_key(namespace: str, pod: str) -> tuple[str, str, str]:
    """What a pod is admitted to the backend under: its containers run together."""
    return (KIND, namespace, pod)


def log_key(pod: Pod, run: ContainerRun) -> str:
    """The name ``status.logPaths`` knows a container's log by."""
    return pod.name if run is pod.runs[0] else f"{pod.name}/{run.name}"


def next_pod(job: str, log_paths: dict[str, Any]) -> int:
    """The number of the next pod: one more than the highest in ``logPaths``."""
    highest = -1
    for key in log_paths:
        number = key.split("/", 1)[0].removeprefix(f"{job}-")
        if number.isdigit():
            highest = max(highest, int(number))
    return highest + 1


def over_backoff(job: BatchJob, run: JobRun) -> bool:
    """OnFailure: the restarts of the running pods reached ``backoffLimit`` (any, for 0)."""
    restarts = sum(p.restarts for p in run.active())
    return restarts > 0 if job.backoff_limit == 0 else restarts >= job.backoff_limit
