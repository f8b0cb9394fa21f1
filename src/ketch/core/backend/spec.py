"""What the compute backend is asked to run: a ProcessSpec, and what it hands back."""

from __future__ import annotations

import abc
import enum
import os
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ketch.core.backend.host import LOCAL_HOST, Request


@dataclass(frozen=True)
class Resources:
    """Requests and limits as Kubernetes writes them (``"500m"``, ``"2"``, ``"1Gi"``).

    ``cpu_limit`` (cores) and ``memory_limit`` (bytes) are the parsed limits the
    local backend enforces where the OS allows (RLIMIT_AS for memory,
    RLIMIT_CPU is not used: a CPU *rate* limit cannot be enforced with rlimits,
    so the local backend records it and pins nothing).
    """

    cpu_request: str | None = None
    cpu_limit: str | None = None
    memory_request: str | None = None
    memory_limit: str | None = None
    accelerator_type: str | None = None
    accelerator_count: int = 0


@dataclass(frozen=True)
class PythonEntry:
    """An optional fast path: the process is ``<python> -m <module> <argv...>``.

    A backend may run it in a pre-warmed interpreter (a fork server) that has
    already imported ``preload``, instead of starting a new interpreter. The
    result must be the same as running ``ProcessSpec.command``.
    """

    module: str
    argv: list[str]
    python: str  # interpreter path; the fork server is per interpreter
    preload: tuple[str, ...] = ()
    # argv for one run of ``module`` inside a new warm interpreter, before it
    # forks any task: fills the lazy caches every task would otherwise fill
    # again (its output is discarded; a failure only costs the optimisation).
    warmup: tuple[str, ...] | None = None


PYRUN = "ketch.core.backend.pyrun"


def command_entry(command: list[str], python: str) -> PythonEntry | None:
    """A fork-server fast path for ``command`` when it runs ``python`` itself with
    ``-c CODE``, ``-m MODULE`` or a script (see :mod:`ketch.core.backend.pyrun`);
    ``None`` for anything else, which then starts as a new process."""
    from ketch.core.backend.pyrun import split

    if not command or command[0] != python or split(command[1:]) is None:
        return None
    # its package is preloaded, not the module itself (runpy warns when the module
    # it runs as __main__ was imported already)
    package = PYRUN.rsplit(".", 1)[0]
    return PythonEntry(module=PYRUN, argv=list(command[1:]), python=python, preload=(package,))


@dataclass(frozen=True)
class RunAs:
    """The OS identity a process runs as, instead of the server's own.

    The child leaves every supplementary group, then takes ``gid`` and ``uid`` (in
    that order, before it runs the task), with ``HOME`` set to ``home`` and a umask
    of ``0o077``: what it writes is its own alone.
    """

    uid: int
    gid: int
    user: str = ""
    home: Path | None = None

    def env(self) -> dict[str, str]:
        """What the process's environment says about who it is."""
        env = {"HOME": str(self.home)} if self.home is not None else {}
        if self.user:
            env.update(USER=self.user, LOGNAME=self.user)
        return env


@dataclass(frozen=True)
class Placement:
    """Where a process of an admitted gang runs: member ``member`` (its position in
    the :attr:`Request.members <ketch.core.backend.host.Request.members>` the gang was
    admitted with) of what :meth:`Backend.admit` took for ``group``.

    A backend that spreads work over several nodes starts the process on the node
    that member was given (a placement group's bundle on Ray); the local backend has
    one node and ignores it.
    """

    group: Hashable
    member: int = 0


@dataclass(frozen=True)
class ProcessSpec:
    """A process to run: command, environment, working directory, logs, limits.

    ``namespace``: the profile namespace the process works for. In multi-user mode
    the backend's :class:`Isolation` runs it as that namespace's OS user (it sets
    ``run_as``) and hands it its working and log folders and the folders in
    ``owned`` (what it writes besides those: its output artifacts).

    ``secret_env``: variables added to the environment after ``env`` that are never
    shown: not in a pod's manifest, not in a log (a workload's API token).

    ``placement``: the admitted gang member it runs as (see :class:`Placement`);
    ``None``: wherever the backend finds room (the node its ``ports`` were reserved
    on, when it has any).
    """

    name: str  # for logs and errors: "run 1a2b / task train"
    command: list[str]
    env: dict[str, str] = field(default_factory=dict)  # added to the parent's environment
    cwd: Path | None = None
    stdout_path: Path | None = None  # None: captured to a temp file the backend owns
    stderr_path: Path | None = None
    resources: Resources = field(default_factory=Resources)
    python: PythonEntry | None = None
    ports: tuple[int, ...] = ()
    namespace: str | None = None
    run_as: RunAs | None = None
    owned: tuple[Path, ...] = ()
    secret_env: dict[str, str] = field(default_factory=dict, repr=False)
    placement: Placement | None = None


class Isolation(Protocol):
    """How a backend keeps the processes of one namespace away from another's files
    (see :mod:`ketch.core.backend.hostusers`)."""

    def isolate(self, spec: ProcessSpec) -> ProcessSpec:
        """``spec`` as it must run: unchanged when isolation is off or the spec has
        no namespace, else with ``run_as`` set and its folders handed to that user.
        Raises :class:`~ketch.core.errors.BackendError` when it cannot be isolated."""


class ProcessState(enum.StrEnum):
    RUNNING = "RUNNING"
    EXITED = "EXITED"  # exit_code set (negative: killed by signal -N)
    FAILED_TO_START = "FAILED_TO_START"


