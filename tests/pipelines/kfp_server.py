"""A real API server for the KFP API tests, in its own process on 127.0.0.1.

``python -m tests.pipelines.kfp_server --port-file F`` serves the app of
``ketch.capabilities.create_app`` (which includes the KFP API), or a minimal app
of the pipelines capability alone; it writes its port to ``F`` once it listens. :class:`ServerProcess` starts one with its own ``KETCH_HOME`` and
stops it (SIGTERM, then SIGKILL) when done.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[2]


def minimal_app(url: str | None) -> Any:
    """An app of the pipelines capability alone: the KFP API with its run service
    and scheduler, and the server's error handlers."""
    from ketch.capabilities import backend
    from ketch.pipelines.capability import CAPABILITY as PIPELINES
    from ketch.server.app import create_app

    return create_app((PIPELINES,), backend=backend(), database_url=url)


def make_app(url: str | None) -> Any:
    """The real server's app (it includes the KFP API); ``KETCH_TEST_KFP_MINIMAL_APP=1``
    makes it :func:`minimal_app`."""
    if os.environ.get("KETCH_TEST_KFP_MINIMAL_APP") == "1":
        return minimal_app(url)
    from ketch.capabilities import create_app

    return create_app(database_url=url)


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser()
    parser.add_argument("--port-file", required=True)
    args = parser.parse_args()
    url = os.environ.get("KETCH_DATABASE_URL") or None
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    tmp = Path(args.port_file + ".tmp")
    tmp.write_text(str(port))
    tmp.replace(args.port_file)
    config = uvicorn.Config(make_app(url), log_level="warning", lifespan="on")
    uvicorn.Server(config).run(sockets=[sock])


class ServerProcess:
    """One server process with its own ``KETCH_HOME`` (and database)."""

    def __init__(self, home: Path, database_url: str | None = None):
        self.home = home
        self.database_url = database_url
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.log_path = home / "server.log"

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'ketch.db'}"

    def start(self, timeout: float = 60.0) -> ServerProcess:
        self.home.mkdir(parents=True, exist_ok=True)
        port_file = self.home / "port"
        env = dict(os.environ)
        env["KETCH_HOME"] = str(self.home)
        env.pop("KETCH_ARTIFACTS", None)
        if self.database_url:
            env["KETCH_DATABASE_URL"] = self.database_url
        else:
            env.pop("KETCH_DATABASE_URL", None)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO), str(REPO / "src"), env.get("PYTHONPATH", "")) if p
        )
        env.setdefault("PYTHONWARNINGS", "ignore::FutureWarning")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.pipelines.kfp_server", "--port-file", str(port_file)],
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited early; see {self.log_path}:\n{self.log()}")
            if port_file.exists():
                self.url = f"http://127.0.0.1:{port_file.read_text().strip()}"
                try:
                    if httpx.get(f"{self.url}/apis/v2beta1/healthz", timeout=2).status_code == 200:
                        return self
                except httpx.HTTPError:
                    pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the server did not answer within {timeout}s; see {self.log_path}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:] if self.log_path.exists() else ""

    def stop(self, timeout: float = 30.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


BACKENDS = ["sqlite", "postgresql"]


def serve(backend: str, home: Path) -> Iterator[ServerProcess]:
    """A started server on ``backend`` ("sqlite" or "postgresql"), stopped afterwards."""
    from tests.core.conftest import _postgres_database

    if backend == "postgresql":
        databases = _postgres_database()
        url: str | None = next(databases)
    else:
        databases, url = iter(()), None
    server = ServerProcess(home, url)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        for _ in databases:  # drop the database
            pass


if __name__ == "__main__":
    main()
