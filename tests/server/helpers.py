"""Starting and stopping real API servers (``ketch up`` subprocesses) for the tests."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from ketch.server.errors import is_kubernetes_path, reason_for
from tests.waiting import poll

REPO = Path(__file__).resolve().parents[2]
READY = re.compile(r"Ketch API server listening on (https?://\S+)")


def ketch_command() -> list[str]:
    script = Path(sys.executable).with_name("ketch")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "ketch.cli.main"]


def base_env(home: Path, database_url: str | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["KETCH_HOME"] = str(home)
    env.pop("KETCH_URL", None)
    env.pop("KETCH_ARTIFACTS", None)
    if database_url:
        env["KETCH_DATABASE_URL"] = database_url
    else:
        env.pop("KETCH_DATABASE_URL", None)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO / "src"), env.get("PYTHONPATH", "")) if p
    )
    env.setdefault("PYTHONWARNINGS", "ignore::FutureWarning")
    env["NO_COLOR"] = "1"
    env["COLUMNS"] = "200"
    return env


@dataclass
class Server:
    """A ``ketch up --port 0`` subprocess; ``url`` once it printed its address."""

    home: Path
    database_url: str | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    args: tuple[str, ...] = ()
    process: subprocess.Popen[bytes] | None = None
    url: str = ""
    log_path: Path | None = None
    #: the test process's own connections to the server's database (see :meth:`store`)
    database: Any = None

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'ketch.db'}"

    def store(self) -> Any:
        """A ``ResourceStore`` over the server's database, written from the test
        process as another process would; its connections close when the server stops."""
        from ketch.core.store.db import Database
        from ketch.core.store.resources import ResourceStore

        if self.database is None:
            self.database = Database(self.db_url)
        return ResourceStore(self.database)

    def start(self, timeout: float = 60.0) -> Server:
        self.home.mkdir(parents=True, exist_ok=True)
        self.log_path = self.home / "server.log"
        env = {**base_env(self.home, self.database_url), **self.extra_env}
        with self.log_path.open("wb") as log:
            process = self.process = subprocess.Popen(
                [*ketch_command(), "up", "--port", "0", "--home", str(self.home), *self.args],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=self.home,
            )

        def listening() -> bool:
            match = READY.search(self.output())
            if match:
                self.url = match.group(1)
                return True
            if process.poll() is not None:
                raise RuntimeError(f"ketch up exited with {process.returncode}:\n{self.output()}")
            return False

        if not poll(listening, timeout):
            self.stop()
            raise RuntimeError(f"ketch up did not start in {timeout}s:\n{self.output()}")
        return self

    def output(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int | None:
        if self.database is not None:
            self.database.dispose()
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return self.process.returncode

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30.0, **kwargs)


def wait_until(check: Callable[[], Any], timeout: float = 60.0, interval: float = 0.1) -> Any:
    """``check()`` once it is truthy, else its last value after ``timeout`` seconds."""
    return poll(check, timeout, interval)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def sse_events(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    """The JSON ``data:`` payloads of a server-sent event stream."""
    for line in lines:
        if line.startswith("data:"):
            yield json.loads(line[len("data:") :].strip())


def object_path(api: str, ns: str, plural: str, name: str | None = None) -> str:
    """The URL of the ``plural`` of namespace ``ns`` under ``api`` (``/api/v1``,
    ``/apis/{group}/{version}``), or of their object ``name``."""
    base = f"{api}/namespaces/{ns}/{plural}"
    return f"{base}/{name}" if name else base


def assert_error(response: httpx.Response, status: int, *fragments: str) -> str:
    """The response is a single-message error body with ``status``: a Kubernetes
    ``Status`` on a Kubernetes path, grpc-gateway's body elsewhere; return the message."""
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    if is_kubernetes_path(response.request.url.path):
        return assert_status(response, status, None, *fragments)
    assert set(body) == {"error", "message", "code", "details"}, body
    assert body["error"] == body["message"]
    assert isinstance(body["message"], str) and "\n" not in body["message"]
    assert body["details"] == []
    for fragment in fragments:
        assert fragment in body["message"], (fragment, body["message"])
    return str(body["message"])


def assert_status(
    response: httpx.Response, status: int, reason: str | None = None, *fragments: str
) -> str:
    """The response is a Kubernetes ``Status`` failure with ``status`` and ``reason``
    (by default the status's own reason) whose message holds ``fragments``; return the
    message."""
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert body["kind"] == "Status" and body["apiVersion"] == "v1", body
    assert body["status"] == "Failure" and body["code"] == status, body
    assert body["metadata"] == {} and isinstance(body["details"], dict), body
    if reason is None:
        assert body["reason"] == reason_for(status) or (
            status == 409 and body["reason"] == "AlreadyExists"
        ), body
    else:
        assert body["reason"] == reason, body
    assert isinstance(body["message"], str) and "\n" not in body["message"], body
    for fragment in fragments:
        assert fragment in body["message"], (fragment, body["message"])
    return str(body["message"])


class ThreadServer:
    """uvicorn serving an app object in a thread of the test process (port 0)."""

    def __init__(self, app: Any, *, lifespan: str = "on") -> None:
        import uvicorn

        self._server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=0, lifespan=lifespan, log_level="warning")
        )
        self._thread: Any = None
        self.url = ""

    def __enter__(self) -> ThreadServer:
        import threading

        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()

        def started() -> bool:
            if self._server.started:
                return True
            if not self._thread.is_alive():
                raise RuntimeError("the in-process server did not start")
            return False

        if not poll(started, 30, 0.02):
            raise RuntimeError("the in-process server did not start")
        port = self._server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *_exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(30)
        assert not self._thread.is_alive()
