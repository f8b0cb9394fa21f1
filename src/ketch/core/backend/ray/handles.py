"""Handles of the processes the Ray backend started, and the pump that feeds them.

One pump thread on the control plane keeps one long poll open to every process
runner (:meth:`ProcessRunner.pull`); what comes back is written to the processes'
log files here (appended, stdout and stderr to the same file when the spec says
so, as the local backend's processes write them) and ends their handles with their
exit codes. A runner that dies (its node was lost) ends every process it owned
with SIGKILL's code, and says so in their logs.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ketch.core.backend.ray.placement import NodeInfo
from ketch.core.backend.spec import ProcessSpec, ProcessState

log = logging.getLogger("ketch.core.backend.ray")

_PULL = 1.0  # seconds a runner holds a pull open when it has nothing to say
_CANCEL_MARGIN = 30.0  # seconds, past the grace, to wait for a cancelled group


@dataclass(eq=False)
class Runner:
    """A process runner actor on one node, as the pump and the backend see it."""

    actor: Any  # ray.actor.ActorHandle of ProcessRunner
    node: NodeInfo
    ack: int = 0
    pending: Any = None  # the pull in flight (an ObjectRef)
    tasks: set[str] = field(default_factory=set)
    lost: bool = False


class RayHandle:
    """A process started on a Ray node (see :class:`~ketch.core.backend.spec.ProcessHandle`)."""

    def __init__(
        self, spec: ProcessSpec, stdout: Path, stderr: Path, runner: Runner, task: str
    ) -> None:
        self.spec = spec
        self._stdout_path = stdout
        self._stderr_path = stderr
        self.runner = runner
        self.task = task
        self._pid: int | None = None
        self._code: int | None = None
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._on_exit: list[Callable[[RayHandle], None]] = []
        self.cancelled = False
        #: forked from its node's warm interpreter (else started as a new process)
        self.forked = False
        self.cpu_enforced = False  # True when a control group on its node applies its CPU limit
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
        self._out = os.open(stdout, flags, 0o644)
        self._err = self._out if stderr == stdout else os.open(stderr, flags, 0o644)

    def __repr__(self) -> str:
        state = "running" if self._code is None else f"exit {self._code}"
        return (
            f"<RayHandle {self.spec.name!r} node={self.runner.node.node_id[:12]} "
            f"pid={self._pid} {state}>"
        )

    @property
    def merged(self) -> bool:
        return self._err == self._out

    @property
    def pid(self) -> int | None:
        """Its process id on its node."""
        return self._pid

    @property
    def stdout_path(self) -> Path:
        return self._stdout_path

    @property
    def stderr_path(self) -> Path:
        return self._stderr_path

    @property
    def host(self) -> str:
        return self.runner.node.ip

    @property
    def node(self) -> str | None:
        return self.runner.node.node_id

    @property
    def state(self) -> ProcessState:
        return ProcessState.RUNNING if self._code is None else ProcessState.EXITED

    def poll(self) -> int | None:
        return self._code if self._done.is_set() else None

    def wait(self, timeout: float | None = None) -> int | None:
        self._done.wait(timeout)
        return self.poll()

    def cancel(self, grace: float = 5.0) -> None:
        """SIGTERM the process group on its node, SIGKILL it after ``grace`` seconds;
        returns once its exit has come back (its code is then negative: the signal)."""
        import ray
        from ray.exceptions import RayError

        if self._done.is_set():
            return
        self.cancelled = True
        try:
            ray.get(
                self.runner.actor.cancel.remote(self.task, grace), timeout=grace + _CANCEL_MARGIN
            )
        except RayError as exc:  # its node is gone: the pump ends the handle
            log.debug("ray backend: cancelling %r: %s", self, exc)
        self._done.wait(grace + _CANCEL_MARGIN)

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the process group (nothing once it was reported gone)."""
        if not self._done.is_set():
            self.runner.actor.signal.remote(self.task, sig)

    def add_exit_callback(self, callback: Callable[[RayHandle], None]) -> None:
        """Call ``callback(handle)`` once when the process ends (now, if it has)."""
        with self._lock:
            if not self._done.is_set():
                self._on_exit.append(callback)
                return
        callback(self)

    # -- for the backend and the pump ------------------------------------------------

    def _set_pid(self, pid: int, forked: bool = False) -> None:
        self._pid = pid
        self.forked = forked

    def _write(self, kind: str, data: bytes) -> None:
        fd = self._out if kind == "out" else self._err
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        except OSError as exc:
            log.warning("ray backend: cannot write the log of %r: %s", self, exc)

    def _set_exit(self, code: int) -> None:
        with self._lock:
            if self._done.is_set():
                return
            self._code = code
            for fd in {self._out, self._err}:
                os.close(fd)
            self._done.set()
            callbacks, self._on_exit = self._on_exit, []
        for callback in callbacks:
            try:
                callback(self)
            except Exception:
                log.exception("ray backend: an exit callback of %r failed", self)


