"""The thread that starts every local process, and the guard that outlives the backend.

Why one thread: ``PR_SET_PDEATHSIG`` fires when the *thread* that forked a
child ends, not the process. Tasks are started from many short-lived threads,
so every ``fork`` goes through one long-lived supervisor thread, which also
watches the processes it started (``pidfd`` readiness in one selector loop).

Why a guard process: the parent-death signal reaches only the direct child, not
its own children. The :class:`OrphanGuard` is a tiny interpreter that holds the
list of process groups the backend started and SIGKILLs them all when its stdin
(a pipe from the backend) reaches EOF, i.e. when the backend's process ends in
any way, SIGKILL included.
"""

from __future__ import annotations

import logging
import os
import selectors
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

from ketch.core.errors import BackendError

log = logging.getLogger("ketch.core.backend")

T = TypeVar("T")

FORKSERVER_SCRIPT = Path(__file__).with_name("forkserver.py")


class Supervisor:
    """Runs calls on one long-lived thread and reports process exits.

    ``call(fn)`` runs ``fn`` on the supervisor thread and returns its result (or
    raises its exception) in the caller. ``watch(pid, on_exit, wait)`` calls
    ``on_exit()`` on the supervisor thread once ``pid`` (a child of this
    process) has terminated; ``wait`` is a blocking fallback where pidfd is not
    available.
    """

    def __init__(self, name: str = "ketch-backend") -> None:
        self._name = name
        self._lock = threading.Lock()
        self._queue: deque[tuple[Callable[[], Any], Future[Any]]] = deque()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._watched = 0

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"\0")
        except (BlockingIOError, OSError):
            pass

    def call(self, fn: Callable[[], T]) -> T:
        if threading.current_thread() is self._thread:
            return fn()
        future: Future[T] = Future()
        with self._lock:
            if self._closed:
                raise BackendError("the local backend is shut down")
            self._queue.append((fn, future))
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
                self._thread.start()
        self._wake()
        return future.result()

    def watch(self, pid: int, on_exit: Callable[[], None], wait: Callable[[], object]) -> None:
        """Must be called on the supervisor thread (from inside :meth:`call`)."""
        try:
            fd = os.pidfd_open(pid)
        except (AttributeError, OSError):
            fd = -1
        if fd < 0:

            def waiter() -> None:
                wait()
                self._run_safely(on_exit)

            threading.Thread(target=waiter, name=f"{self._name}-wait-{pid}", daemon=True).start()
            return
        self._selector.register(fd, selectors.EVENT_READ, on_exit)
        self._watched += 1

    @staticmethod
    def _run_safely(fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception:
            log.exception("local backend: an exit callback failed")

    def _loop(self) -> None:
        while True:
            for key, _ in self._selector.select():
                if key.data is None:
                    try:
                        while os.read(self._wake_r, 4096):
                            pass
                    except (BlockingIOError, OSError):
                        pass
                    continue
                self._selector.unregister(key.fd)
                os.close(key.fd)
                self._watched -= 1
                self._run_safely(key.data)
            while True:
                with self._lock:
                    if not self._queue:
                        closed = self._closed
                        break
                    fn, future = self._queue.popleft()
                if future.set_running_or_notify_cancel():
                    try:
                        future.set_result(fn())
                    except BaseException as exc:  # noqa: BLE001 - runs callers' functions: call() raises it again in the caller
                        future.set_exception(exc)
            if closed:
                break
        for key in list(self._selector.get_map().values()):
            if key.data is not None:
                os.close(key.fd)
        self._selector.close()
        os.close(self._wake_r)
        os.close(self._wake_w)

    def close(self) -> None:
        """Stop the thread (after the queued calls). Processes still watched are not waited."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
        if thread is None:
            self._selector.close()
            os.close(self._wake_r)
            os.close(self._wake_w)
            return
        self._wake()
        if thread is not threading.current_thread():
            thread.join(timeout=10)


class OrphanGuard:
    """A guard process that SIGKILLs the registered process groups when the backend's process ends."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._broken = False

    @property
    def started(self) -> bool:
        return self._proc is not None or self._broken

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def start(self) -> None:
        """Start the guard process (no parent-death signal: it must outlive this process)."""
        with self._lock:
            if self._proc is not None or self._broken:
                return
            if not sys.executable or not FORKSERVER_SCRIPT.is_file():
                self._broken = True
                return
            command = [sys.executable, "-I", "-S", str(FORKSERVER_SCRIPT), "guard"]
            try:
                self._proc = subprocess.Popen(
                    command,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                    close_fds=True,
                )
            except OSError as exc:
                self._broken = True
                log.warning(
                    "local backend: cannot start the orphan guard (%s); "
                    "grandchildren may outlive a crashed parent",
                    exc,
                )

    def _send(self, line: str) -> None:
        with self._lock:
            proc = self._proc
            if self._broken or proc is None or proc.stdin is None:
                return
            try:
                proc.stdin.write(line.encode())
                proc.stdin.flush()
            except (OSError, ValueError) as exc:
                self._broken = True
                log.warning("local backend: the orphan guard is gone (%s)", exc)

    def add(self, pgid: int) -> None:
        if not self.started:
            self.start()
        self._send(f"+{pgid}\n")

    def remove(self, pgid: int) -> None:
        self._send(f"-{pgid}\n")

    def close(self) -> None:
        with self._lock:
            proc, self._proc = self._proc, None
            self._broken = True
        if proc is None:
            return
        try:
            if proc.stdin is not None:
                proc.stdin.close()
        except OSError:
            pass
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
