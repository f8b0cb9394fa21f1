"""One real Ray cluster of 3 nodes on 127.0.0.1 for the Ray backend's tests, started
with ``ketch ray up --nodes 3`` (one CPU per node, no dashboard) in a KETCH_HOME of
its own and stopped with ``ketch ray down`` once the session ends; a
:class:`RayBackend` connected to it from the test process; and one
``ketch up --backend ray`` on it (``ray_server``, ``api``) for the tests that go
through the server, with :func:`pods` to say where their workloads ran.

Every test that uses them is marked ``xdist_group("ray")`` (see :data:`RAY`), so
one worker runs them all and one cluster runs at a time. Without Ray they skip,
saying so; ``KETCH_TEST_RAY_ADDRESS`` names a running cluster to use instead.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from ketch.core.backend.ray.backend import SHARED_PATHS_ENV
from tests.server.fixtures import SERVER_ENV, serve
from tests.server.helpers import Server, base_env, ketch_command

if TYPE_CHECKING:
    from ketch.core.backend.ray import RayBackend

#: the marks of every test that runs on the Ray cluster
RAY = [pytest.mark.ray, pytest.mark.xdist_group("ray")]
ADDRESS_ENV = "KETCH_TEST_RAY_ADDRESS"
# Ray turns 127.0.0.1 into the machine's address unless told the cluster is local
# (the backend says so itself, but only if Ray is not imported yet)
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@dataclass
class RayCluster:
    address: str
    nodes: list[str]  # Ray node IDs, the head's first
    home: Path  # the KETCH_HOME ketch ray up ran in


def ketch_ray(home: Path, *args: str, timeout: float = 420.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ketch_command(), "ray", *args],
        env=base_env(home),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayCluster]:
    if importlib.util.find_spec("ray") is None:
        pytest.skip("Ray is not installed (pip install 'ketch[ray]'; make install installs it)")
    given = os.environ.get(ADDRESS_ENV)
    if given:
        import ray

        ray.init(address=given, log_to_driver=False)
        nodes = [str(n["NodeID"]) for n in ray.nodes() if n.get("Alive")]
        ray.shutdown()
        yield RayCluster(given, nodes, tmp_path_factory.mktemp("ray-given"))
        return
    home = tmp_path_factory.mktemp("ray-cluster")
    started = ketch_ray(home, "up", "--nodes", "3", "--cpus-per-node", "1")
    assert started.returncode == 0, started.stdout + started.stderr
    state = json.loads((home / "ray" / "cluster.json").read_text())
    assert f"at {state['address']}" in started.stdout
    assert "ketch ray down" in started.stdout
    try:
        yield RayCluster(state["address"], list(state["nodes"]), home)
    finally:
        stopped = ketch_ray(home, "down", timeout=120)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        assert not Path(f"/proc/{state['pid']}").exists() or _zombie(int(state["pid"]))
        assert not Path(state["temp_dir"]).exists()


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True


@pytest.fixture(scope="session")
def ray_backend(ray_cluster: RayCluster) -> Iterator[RayBackend]:
    from ketch.core.backend.ray import RayBackend

    backend = RayBackend(ray_cluster.address)
    try:
        yield backend
    finally:
        backend.shutdown(grace=2.0)


@pytest.fixture(scope="session")
def ray_server(
    ray_cluster: RayCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """``ketch up --backend ray --ray-address ...`` on the cluster, for every module; its
    home counts as shared by the nodes (they are all on this machine), so that the
    tests also run on a cluster whose nodes have addresses of their own (given in
    ``KETCH_TEST_RAY_ADDRESS``)."""
    home = tmp_path_factory.mktemp("ketch-on-ray")
    server = Server(
        home,
        extra_env={**SERVER_ENV, SHARED_PATHS_ENV: str(home)},
        args=("--backend", "ray", "--ray-address", ray_cluster.address),
    )
    yield from serve(server)


@pytest.fixture
def api(ray_server: Server) -> Iterator[httpx.Client]:
    with ray_server.client() as client:
        yield client


def pods(api: httpx.Client, ns: str, selector: str) -> list[dict[str, Any]]:
    """The pods of namespace ``ns`` that ``selector`` (a label selector) picks."""
    response = api.get(f"/api/v1/namespaces/{ns}/pods", params={"labelSelector": selector})
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


def batch_job(ns: str, name: str, command: list[str], pods: int, **spec: Any) -> dict[str, Any]:
    """A batch/v1 Job of ``pods`` pods at once, each running ``command`` once
    (``restartPolicy: Never``); ``spec``: more of the Job's spec, and ``resources`` for
    its container."""
    container: dict[str, Any] = {"name": "main", "image": "python:3.12", "command": command}
    if "resources" in spec:
        container["resources"] = spec.pop("resources")
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "completions": pods,
            "parallelism": pods,
            **spec,
            "template": {"spec": {"restartPolicy": "Never", "containers": [container]}},
        },
    }
