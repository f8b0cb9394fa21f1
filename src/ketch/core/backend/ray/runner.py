"""The process runner: a threaded Ray actor, pinned to one node, that owns the OS
processes the Ray backend starts there.

Each process leads its own session and process group and is started from one
long-lived thread (its parent-death signal follows the forking thread), so it dies
with the runner; an orphan guard kills what is left of its group if the runner's
process dies some other way. Its stdout and stderr are read from pipes and queued
as events with the exit code, which the backend pulls (:meth:`ProcessRunner.pull`,
a long poll that acknowledges what it got) and writes to Ketch's log files on the
control plane, so a process's output outlives its node.

This module is imported by the runner's worker process on every node: it needs
only the standard library and Ketch's process helpers, never Ray.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ketch.core.backend.handles import signal_group
from ketch.core.backend.host import ReservedPorts
from ketch.core.backend.local import child_setup
from ketch.core.backend.supervisor import OrphanGuard, Supervisor

#: variables a Ray worker's environment has that the processes it starts must not
#: inherit (a spec's own ``env`` may still set them)
RAY_WORKER_VARS = frozenset({"PYTHONBREAKPOINT", "SPT_NOENV", "OMP_NUM_THREADS"})
_READ = 65536
_DRAIN_WAIT = 5.0  # seconds to wait for output still in a pipe once the group is killed
_KILL_WAIT = 30.0

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


@dataclass
class _Process:
    proc: subprocess.Popen[bytes]
    readers: list[threading.Thread]
    done: threading.Event = field(default_factory=threading.Event)


class ProcessRunner:
    """Starts, watches and stops processes on the node it was placed on.

    Its methods are called concurrently (the actor is threaded): ``start`` and
    ``cancel`` by the backend's callers, ``pull`` by the backend's pump.
    """

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._events: list[Event] = []
        self._seq = 0
        self._processes: dict[str, _Process] = {}
        self._supervisor = Supervisor("ketch-ray-runner")
        self._guard = OrphanGuard()
        self._ports = ReservedPorts()
        self._closed = False

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
        """Start ``launch``; ``{"pid": ...}``, or ``{"error": ..., "kind": ...}`` saying
        why it could not start (``kind``: ``not-found``, ``permission``, ``cwd``, ``os``)."""
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
        self._guard.add(proc.pid)
        readers = [self._reader(launch.task, "out", proc.stdout)]
        if not launch.merged:
            readers.append(self._reader(launch.task, "err", proc.stderr))
        process = _Process(proc, readers)
        with self._lock:
            self._processes[launch.task] = process
        threading.Thread(
            target=self._wait, args=(launch.task, process), name="ketch-ray-wait", daemon=True
        ).start()
        return {"pid": proc.pid}

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
        code = process.proc.wait()
        signal_group(process.proc.pid, signal.SIGKILL)  # what is left of its group
        process.done.set()
        self._guard.remove(process.proc.pid)
        for reader in process.readers:  # its last output comes before its exit
            reader.join(_DRAIN_WAIT)
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
            signal_group(process.proc.pid, sig)

    def cancel(self, task: str, grace: float = 5.0) -> None:
        """SIGTERM the group of ``task``; SIGKILL it if its leader is still there after
        ``grace`` seconds. Returns once the leader has exited."""
        with self._lock:
            process = self._processes.get(task)
        if process is None or process.done.is_set():
            return
        signal_group(process.proc.pid, signal.SIGTERM)
        if not process.done.wait(max(grace, 0.0)):
            signal_group(process.proc.pid, signal.SIGKILL)
            process.done.wait(_KILL_WAIT)

    def running(self) -> int:
        with self._lock:
            return len(self._processes)

    def shutdown(self, grace: float = 5.0) -> None:
        """Cancel every process (SIGTERM, SIGKILL after ``grace``) and stop."""
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
        self._guard.close()
        self._supervisor.close()


def _ray_own(name: str) -> bool:
    """Whether ``name`` is a variable Ray set for its worker rather than the node's."""
    return name.startswith("RAY_") or name in RAY_WORKER_VARS


def _at_node_priority(setup: Callable[[], None] | None) -> Callable[[], None]:
    """``setup``, then the niceness of the node's raylet (the runner's parent) for the
    child: Ray starts its workers, this runner among them, at niceness 15
    (``RAY_worker_niceness``), and a workload's process should compete for the CPU as
    a pod's does, not give way to everything else on the node. Where the node does
    not allow raising a priority (no CAP_SYS_NICE), it keeps the runner's."""
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
