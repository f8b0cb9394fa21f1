"""The process runner: a threaded Ray actor, pinned to one node, that owns the OS
processes the Ray backend starts there.

Each process leads its own session and process group and is started from one
long-lived thread (its parent-death signal follows the forking thread), so it dies
with the runner; an orphan guard kills what is left of its group if the runner's
process dies some other way. Its stdout and stderr are read from pipes and queued
as events with the exit code, which the backend pulls (:meth:`ProcessRunner.pull`,
a long poll that acknowledges what it got) and writes to Ketch's log files on the
control plane, so a process's output outlives its node.

A process that comes with a :class:`~ketch.core.backend.spec.PythonEntry` is forked
from a warm interpreter of the node (the local backend's fork server, see
``forkserver.py``), as the local backend does: one per interpreter, preload list and
start-up environment, started by the first process that asks for it and kept for
the runner's life. Such a process is the same as a new one: its own session and
group, its environment, working folder, identity and memory limit, its output on
pipes (named ones: the fork server opens its child's logs by path), its exit code.
Where no warm interpreter can be had (it does not start, it is still starting, the
process must change identity and the runner cannot), the process starts new.

GPUs: a runner knows how many its node declares to Ray and hands them out to the
processes that ask for some (``CUDA_VISIBLE_DEVICES`` and
``NVIDIA_VISIBLE_DEVICES`` list theirs), each held until its process ends, by a lock
file per device that every runner on the node shares; a process that asks for none
sees none (``CUDA_VISIBLE_DEVICES`` is empty unless its own environment sets it).

This module is imported by the runner's worker process on every node: it needs
only the standard library and Ketch's process helpers, never Ray.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import subprocess
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ketch.core.backend import cgroups
from ketch.core.backend.forkclient import ForkServerClient, ForkServerUnavailable
from ketch.core.backend.handles import ForkedHandle, signal_group
from ketch.core.backend.host import ReservedPorts
from ketch.core.backend.local import ServerKey, child_setup, startup_signature
from ketch.core.backend.logfiles import LogFiles
from ketch.core.backend.spec import ProcessSpec, PythonEntry, RunAs
from ketch.core.backend.supervisor import OrphanGuard, Supervisor
from ketch.core.backend.warm import WarmInterpreters

log = logging.getLogger("ketch.core.backend.ray")

#: variables a Ray worker's environment has that the processes it starts must not
#: inherit (a spec's own ``env`` may still set them)
RAY_WORKER_VARS = frozenset({"PYTHONBREAKPOINT", "SPT_NOENV", "OMP_NUM_THREADS"})
#: the variables that tell a process which GPUs it may use
CUDA_DEVICES = "CUDA_VISIBLE_DEVICES"
NVIDIA_DEVICES = "NVIDIA_VISIBLE_DEVICES"
_READ = 65536
_DRAIN_WAIT = 5.0  # seconds to wait for output still in a pipe once the group is killed
_KILL_WAIT = 30.0
#: seconds a start waits for a warm interpreter that is still starting before it
#: starts its process new (the backend waits 60 s for a start)
_READY_WAIT = 20.0

#: what :meth:`ProcessRunner.pull` hands back: ``(seq, task, kind, data)``, ``kind``
#: ``"out"``/``"err"`` (``data``: bytes of output) or ``"exit"`` (``data``: the code)
Event = tuple[int, str, str, Any]


@dataclass(frozen=True)
class Launch:
    """What the runner starts: the backend's :class:`ProcessSpec` as it runs on a node."""

    task: str
    command: list[str]
    env: dict[str, str] = field(repr=False)  # added to the node's environment
    cwd: str | None
    merged: bool  # stderr goes where stdout goes (one log)
    rlimit_as: int | None = None
    run_as: tuple[int, int] | None = None  # (uid, gid)
    #: the same process as ``python -m module argv``: forked from a warm interpreter
    python: PythonEntry | None = None
    gpus: int = 0  # how many of the node's GPUs it gets
    cpu_limit: float | None = None  # cores: a CPU rate limit, where the node's cgroups allow


