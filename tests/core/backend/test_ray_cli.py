"""Choosing the Ray backend from the CLI when no cluster is there: every mistake is an
error line saying what to do, with ketch's exit codes (no Ray cluster needed)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.server.helpers import base_env, free_port, ketch_command


def ketch(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = base_env(home)
    environment.pop("RAY_ADDRESS", None)
    environment.pop("KETCH_BACKEND", None)
    return subprocess.run(
        [*ketch_command(), *args],
        env={**environment, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("args", "env", "code", "message"),
    [
        (["--backend", "rya"], {}, 2, "--backend: use local or ray"),
        ([], {"KETCH_BACKEND": "rya"}, 2, "--backend: use local or ray"),
        (["--backend", "ray"], {}, 1, "needs the address of a Ray cluster"),
        (["--backend", "ray", "--ray-address", "nowhere"], {}, 1, "is not HOST:PORT"),
        (["--backend", "ray"], {"RAY_ADDRESS": "127.0.0.1:{port}"}, 1, "nothing answers at"),
    ],
)
def test_ketch_up_refuses_a_backend_it_cannot_use(
    tmp_path: Path, args: list[str], env: dict[str, str], code: int, message: str
) -> None:
    port = str(free_port())
    env = {k: v.format(port=port) for k, v in env.items()}
    done = ketch(tmp_path, "up", "--port", "0", "--home", str(tmp_path), *args, **env)
    assert done.returncode == code, done.stdout + done.stderr
    assert message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert "listening" not in done.stdout


def test_ketch_ray_checks_its_options_and_down_without_a_cluster(tmp_path: Path) -> None:
    done = ketch(tmp_path, "ray", "up", "--nodes", "0")
    assert done.returncode == 2 and "--nodes: a cluster needs at least 1 node" in done.stderr
    done = ketch(tmp_path, "ray", "up", "--cpus-per-node", "0")
    assert done.returncode == 2 and "--cpus-per-node: must be more than 0" in done.stderr
    done = ketch(tmp_path, "ray", "up", "--gpus-per-node", "-1")
    assert done.returncode == 2 and "--gpus-per-node: must be 0 or more" in done.stderr
    done = ketch(tmp_path, "ray", "up", "--nodes", "300", "--address-per-node")
    assert done.returncode == 2 and "--address-per-node: at most 254 nodes" in done.stderr
    done = ketch(tmp_path, "ray", "down")
    assert done.returncode == 0
    assert "No Ray cluster started by ketch ray up is running." in done.stdout
