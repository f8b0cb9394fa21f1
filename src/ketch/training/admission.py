"""Gang admission: a job starts only when all its replicas fit on this machine at once.

Each replica asks for its container's ``resources.requests`` (or, without them,
its ``limits``) of CPU and memory. A job is admitted when the sum over its
replicas fits in what is left of the machine's CPUs and memory; otherwise it
waits, first come first served, so jobs queue instead of oversubscribing. With
``schedulingPolicy.minAvailable`` the gang is that many replicas (the rest
start with it; the request that must fit is the smallest ``minAvailable``
replicas').
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

from ketch.core.backend import parse_cpu, parse_memory
from ketch.training.spec import Job

Key = tuple[str, str, str]  # (kind, namespace, name)


@dataclass(frozen=True)
class Request:
    cpu: float = 0.0
    memory: float = 0.0

    def __add__(self, other: Request) -> Request:
        return Request(self.cpu + other.cpu, self.memory + other.memory)

    def describe(self) -> str:
        return f"cpu={self.cpu:g}, memory={self.memory / 2**20:.0f}Mi"


def machine_capacity() -> Request:
    cpus = float(
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    )
    try:
        memory = float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        memory = float(2**40)
    return Request(cpus, memory)


def replica_request(job: Job, rtype: str) -> Request:
    resources = job.container(rtype).resources
    cpu = resources.requests.get("cpu", resources.limits.get("cpu"))
    memory = resources.requests.get("memory", resources.limits.get("memory"))
    return Request(
        parse_cpu(cpu) if cpu is not None else 0.0,
        float(parse_memory(memory)) if memory is not None else 0.0,
    )


def job_request(job: Job) -> Request:
    """What must fit for ``job`` to start: every replica, or its ``minAvailable`` gang."""
    requests = [replica_request(job, rtype) for rtype, _i, _n in job.replica_names()]
    policy = job.run_policy.schedulingPolicy
    total = Request()
    if policy is not None and policy.minAvailable is not None:
        requests = sorted(requests, key=lambda r: (r.cpu, r.memory))[: policy.minAvailable]
    for request in requests:
        total = total + request
    return total


class Admission:
    """The machine's ledger: admitted jobs and their requests, and the waiting line."""

    def __init__(self, capacity: Request | None = None) -> None:
        self.capacity = capacity or machine_capacity()
        self._lock = threading.Lock()
        self._admitted: dict[Key, Request] = {}
        self._waiting: list[Key] = []

    def admitted(self, key: Key) -> bool:
        with self._lock:
            return key in self._admitted

    def try_admit(self, key: Key, request: Request) -> tuple[bool, str]:
        """Admit ``key`` if it fits and no job before it is waiting; else queue it.

        Returns ``(admitted, why not)``.
        """
        with self._lock:
            if key in self._admitted:
                return True, ""
            if request.cpu > self.capacity.cpu or request.memory > self.capacity.memory:
                return False, (
                    f"the job requests {request.describe()}, more than this machine has "
                    f"({self.capacity.describe()}); it cannot start here"
                )
            used = Request()
            for value in self._admitted.values():
                used = used + value
            fits = (
                used.cpu + request.cpu <= self.capacity.cpu + 1e-9
                and used.memory + request.memory <= self.capacity.memory
            )
            ahead = [k for k in self._waiting if k != key]
            position = self._waiting.index(key) if key in self._waiting else len(self._waiting)
            first_in_line = not ahead or position == 0
            if fits and first_in_line:
                self._admitted[key] = request
                if key in self._waiting:
                    self._waiting.remove(key)
                return True, ""
            if key not in self._waiting:
                self._waiting.append(key)
            return False, (
                f"waiting for resources: the job requests {request.describe()}; "
                f"{used.describe()} of {self.capacity.describe()} is taken by running jobs"
            )

    def release(self, key: Key) -> None:
        with self._lock:
            self._admitted.pop(key, None)
            if key in self._waiting:
                self._waiting.remove(key)
