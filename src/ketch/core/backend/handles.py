"""Process handles the local backend returns: one API for spawned and forked processes."""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path

from ketch.core.backend.host import LOCAL_HOST
from ketch.core.backend.spec import ProcessSpec, ProcessState

log = logging.getLogger("ketch.core.backend")

_KILL_WAIT = 30.0  # seconds to wait for a SIGKILLed group leader to be reported gone


def signal_group(pgid: int, sig: int) -> None:
    """``killpg`` that ignores a group that is already gone."""
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class LocalHandle:
    """A process started by :class:`~ketch.core.backend.local.LocalBackend`.

    The process leads its own session and process group (pgid == pid), so
    :meth:`cancel` signals the whole group, grandchildren included. When the
    leader exits, whatever is left of its group is killed, as a container ends.
    """

    forked: bool = False

    def __init__(
        self,
        spec: ProcessSpec,
        stdout_path: Path,
        stderr_path: Path,
        *,
        cpu_limit: float | None = None,
        memory_limit: int | None = None,
    ) -> None:
        self.spec = spec
        self._stdout_path = stdout_path
        self._stderr_path = stderr_path
        self.cpu_limit = cpu_limit
        self.cpu_enforced = False  # True when a control group applies the limit
        self.memory_limit = memory_limit  # enforced with RLIMIT_AS
        self._pid: int | None = None
        self._code: int | None = None
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._on_exit: list[Callable[[LocalHandle], None]] = []
        self.cancelled = False

    def __repr__(self) -> str:
        state = "running" if self._code is None else f"exit {self._code}"
        return f"<{type(self).__name__} {self.spec.name!r} pid={self._pid} {state}>"

    @property
    def pid(self) -> int | None:
        return self._pid

    @property
    def stdout_path(self) -> Path:
        return self._stdout_path

    @property
    def stderr_path(self) -> Path:
        return self._stderr_path

    @property
    def host(self) -> str:
        return LOCAL_HOST

    @property
    def node(self) -> str | None:
        return None

    @property
    def state(self) -> ProcessState:
        return ProcessState.RUNNING if self._code is None else ProcessState.EXITED

    def poll(self) -> int | None:
        return self._code if self._done.is_set() else None

    def wait(self, timeout: float | None = None) -> int | None:
        self._done.wait(timeout)
        return self.poll()

    def cancel(self, grace: float = 5.0) -> None:
        """SIGTERM the process group; SIGKILL it if the leader is still there after ``grace``.

        Returns once the process has exited (its code is then negative: the signal).
        """
        if self._done.is_set():
            return
        self.cancelled = True
        self.signal(signal.SIGTERM)
        if not self._done.wait(max(grace, 0.0)):
            self.signal(signal.SIGKILL)
            self._done.wait(_KILL_WAIT)

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the whole process group (nothing once it was reported gone)."""
        pid = self._pid
        if pid is not None and not self._done.is_set():
            signal_group(pid, sig)

    # -- for the backend -----------------------------------------------------

    def add_exit_callback(self, callback: Callable[[LocalHandle], None]) -> None:
        """Call ``callback(handle)`` once when the process ends (now, if it has)."""
        with self._lock:
            if not self._done.is_set():
                self._on_exit.append(callback)
                return
        callback(self)

    def _set_pid(self, pid: int) -> None:
        self._pid = pid

    def _set_exit(self, code: int) -> None:
        with self._lock:
            if self._done.is_set():
                return
            self._code = code
            self._done.set()
            callbacks, self._on_exit = self._on_exit, []
        for callback in callbacks:
            try:
                callback(self)
            except Exception:
                log.exception("local backend: an exit callback of %r failed", self)


class SpawnedHandle(LocalHandle):
    """A process started with ``subprocess`` (a new interpreter or any executable)."""

    forked = False


class ForkedHandle(LocalHandle):
    """A Python task forked from a warm interpreter (the fork server)."""

    forked = True
