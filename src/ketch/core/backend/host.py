"""The bookkeeping of a machine's resources that a compute backend keeps for the
processes it starts: the admission ledger, the TCP ports handed out, the GPUs.

- :class:`Ledger`: a gang (a job's replicas, a batch Job's pod) starts only when
  all of it fits in what is left of the machine's CPUs and memory at once;
  otherwise it waits, first come first served, so work queues instead of
  oversubscribing the machine.
- :class:`ReservedPorts`: the ports handed out, each also held across processes by
  a lock on a file in the temp folder, so that two servers on one machine never
  hand out the same (preferred) port before either process has bound it.
- :func:`host_gpus`: how many NVIDIA GPUs the machine has.

One backend holds one of each (see :class:`~ketch.core.backend.spec.Backend`'s
``admit``, ``reserve_port`` and ``gpus``), shared by every controller it is given
to; a backend that runs elsewhere (a cluster) keeps its own books.
"""

from __future__ import annotations

import fcntl
import os
import re
import socket
import tempfile
import threading
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from pathlib import Path

#: where every process the local backend starts is reached from the others
LOCAL_HOST = "127.0.0.1"
#: the variable that tells a process the address of the node it runs on, which its
#: servers listen on (unset: :data:`LOCAL_HOST`)
NODE_HOST_ENV = "KETCH_NODE_HOST"
#: the variable that names the node a process runs on, as its pod's ``spec.nodeName``
#: does (a Ray node ID); unset on one machine
NODE_NAME_ENV = "KETCH_NODE_NAME"

_DEVICE = re.compile(r"nvidia\d+")


#: how a gang's members are placed on a backend with several nodes
STRATEGIES = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")


@dataclass(frozen=True)
class Request:
    """CPU cores, memory bytes and GPUs asked of the machine.

    A gang's request (:meth:`gang`) also lists its ``members``: what each of its
    processes asks, in order (a :class:`~ketch.core.backend.spec.Placement` names
    one by its position), and the ``strategy`` a backend with several nodes places
    them with: ``PACK`` (as few nodes as it can), ``SPREAD`` (as many), or their
    ``STRICT_`` forms. A member's ``node`` names the node it must run on (a pod's
    ``spec.nodeName``: the Ray node ID on a Ray cluster). The machine's ledger looks
    at the totals only.
    """

    cpu: float = 0.0
    memory: float = 0.0
    gpu: float = 0.0
    members: tuple[Request, ...] = ()
    strategy: str = "PACK"
    node: str | None = None

    def __add__(self, other: Request) -> Request:
        return Request(self.cpu + other.cpu, self.memory + other.memory, self.gpu + other.gpu)

    @classmethod
    def gang(
        cls, members: Iterable[Request], strategy: str = "PACK", total: Request | None = None
    ) -> Request:
        """The request of a gang of ``members`` placed with ``strategy``; its totals
        are theirs, or ``total``'s (what must fit for the gang to start)."""
        listed = tuple(Request(m.cpu, m.memory, m.gpu, node=m.node) for m in members)
        if strategy not in STRATEGIES:
            raise ValueError(f"placement strategy {strategy!r}: use one of {', '.join(STRATEGIES)}")
        if total is None:
            total = Request()
            for member in listed:
                total = total + member
        return cls(total.cpu, total.memory, total.gpu, listed, strategy)

    def bundles(self) -> tuple[Request, ...]:
        """What each process asks: the members, or the whole request as one."""
        return self.members or (Request(self.cpu, self.memory, self.gpu, node=self.node),)

    def describe(self) -> str:
        text = f"cpu={self.cpu:g}, memory={self.memory / 2**20:.0f}Mi"
        return f"{text}, nvidia.com/gpu={self.gpu:g}" if self.gpu else text


def machine_capacity() -> Request:
    """The CPUs this process may run on and the machine's physical memory."""
    cpus = float(
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    )
    try:
        memory = float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        memory = float(2**40)
    return Request(cpus, memory)


class Ledger:
    """The machine's ledger: what is admitted (by key) and its request, and the
    waiting line."""

    def __init__(self, capacity: Request | None = None) -> None:
        self.capacity = capacity or machine_capacity()
        self._lock = threading.Lock()
        self._admitted: dict[Hashable, Request] = {}
        self._waiting: list[Hashable] = []

    def admitted(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._admitted

    def try_admit(self, key: Hashable, request: Request) -> tuple[bool, str]:
        """Admit ``key`` if it fits and nothing before it is waiting; else queue it.

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

    def release(self, key: Hashable) -> None:
        """Give back what ``key`` was admitted with, and take it out of the line."""
        with self._lock:
            self._admitted.pop(key, None)
            if key in self._waiting:
                self._waiting.remove(key)


class ReservedPorts:
    """The TCP ports handed out on this machine, each held by a file lock too."""

    def __init__(self, folder: Path | None = None) -> None:
        self._lock = threading.Lock()
        self._locks: dict[int, int] = {}  # port -> the file descriptor holding its lock
        self._folder = folder or Path(tempfile.gettempdir()) / "ketch-ports"

    def __contains__(self, port: object) -> bool:
        with self._lock:
            return port in self._locks

    def claim(self, port: int) -> bool:
        """Reserve ``port`` unless this or another server holds it."""
        with self._lock:
            if port in self._locks:
                return False
            self._folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(self._folder / f"{port}.lock", os.O_CREAT | os.O_RDWR, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                return False
            self._locks[port] = fd
            return True

    def reserve(self, preferred: int = 0) -> int:
        """``preferred`` when it is free and not reserved, else a free port; reserved."""
        if preferred and preferred not in self and _bindable(preferred) and self.claim(preferred):
            return preferred
        for _ in range(64):
            with socket.socket() as sock:
                sock.bind((LOCAL_HOST, 0))
                port = int(sock.getsockname()[1])
            if self.claim(port):
                return port
        raise RuntimeError(f"no free TCP port found on {LOCAL_HOST}")

    def release(self, ports: Iterable[int]) -> None:
        """Hand ``ports`` back (closing a lock file releases its lock)."""
        with self._lock:
            for port in ports:
                fd = self._locks.pop(port, None)
                if fd is not None:
                    os.close(fd)


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((LOCAL_HOST, port))
        except OSError:
            return False
        return True


def host_gpus() -> int:
    """How many NVIDIA GPUs this machine has (its driver's device list)."""
    driver = Path("/proc/driver/nvidia/gpus")
    try:
        found = sum(1 for _ in driver.iterdir())
    except OSError:
        found = 0
    if found:
        return found
    try:
        return sum(1 for p in Path("/dev").iterdir() if _DEVICE.fullmatch(p.name))
    except OSError:
        return 0
