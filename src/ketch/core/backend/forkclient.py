"""The parent's side of a fork server (see ``forkserver.py`` for the server and protocol).

Thread-safe: any thread may :meth:`ForkServerClient.fork`; one reader thread per
server turns the server's events into handle state.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import signal
import socket
import subprocess
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ketch.core.backend.handles import ForkedHandle, signal_group
from ketch.core.backend.spec import RunAs
from ketch.core.backend.supervisor import FORKSERVER_SCRIPT, Supervisor
from ketch.core.errors import BackendError

log = logging.getLogger("ketch.core.backend")


class ForkServerUnavailable(Exception):
    """The fork server could not take this request; the caller runs the plain command."""


@dataclass
class _Pending:
    handle: ForkedHandle
    started: threading.Event = field(default_factory=threading.Event)
    error: str | None = None
    abandoned: bool = False


def _tail(path: Path, limit: int = 2000) -> str:
    try:
        data = path.read_bytes()[-limit:]
    except OSError:
        return ""
    return data.decode("utf-8", "replace").strip()


class ForkServerClient:
    """One warm interpreter (``python``, ``preload``) that forks tasks on request."""

    def __init__(
        self,
        python: str,
        preload: Sequence[str],
        env: Mapping[str, str],
        log_path: Path,
        supervisor: Supervisor,
        *,
        start_timeout: float = 30.0,
        warmup: tuple[str, list[str]] | None = None,
    ) -> None:
        self.python = python
        self.preload = tuple(preload)
        self.warmup = warmup
        self.log_path = log_path
        self._env = dict(env)
        self._supervisor = supervisor
        self._start_timeout = start_timeout
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._ready = threading.Event()
        self._dead = False
        self._retiring = False
        self._launched = False
        self.error: str | None = None
        self.server_pid: int | None = None
        self.threads_at_ready = 1
        self._sock: socket.socket | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None

    def __repr__(self) -> str:
        return (
            f"<ForkServerClient {self.python} preload={list(self.preload)} pid={self.server_pid}>"
        )

    # -- lifecycle -------------------------------------------------------------

    def launch(self) -> None:
        """Start the server process (not waiting for it to be ready). Never raises."""
        with self._lock:
            if self._launched:
                return
            self._launched = True
        if not FORKSERVER_SCRIPT.is_file():
            self._fail(f"the fork server script {FORKSERVER_SCRIPT} is missing")
            return
        command = [
            self.python,
            str(FORKSERVER_SCRIPT),
            "serve",
            str(os.getpid()),
            json.dumps(list(self.preload)),
        ]
        if self.warmup is not None:
            command.append(json.dumps(list(self.warmup)))
        parent_sock, child_sock = socket.socketpair()
        try:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            log_fd = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            parent_sock.close()
            child_sock.close()
            self._fail(f"cannot open the fork server log {self.log_path}: {exc}")
            return
        try:
            # On the supervisor thread: the server's parent-death signal is tied to it.
            self._proc = self._supervisor.call(
                lambda: subprocess.Popen(
                    command,
                    stdin=child_sock.fileno(),
                    stdout=subprocess.DEVNULL,
                    stderr=log_fd,
                    env=self._env,
                    start_new_session=True,
                    close_fds=True,
                )
            )
        except (OSError, ValueError, subprocess.SubprocessError, BackendError) as exc:
            parent_sock.close()
            self._fail(f"cannot start {self.python!r}: {exc}")
            return
        finally:
            child_sock.close()
            os.close(log_fd)
        self._sock = parent_sock
        self.server_pid = self._proc.pid
        self._reader = threading.Thread(
            target=self._read_loop, name=f"ketch-forkserver-{self._proc.pid}", daemon=True
        )
        self._reader.start()

    def wait_ready(self, timeout: float | None = None) -> bool:
        """True once the server has preloaded its modules and can fork."""
        self._ready.wait(timeout)
        with self._lock:
            if not self._ready.is_set() and not self._dead:
                self.error = self.error or (
                    f"the fork server did not get ready within {timeout}s; log: {self.log_path}"
                )
            return self._ready.is_set() and not self._dead

    @property
    def usable(self) -> bool:
        return self._ready.is_set() and not self._dead and not self._retiring

    @property
    def dead(self) -> bool:
        return self._dead

    @property
    def running(self) -> int:
        with self._lock:
            return sum(1 for p in self._pending.values() if not p.abandoned)

    def retire(self) -> None:
        """Fork no more; the server exits when its last child has ended."""
        with self._lock:
            if self._retiring or self._dead:
                return
            self._retiring = True
        self._send({"op": "retire"})

    def close(self, timeout: float = 10.0) -> None:
        """Close the channel: the server kills its children's groups and exits."""
        with self._lock:
            self._retiring = True
            sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        reader = self._reader
        # (a reader made but not started yet: the server was still starting up)
        if (
            reader is not None
            and reader is not threading.current_thread()
            and reader.ident is not None
        ):
            reader.join(timeout)
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    def _fail(self, error: str) -> None:
        with self._lock:
            self._dead = True
            self.error = self.error or error
        self._ready.set()

    # -- requests --------------------------------------------------------------

    def _send(self, message: Mapping[str, Any]) -> None:
        sock = self._sock
        if sock is None:
            raise OSError("the fork server is not running")
        data = (json.dumps(message) + "\n").encode()
        with self._send_lock:
            sock.sendall(data)

    def fork(
        self,
        handle: ForkedHandle,
        *,
        module: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        cwd: str,
        stdout: str,
        stderr: str,
        rlimit_as: int | None,
        run_as: RunAs | None = None,
    ) -> None:
        """Fork ``handle``'s task; return once it runs (its pid is set). With
        ``run_as``, the child takes that identity once its logs are open.

        Raises :class:`ForkServerUnavailable` when the server cannot take it.
        """
        pending = _Pending(handle)
        with self._lock:
            if not self.usable:
                raise ForkServerUnavailable(self.error or "the fork server is not running")
            rid = next(self._ids)
            self._pending[rid] = pending
        request = {
            "op": "fork",
            "id": rid,
            "module": module,
            "argv": list(argv),
            "env": dict(env),
            "cwd": cwd,
            "stdout": stdout,
            "stderr": stderr,
            "rlimit_as": rlimit_as,
            "run_as": None if run_as is None else {"uid": run_as.uid, "gid": run_as.gid},
        }
        try:
            self._send(request)
        except OSError as exc:
            with self._lock:
                self._pending.pop(rid, None)
            raise ForkServerUnavailable(f"cannot reach the fork server: {exc}") from exc
        if not pending.started.wait(self._start_timeout):
            with self._lock:
                pending.abandoned = True
                started = pending.started.is_set()
            if not started:
                raise ForkServerUnavailable(
                    f"the fork server did not answer within {self._start_timeout:.0f}s"
                )
        if pending.error is not None:
            raise ForkServerUnavailable(pending.error)

    # -- events ----------------------------------------------------------------

    def _read_loop(self) -> None:
        sock = self._sock
        assert sock is not None
        try:
            with sock.makefile("rb") as stream:
                for line in stream:
                    try:
                        message = json.loads(line)
                    except ValueError:
                        continue
                    self._dispatch(message)
        except OSError:
            pass
        finally:
            self._on_eof()

    def _dispatch(self, message: Mapping[str, Any]) -> None:
        event = message.get("event")
        if event == "ready":
            self.threads_at_ready = int(message.get("threads", 1))
            self._ready.set()
            return
        if event == "preload_failed":
            with self._lock:
                self.error = f"preloading {list(self.preload)} failed:\n{message.get('message')}"
            return
        rid = message.get("id")
        if not isinstance(rid, int):
            return
        with self._lock:
            pending = self._pending.get(rid)
            if pending is None:
                return
            if event != "started":
                self._pending.pop(rid, None)
        if event == "started":
            pid = int(message["pid"])
            pending.handle._set_pid(pid)
            if pending.abandoned:
                signal_group(pid, signal.SIGKILL)
            pending.started.set()
        elif event == "error":
            pending.error = str(message.get("message"))
            pending.started.set()
        elif event == "exit":
            pending.started.set()
            pending.handle._set_exit(int(message["code"]))

    def _on_eof(self) -> None:
        proc = self._proc
        code: int | None = None
        if proc is not None:
            try:
                code = proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = proc.wait()
        with self._lock:
            self._dead = True
            expected = self._retiring
            if self.error is None:
                self.error = f"the fork server exited (code {code}); log: {self.log_path}"
                tail = _tail(self.log_path)
                if tail:
                    self.error += f"\n{tail}"
            orphans = list(self._pending.values())
            self._pending.clear()
        self._ready.set()
        if self._sock is not None:
            self._sock.close()
        lost = 0
        for pending in orphans:
            if not pending.started.is_set():
                pending.error = self.error
                pending.started.set()
                continue
            # Its children die with it (parent-death signal); make sure of the whole group.
            pid = pending.handle.pid
            if pid is not None:
                signal_group(pid, signal.SIGKILL)
            pending.handle._set_exit(-signal.SIGKILL)
            lost += 1
        if lost and not expected:
            log.warning(
                "local backend: the fork server for %s died; %d running task(s) were killed (%s)",
                self.python,
                lost,
                self.error,
            )