@dataclass
class _Process:
    pid: int
    wait: Callable[[], int]  # blocks until the leader exits; its code
    readers: list[threading.Thread]
    done: threading.Event = field(default_factory=threading.Event)
    gpus: list[int] = field(default_factory=list)  # positions in the node's devices
    keep_open: list[int] = field(default_factory=list)  # named pipes' write ends held
    fifos: list[str] = field(default_factory=list)
    release_cpu: Callable[[], None] | None = None  # its CPU group's removal


class ProcessRunner:
    """Starts, watches and stops processes on the node it was placed on.

    Its methods are called concurrently (the actor is threaded): ``start`` and
    ``cancel`` by the backend's callers, ``pull`` by the backend's pump.

    ``node_id`` and ``gpus``: the node's Ray ID and how many GPUs it declares;
    ``max_warm_interpreters``: how many warm interpreters it keeps (``0``: none;
    every process starts new).
    """

    def __init__(self, node_id: str = "", gpus: int = 0, max_warm_interpreters: int = 4) -> None:
        self._lock = threading.Condition()
        self._events: list[Event] = []
        self._seq = 0
        self._processes: dict[str, _Process] = {}
        self._supervisor = Supervisor("ketch-ray-runner")
        self._guard = OrphanGuard()
        self._ports = ReservedPorts()
        self._closed = False
        self._devices = node_devices(gpus, os.environ.get(CUDA_DEVICES))
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", node_id) or "node"
        self._gpus = ReservedPorts(Path(tempfile.gettempdir()) / "ketch-gpus" / safe)
        self._files = LogFiles("ketch-ray-runner-")  # named pipes, warm interpreters' logs
        self._max_warm = max_warm_interpreters
        self._warm = WarmInterpreters(max_warm_interpreters)
        # what is started from the supervisor thread (warm interpreters, and what
        # they fork) runs at the node's priority, as new processes do
        self._supervisor.call(_at_node_priority(None))

    # -- where it runs -------------------------------------------------------------

    def where(self) -> tuple[str, int]:
        """The runner's process id and the node's host name (a ready check too)."""
        return os.uname().nodename, os.getpid()

    def reserve_port(self, preferred: int = 0) -> int:
        """A port free on this node, held until :meth:`release_ports`."""
        return self._ports.reserve(preferred)

    def release_ports(self, ports: Sequence[int]) -> None:
        self._ports.release(ports)

    # -- processes -------------------------------------------------------------------

    def start(self, launch: Launch) -> dict[str, Any]:
        """Start ``launch``; ``{"pid": ..., "forked": ..., "note": ...}`` (``forked``:
        from a warm interpreter; ``note``: why one could not be had, said once), or
        ``{"error": ..., "kind": ...}`` saying why it could not start (``kind``:
        ``not-found``, ``permission``, ``cwd``, ``gpu``, ``os``)."""
        if self._closed:
            return {"error": "the runner is shutting down", "kind": "os"}
        cwd = launch.cwd
        if cwd is not None and not os.path.isdir(cwd):
            return {
                "error": f"working directory {cwd} does not exist on this node "
                "or is not a directory",
                "kind": "cwd",
            }
        env = {k: v for k, v in os.environ.items() if not _ray_own(k)}
        env.update(launch.env)
        gpus = self._claim_gpus(launch.gpus)
        if isinstance(gpus, str):
            return {"error": gpus, "kind": "gpu"}
        if gpus:
            devices = ",".join(self._devices[i] for i in gpus)
            env[CUDA_DEVICES] = env[NVIDIA_DEVICES] = devices
        elif CUDA_DEVICES not in launch.env:
            env[CUDA_DEVICES] = ""
        try:
            note: str | None = None
            if launch.python is not None and self._max_warm > 0 and _can_become(launch.run_as):
                process, note = self._fork(launch, launch.python, env, cwd)
                if process is not None:
                    return self._started(launch, process, gpus, forked=True, note=note)
            started = self._spawn(launch, env, cwd)
            if isinstance(started, dict):
                self._gpus.release(gpus)
                return started
            return self._started(launch, started, gpus, forked=False, note=note)
        except BaseException:
            self._gpus.release(gpus)
            raise

    def _started(
        self,
        launch: Launch,
        process: _Process,
        gpus: list[int],
        *,
        forked: bool,
        note: str | None,
    ) -> dict[str, Any]:
        task = launch.task
        process.gpus = gpus
        if launch.cpu_limit:
            process.release_cpu = cgroups.limit_cpu(process.pid, launch.cpu_limit)
        self._guard.add(process.pid)
        with self._lock:
            self._processes[task] = process
        threading.Thread(
            target=self._wait, args=(task, process), name="ketch-ray-wait", daemon=True
        ).start()
        return {
            "pid": process.pid,
            "forked": forked,
            "note": note,
            "cpu_enforced": process.release_cpu is not None,
        }

    def _spawn(
        self, launch: Launch, env: dict[str, str], cwd: str | None
    ) -> _Process | dict[str, Any]:
        """``launch`` started as a new process; a start error's answer if it cannot be."""
        identity: dict[str, Any] = {}
        if launch.run_as is not None:
            uid, gid = launch.run_as
            identity = {"user": uid, "group": gid, "extra_groups": [], "umask": 0o077}
        preexec = _at_node_priority(child_setup(os.getpid(), launch.rlimit_as))

        def spawn() -> subprocess.Popen[bytes]:
            return subprocess.Popen(
                launch.command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT if launch.merged else subprocess.PIPE,
                env=env,
                cwd=cwd,
                start_new_session=True,
                close_fds=True,
                preexec_fn=preexec,
                **identity,
            )

        try:
            proc = self._supervisor.call(spawn)
        except FileNotFoundError:
            return {"error": f"executable {launch.command[0]!r} not found", "kind": "not-found"}
        except PermissionError as exc:
            return {"error": f"permission denied: {exc.strerror or exc}", "kind": "permission"}
        except (OSError, subprocess.SubprocessError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            return {"error": reason, "kind": "os"}
        readers = [self._reader(launch.task, "out", proc.stdout)]
        if not launch.merged:
            readers.append(self._reader(launch.task, "err", proc.stderr))
        return _Process(proc.pid, proc.wait, readers)

    def _fork(
        self, launch: Launch, entry: PythonEntry, env: dict[str, str], cwd: str | None
    ) -> tuple[_Process | None, str | None]:
        """``launch`` forked from the warm interpreter of ``entry`` (started if need be);
        ``None`` when none can take it, and why."""
        warmup = (entry.module, list(entry.warmup)) if entry.warmup is not None else None
        client, note = self._server(entry.python, tuple(entry.preload), warmup, env)
        if client is None:
            return None, note
        # the fork server opens its child's logs by path: named pipes here, read as
        # a new process's pipes are; this runner holds a write end of each until the
        # process ends, so that a read sees the end of the output only then
        stem = self._files.folder() / self._files.numbered(launch.task)
        streams = ["out"] if launch.merged else ["out", "err"]
        fifos = [f"{stem}.{kind}" for kind in streams]
        opened: list[int] = []
        try:
            for path in fifos:
                os.mkfifo(path, 0o600)
                read = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
                opened.append(read)
                opened.append(os.open(path, os.O_WRONLY | os.O_CLOEXEC))
                os.set_blocking(read, True)
        except OSError as exc:
            _close(opened)
            _unlink(fifos)
            return None, f"cannot make the pipes of a forked process: {exc}"
        reads, keep = opened[0::2], opened[1::2]
        handle = ForkedHandle(
            ProcessSpec(launch.task, launch.command), Path(fifos[0]), Path(fifos[-1])
        )
        try:
            client.fork(
                handle,
                module=entry.module,
                argv=entry.argv,
                env=env,
                cwd=cwd or os.getcwd(),
                stdout=fifos[0],
                stderr=fifos[-1],
                rlimit_as=launch.rlimit_as,
                run_as=RunAs(*launch.run_as) if launch.run_as is not None else None,
            )
        except ForkServerUnavailable as exc:
            _close(opened)
            _unlink(fifos)
            return None, f"the warm interpreter {entry.python} could not fork it: {exc}"
        pid = handle.pid
        assert pid is not None  # set when the server said it started

        def wait() -> int:
            code = handle.wait()
            return code if code is not None else -signal.SIGKILL

        readers = [
            self._reader(launch.task, kind, os.fdopen(fd, "rb", buffering=0))
            for kind, fd in zip(streams, reads, strict=True)
        ]
        return _Process(pid, wait, readers, keep_open=keep, fifos=fifos), None

    def _reader(self, task: str, kind: str, pipe: Any) -> threading.Thread:
        fd = pipe.fileno()

        def read() -> None:
            try:
                while chunk := os.read(fd, _READ):
                    self._emit(task, kind, chunk)
            except OSError:
                pass
            finally:
                pipe.close()

        thread = threading.Thread(target=read, name="ketch-ray-read", daemon=True)
        thread.start()
        return thread

    def _wait(self, task: str, process: _Process) -> None:
        code = process.wait()
        signal_group(process.pid, signal.SIGKILL)  # what is left of its group
        process.done.set()
        self._guard.remove(process.pid)
        self._gpus.release(process.gpus)
        if process.release_cpu is not None:
            process.release_cpu()
        _close(process.keep_open)  # its output ends once its group's writers are gone
        for reader in process.readers:  # its last output comes before its exit
            reader.join(_DRAIN_WAIT)
        _unlink(process.fifos)
        with self._lock:
            self._processes.pop(task, None)
        self._emit(task, "exit", code)

    def _emit(self, task: str, kind: str, data: Any) -> None:
        with self._lock:
            self._seq += 1
            self._events.append((self._seq, task, kind, data))
            self._lock.notify_all()

    def pull(self, ack: int, timeout: float = 1.0) -> tuple[int, list[Event]]:
        """The events after ``ack`` (those up to it are dropped: the caller has them),
        waiting up to ``timeout`` seconds for one; and the last event's number."""
        with self._lock:
            self._events = [e for e in self._events if e[0] > ack]
            if not self._events and not self._closed:
                self._lock.wait(timeout)
            return self._seq, list(self._events)

    def signal(self, task: str, sig: int) -> None:
        """Send ``sig`` to the process group of ``task`` (nothing once it ended)."""
        with self._lock:
            process = self._processes.get(task)
        if process is not None and not process.done.is_set():
            signal_group(process.pid, sig)

    def cancel(self, task: str, grace: float = 5.0) -> None:
        """SIGTERM the group of ``task``; SIGKILL it if its leader is still there after
        ``grace`` seconds. Returns once the leader has exited."""
        with self._lock:
            process = self._processes.get(task)
        if process is None or process.done.is_set():
            return
        signal_group(process.pid, signal.SIGTERM)
        if not process.done.wait(max(grace, 0.0)):
            signal_group(process.pid, signal.SIGKILL)
            process.done.wait(_KILL_WAIT)

    def running(self) -> int:
        with self._lock:
            return len(self._processes)

    def shutdown(self, grace: float = 5.0) -> None:
        """Cancel every process (SIGTERM, SIGKILL after ``grace``), stop the warm
        interpreters, and stop."""
        with self._lock:
            tasks = list(self._processes)
        threads = [
            threading.Thread(target=self.cancel, args=(task, grace), daemon=True) for task in tasks
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(grace + _KILL_WAIT)
        with self._lock:
            self._closed = True
            self._lock.notify_all()
        self._warm.close()
        self._guard.close()
        self._supervisor.close()
        self._files.remove()

    # -- warm interpreters -----------------------------------------------------------

    def prewarm(
        self,
        python: str,
        preload: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        warmup: tuple[str, list[str]] | None = None,
        timeout: float = 120.0,
    ) -> bool:
        """Start the warm interpreter of ``python`` with ``preload`` (for processes
        whose environment adds ``env`` to the node's); whether it is ready within
        ``timeout`` seconds."""
        if self._max_warm == 0:
            return False
        full = {k: v for k, v in os.environ.items() if not _ray_own(k)}
        full.update(env or {})
        client, _ = self._server(python, tuple(preload), warmup, full, timeout)
        return client is not None

    def _server(
        self,
        python: str,
        preload: tuple[str, ...],
        warmup: tuple[str, list[str]] | None,
        env: Mapping[str, str],
        wait: float = _READY_WAIT,
    ) -> tuple[ForkServerClient | None, str | None]:
        """The ready warm interpreter of ``python`` with ``preload`` for a process
        with ``env``, started if there is none; ``None`` when it cannot be had now,
        and why (once, when it cannot be had at all)."""
        key: ServerKey = (python, preload, startup_signature(env))
        if self._closed:
            return None, None

        def make() -> ForkServerClient:
            # the node's environment and the start-up settings the key names: what
            # the processes add (their secrets too) is theirs alone
            server_env = {k: v for k, v in os.environ.items() if not _ray_own(k)}
            server_env.update(dict(key[2]))
            server_env[CUDA_DEVICES] = ""  # the interpreter itself uses no GPU
            return ForkServerClient(
                python,
                preload,
                server_env,
                self._files.folder() / f"{self._files.numbered('forkserver')}.log",
                self._supervisor,
                warmup=warmup,
            )

        client, why = self._warm.take(key, make)
        if client is None:
            return None, (f"the warm interpreter {python} {list(preload)} {why}" if why else None)
        if client.wait_ready(wait):
            return client, None
        if not client.dead:
            return None, None  # still starting: this process starts new
        self._warm.failed(key, client)
        return None, (
            f"cannot start a warm interpreter {python} (preload {list(preload)}) on "
            f"this node: {client.error}; its Python processes start as new ones"
        )

    # -- GPUs ---------------------------------------------------------------------------

    def _claim_gpus(self, count: int) -> list[int] | str:
        """Positions of ``count`` of the node's devices free for a process, now held;
        or why there are not as many."""
        if count <= 0:
            return []
        held: list[int] = []
        for index in range(len(self._devices)):
            if len(held) == count:
                break
            if self._gpus.claim(index):
                held.append(index)
        if len(held) == count:
            return held
        self._gpus.release(held)
        total = len(self._devices)
        if total == 0:
            return f"it asks for {count} GPU(s) (nvidia.com/gpu) and the node has none"
        return (
            f"it asks for {count} GPU(s) (nvidia.com/gpu) and {len(held)} of the node's "
            f"{total} are free"
        )


def node_devices(count: int, visible: str | None) -> list[str]:
    """The IDs of a node's ``count`` GPUs: the first of those its environment lists
    (``visible``: ``CUDA_VISIBLE_DEVICES`` as Ray's node was started with), else
    ``0`` to ``count - 1``."""
    listed = [part.strip() for part in (visible or "").split(",") if part.strip()]
    if count > 0 and len(listed) >= count:
        return listed[:count]
    return [str(index) for index in range(max(count, 0))]


def _can_become(run_as: tuple[int, int] | None) -> bool:
    """Whether a forked child can take the identity ``run_as`` (it leaves its groups,
    which only root may)."""
    return run_as is None or os.geteuid() == 0


def _close(fds: Sequence[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def _unlink(paths: Sequence[str]) -> None:
    for path in paths:
        with contextlib.suppress(OSError):
            os.unlink(path)


def _ray_own(name: str) -> bool:
    """Whether ``name`` is a variable Ray set for its worker rather than the node's."""
    return name.startswith("RAY_") or name in RAY_WORKER_VARS


def _at_node_priority(setup: Callable[[], None] | None) -> Callable[[], None]:
    """``setup``, then the niceness of the node's raylet (the runner's parent) for the
    child: Ray starts its workers, this runner among them, at niceness 15
    (``RAY_worker_niceness``), and a workload's process should compete for the CPU as
    a pod's does, not give way to everything else on the node. Where the node does
    not allow raising a priority (no CAP_SYS_NICE), it keeps the runner's. (Run in
    a thread of the runner, it sets that thread's: Linux keeps one per thread.)"""
    try:
        target: int | None = os.getpriority(os.PRIO_PROCESS, os.getppid())
    except OSError:
        target = None

    def run() -> None:
        if setup is not None:
            setup()
        if target is not None and target < os.getpriority(os.PRIO_PROCESS, 0):
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, 0, target)

    return run