class ProcessHandle(Protocol):
    """A running (or finished) process."""

    spec: ProcessSpec

    @property
    def pid(self) -> int | None: ...

    @property
    def stdout_path(self) -> Path:
        """Where stdout goes: ``spec.stdout_path``, or a file the backend owns."""

    @property
    def stderr_path(self) -> Path:
        """Where stderr goes: ``spec.stderr_path``, or a file the backend owns."""

    @property
    def host(self) -> str:
        """The address its ports are reached at from the control plane and the other
        processes: its node's."""

    @property
    def node(self) -> str | None:
        """The node it runs on, as the cluster names it (a pod's ``spec.nodeName``);
        ``None`` for this machine."""

    def poll(self) -> int | None:
        """The exit code if the process ended, else None. Negative: killed by that signal."""

    def wait(self, timeout: float | None = None) -> int | None:
        """Block until it ends (or timeout); return the exit code or None on timeout."""

    def cancel(self, grace: float = 5.0) -> None:
        """SIGTERM the whole process group, SIGKILL it after ``grace`` seconds."""

    def add_exit_callback(self, callback: Callable[[ProcessHandle], None]) -> None:
        """Call ``callback(handle)`` once when the process ends (now, if it has).
        Only on backends whose :attr:`Abilities.exit_callbacks` is set; callers of
        other backends poll."""


@dataclass(frozen=True)
class Abilities:
    """What a backend can do beyond starting processes, declared rather than probed.

    - ``exit_callbacks``: handles call back when their process ends
      (:meth:`ProcessHandle.add_exit_callback`), so controllers need not poll.
    - ``prewarm``: :meth:`Backend.prewarm` starts warm interpreters ahead of the
      Python tasks that will use them.
    """

    exit_callbacks: bool = False
    prewarm: bool = False


class Backend(abc.ABC):
    """Starts ProcessSpecs. The only code in Ketch that starts processes.

    Injected: the composition root (:mod:`ketch.capabilities`) picks one and hands
    it to every controller and service.

    It also keeps the books of the machine it runs processes on (see
    :mod:`ketch.core.backend.host`): which work is admitted to its CPUs and
    memory, the TCP ports handed out, the GPUs there are. Every controller given
    the backend shares them; nothing of it is global.
    """

    #: what this backend can do beyond :meth:`start`
    abilities: Abilities = Abilities()
    #: set by the composition root in multi-user mode: every spec with a namespace
    #: is passed through it before it starts
    isolation: Isolation | None = None

    @abc.abstractmethod
    def start(self, spec: ProcessSpec) -> ProcessHandle:
        """Start ``spec``; its handle once the process runs."""

    @abc.abstractmethod
    def shutdown(self, grace: float = 5.0) -> None:
        """Cancel everything still running and release warm interpreters."""

    # -- the machine's resources ---------------------------------------------------

    @abc.abstractmethod
    def admit(self, key: Hashable, request: Request) -> tuple[bool, str]:
        """Take ``request`` of the machine for ``key`` (a gang: all of it at once)
        when it fits and nothing admitted before it is waiting; else put ``key`` in
        the waiting line. ``(admitted, why not)``; admitting ``key`` again is a no-op."""

    @abc.abstractmethod
    def release(self, key: Hashable) -> None:
        """Give back what :meth:`admit` took for ``key``, and take it out of the line."""

    @abc.abstractmethod
    def reserve_port(self, preferred: int = 0, placement: Placement | None = None) -> int:
        """A TCP port for a process to listen on: ``preferred`` when it is free, else
        any free one; no other caller gets it until :meth:`release_ports`.

        The port is free on the node the process will run on: the node of
        ``placement`` (an admitted gang's member), else a node the backend picks, where
        a spec listing the port among its ``ports`` then starts."""

    def host_of(self, placement: Placement | None = None) -> str:
        """Where a process of ``placement`` (an admitted gang's member) will be reached
        (its node's address): what one replica tells another (``MASTER_ADDR``). This
        machine's loopback address unless a backend spreads work over nodes."""
        return LOCAL_HOST

    def remote_shell(self, placement: Placement | None) -> list[str] | None:
        """A command that runs a shell command on ``placement``'s node from any process
        this backend starts: ``[*prefix, SETUP, COMMAND]`` sources the file ``SETUP``
        there, then runs ``/bin/sh -c COMMAND`` (an MPI launcher's remote shell).
        ``None`` when every process runs on this machine (run it here)."""
        return None

    def unreachable(self, path: Path) -> str | None:
        """Why some of the processes this backend starts could not read or write
        ``path`` (a folder of the control plane's filesystem); ``None`` when every
        one can. One machine reaches its own paths."""
        return None

    @abc.abstractmethod
    def release_ports(self, ports: Iterable[int]) -> None:
        """Hand back ports :meth:`reserve_port` gave (others are ignored)."""

    def cpus(self) -> int:
        """How many CPUs the processes this backend starts have in all: how many tasks a
        pipeline runs at once unless told otherwise. This machine's, by default."""
        return os.cpu_count() or 1

    @abc.abstractmethod
    def gpus(self) -> int:
        """How many NVIDIA GPUs the processes this backend starts can use."""

    def prewarm(
        self,
        python: str,
        preload: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        warmup: tuple[str, list[str]] | None = None,
    ) -> Future[bool]:
        """Get an interpreter ready for Python tasks (``python`` with ``preload``
        imported) in the background; resolves to whether it is ready. Backends
        without :attr:`Abilities.prewarm` resolve to ``False`` at once."""
        done: Future[bool] = Future()
        done.set_result(False)
        return done
