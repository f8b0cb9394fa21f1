"""The peer of the notebook benchmarks: JupyterLab started bare on this machine, as a
user would without Ketch (``python -m jupyterlab --no-browser`` with a token, on
127.0.0.1, serving the base URL a Ketch notebook serves), with runtime and
configuration folders of its own as Ketch gives each notebook (so the user's
``~/.jupyter`` is read by neither side), and waiting for its ``api/status``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from tests.server.helpers import free_port

BASE_URL = "/notebook/bare/nb/"


def until_200(url: str, headers: dict[str, str], timeout: float = 120) -> None:
    """Return once ``url`` answers 200; ``RuntimeError`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, headers=headers, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.02)
    raise RuntimeError(f"{url} did not answer in {timeout}s")


@dataclass
class BareLab:
    """One bare JupyterLab process."""

    process: subprocess.Popen[bytes]
    port: int
    token: str
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{BASE_URL}"

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}"}

    def answers(self) -> bool:
        """Whether its ``api/status`` answers 200 now; ``RuntimeError`` once it exited."""
        if self.process.poll() is not None:
            tail = self.log.read_text(errors="replace")[-2000:]
            raise RuntimeError(
                f"bare JupyterLab on port {self.port} exited with {self.process.returncode} "
                f"(log {self.log}):\n{tail}"
            )
        try:
            return (
                httpx.get(f"{self.url}api/status", headers=self.auth, timeout=2).status_code == 200
            )
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


_HANDED: set[int] = set()


def spawn(tmp: Path, token: str = "bench-token") -> BareLab:
    """Start a bare JupyterLab in a folder of its own under ``tmp`` (its log there), on
    a free port no other of this process's labs was given."""
    port = free_port()
    while port in _HANDED:
        port = free_port()
    _HANDED.add(port)
    root = tmp / f"bare-{port}"
    root.mkdir()
    env = {
        **os.environ,
        "JUPYTER_TOKEN": token,
        "JUPYTER_RUNTIME_DIR": str(root / "runtime"),
        "JUPYTER_CONFIG_DIR": str(root / "config"),
        "JUPYTER_PLATFORM_DIRS": "1",
    }
    log = root / "jupyterlab.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jupyterlab",
                "--no-browser",
                "--ip=127.0.0.1",
                f"--port={port}",
                "--ServerApp.port_retries=0",  # as Ketch starts it: that port or none
                f"--ServerApp.base_url={BASE_URL}",
                f"--ServerApp.root_dir={root}",
                "--ServerApp.allow_root=True",
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    return BareLab(process, port, token, log)


def bare_start(tmp: Path) -> tuple[float, BareLab]:
    """Start a bare JupyterLab and wait for its ``api/status``: the seconds it took."""
    began = time.perf_counter()
    lab = spawn(tmp)
    try:
        until_200(f"{lab.url}api/status", lab.auth)
    except BaseException:
        lab.stop()
        raise
    return time.perf_counter() - began, lab
