"""``ketch up``: starts, answers, and stops cleanly on SIGTERM and SIGINT."""

from __future__ import annotations

import http.client
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from ketch.cli.server import KEEP_ALIVE_S
from tests.server.helpers import Server, base_env, ketch_command, port_is_free

#: how long uvicorn, and many servers, keep an idle connection by default
KEEP_ALIVE_DEFAULT_S = 5


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_up_serves_and_stops_cleanly(tmp_path: Path, sig: signal.Signals) -> None:
    server = Server(tmp_path / "home").start()
    try:
        assert server.url.startswith("http://127.0.0.1:")
        with httpx.Client(base_url=server.url, timeout=10) as http:
            assert http.get("/healthz").json() == {"status": "ok"}
            assert http.get("/readyz").status_code == 200
            # a watch in progress does not hold up the shutdown
            with http.stream("GET", "/apis/kubeflow.org/v1/watch/pytorchjobs") as response:
                assert response.status_code == 200
                assert server.stop(sig, timeout=15) == 0
    finally:
        server.stop()
    assert (tmp_path / "home" / "ketch.db").exists()
    assert port_is_free(server.port)
    assert "Traceback" not in server.output()


def test_an_idle_connection_outlives_the_usual_5_s_and_does_not_hold_up_stop(
    tmp_path: Path,
) -> None:
    """A client that reuses its connection after a pause gets an answer, not a closed
    socket; the server still stops at once with that connection open."""
    server = Server(tmp_path / "home").start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        try:
            conn.request("GET", "/healthz")
            assert conn.getresponse().read() == b'{"status":"ok"}'
            sock = conn.sock
            time.sleep(KEEP_ALIVE_DEFAULT_S + 1.5)
            conn.request("GET", "/healthz")  # RemoteDisconnected had the server closed it
            assert conn.getresponse().read() == b'{"status":"ok"}'
            assert conn.sock is sock
            started = time.monotonic()
            assert server.stop(signal.SIGTERM, timeout=15) == 0
            assert time.monotonic() - started < KEEP_ALIVE_S
        finally:
            conn.close()
    finally:
        server.stop()
    assert "Traceback" not in server.output()


def test_up_reports_a_busy_port(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [*ketch_command(), "up", "--port", str(port), "--home", str(tmp_path / "home")],
            capture_output=True,
            text=True,
            timeout=60,
            env=base_env(tmp_path / "home"),
            stdin=subprocess.DEVNULL,
        )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr + result.stdout


def test_up_rejects_a_bad_port(tmp_path: Path) -> None:
    result = subprocess.run(
        [*ketch_command(), "up", "--port", "70000", "--home", str(tmp_path / "home")],
        capture_output=True,
        text=True,
        timeout=60,
        env=base_env(tmp_path / "home"),
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 2 and "--port" in result.stderr