class Pump:
    """The thread that pulls every runner's output and exits and hands them on."""

    def __init__(self, on_lost: Callable[[Runner], None]) -> None:
        self._lock = threading.Lock()
        self._runners: list[Runner] = []
        self._handles: dict[str, RayHandle] = {}
        self._on_lost = on_lost
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, runner: Runner) -> None:
        with self._lock:
            self._runners.append(runner)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="ketch-ray-pump", daemon=True
                )
                self._thread.start()

    def register(self, handle: RayHandle) -> None:
        """Feed ``handle`` from what its runner reports (before its process starts)."""
        with self._lock:
            self._handles[handle.task] = handle
            handle.runner.tasks.add(handle.task)
            lost = handle.runner.lost
        if lost:
            self._end_lost(handle)

    def forget(self, handle: RayHandle) -> None:
        with self._lock:
            self._handles.pop(handle.task, None)
            handle.runner.tasks.discard(handle.task)

    def running(self) -> list[RayHandle]:
        with self._lock:
            return list(self._handles.values())

    def close(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=_PULL + 5.0)

    def _loop(self) -> None:
        import ray

        while not self._stop.is_set() and ray.is_initialized():
            with self._lock:
                runners = [r for r in self._runners if not r.lost]
            for runner in runners:
                if runner.pending is None:
                    runner.pending = runner.actor.pull.remote(runner.ack, _PULL)
            by_ref = {r.pending: r for r in runners}
            if not by_ref:
                self._stop.wait(0.2)
                continue
            try:
                ready, _ = ray.wait(list(by_ref), num_returns=1, timeout=_PULL + 1.0)
                for ref in ready:
                    self._take(by_ref[ref], ref)
            except Exception:  # noqa: BLE001 - the pump must outlive one bad answer
                if self._stop.is_set() or not ray.is_initialized():
                    return  # Ray was shut down under it
                log.exception("ray backend: the pump failed; going on")
                self._stop.wait(0.5)

    def _take(self, runner: Runner, ref: Any) -> None:
        import ray
        from ray.exceptions import ActorUnavailableError, RayActorError

        runner.pending = None
        try:
            seq, events = ray.get(ref)
        except ActorUnavailableError:
            return  # for now: the next pull tries again
        except RayActorError as exc:
            self._lost(runner, exc)
            return
        runner.ack = seq
        for _seq, task, kind, data in events:
            with self._lock:
                handle = self._handles.get(task)
            if handle is None:
                continue
            if kind == "exit":
                self.forget(handle)
                handle._set_exit(int(data))
            else:
                handle._write(kind, data)

    def _lost(self, runner: Runner, exc: Exception) -> None:
        with self._lock:
            runner.lost = True
            if runner in self._runners:
                self._runners.remove(runner)
            handles = [self._handles[t] for t in runner.tasks if t in self._handles]
        log.warning(
            "ray backend: the process runner on node %s is gone (%s); its %d processes ended",
            runner.node.node_id,
            type(exc).__name__,
            len(handles),
        )
        for handle in handles:
            self._end_lost(handle)
        self._on_lost(runner)

    def _end_lost(self, handle: RayHandle) -> None:
        self.forget(handle)
        handle._write(
            "err",
            f"ketch: Ray node {handle.runner.node.node_id} ({handle.host}) was lost; "
            "its processes ended with it\n".encode(),
        )
        handle._set_exit(-signal.SIGKILL)
