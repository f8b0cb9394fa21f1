"""``ketch up --backend ray --ray-address ...`` on the 3-node cluster (see conftest.py):
a batch/v1 Job and a 2-replica gloo PyTorchJob run on the cluster's nodes, and their
pods say which (``spec.nodeName`` is the Ray node's ID)."""

from __future__ import annotations

import importlib.util
import sys
import textwrap
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.core.backend.conftest import RAY, RayCluster
from tests.jobs.conftest import apply
from tests.jobs.conftest import wait_for as wait_for_job
from tests.server.fixtures import SERVER_ENV, serve
from tests.server.helpers import Server
from tests.waiting import wait_for

pytestmark = RAY
PY = sys.executable


@pytest.fixture(scope="module")
def ray_server(
    ray_cluster: RayCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    server = Server(
        tmp_path_factory.mktemp("ketch-on-ray"),
        extra_env=dict(SERVER_ENV),
        args=("--backend", "ray", "--ray-address", ray_cluster.address),
    )
    yield from serve(server)


@pytest.fixture
def api(ray_server: Server) -> Iterator[httpx.Client]:
    with ray_server.client() as client:
        yield client


def pods(api: httpx.Client, ns: str, selector: str) -> list[dict[str, Any]]:
    response = api.get(f"/api/v1/namespaces/{ns}/pods", params={"labelSelector": selector})
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


def test_the_server_says_where_workloads_run(ray_server: Server, ray_cluster: RayCluster) -> None:
    assert f"Workloads run on the Ray cluster at {ray_cluster.address}: 3 nodes" in (
        ray_server.output()
    )


def test_a_batch_job_runs_its_pods_on_ray_nodes(api: httpx.Client, ray_cluster: RayCluster) -> None:
    ns = f"t-{uuid.uuid4().hex[:8]}"
    manifest = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "hello", "namespace": ns},
        "spec": {
            "completions": 3,
            "parallelism": 3,
            "completionMode": "Indexed",
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "main",
                            "image": "python:3.12",
                            "command": [
                                "python",
                                "-c",
                                "import os; print('index', os.environ['JOB_COMPLETION_INDEX'])",
                            ],
                        }
                    ],
                }
            },
        },
    }
    created = api.post(f"/apis/batch/v1/namespaces/{ns}/jobs", json=manifest)
    assert created.status_code == 201, created.text

    def complete() -> dict[str, Any] | None:
        job = api.get(f"/apis/batch/v1/namespaces/{ns}/jobs/hello").json()
        return job if job.get("status", {}).get("succeeded") == 3 else None

    job = wait_for(complete, 300, what="the Job's 3 pods to succeed")
    assert any(
        c["type"] == "Complete" and c["status"] == "True" for c in job["status"]["conditions"]
    )
    found = pods(api, ns, "job-name=hello")
    assert len(found) == 3
    for pod in found:
        assert pod["spec"]["nodeName"] in ray_cluster.nodes
        assert pod["status"]["podIP"] == "127.0.0.1"
        assert pod["status"]["phase"] == "Succeeded"
        index = pod["metadata"]["labels"]["batch.kubernetes.io/job-completion-index"]
        log = api.get(f"/api/v1/namespaces/{ns}/pods/{pod['metadata']['name']}/log")
        assert log.status_code == 200 and log.text == f"index {index}\n"
    api.delete(f"/apis/batch/v1/namespaces/{ns}/jobs/hello")


TRAIN = textwrap.dedent(
    """
    import os
    import torch
    import torch.distributed as dist

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    data = torch.randn(8, 4) + rank
    loss = ddp(data).pow(2).mean()
    loss.backward()
    total = torch.tensor([float(rank + 1)])
    dist.all_reduce(total)
    grad = model.weight.grad.sum().item()
    print(f"rank {rank}/{world} master {os.environ['MASTER_ADDR']} sum {total.item():g} grad {grad:.6f}")
    dist.destroy_process_group()
    """
)


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is not installed")
def test_a_pytorch_job_spread_over_nodes_trains_with_gloo(
    api: httpx.Client, ray_cluster: RayCluster
) -> None:
    ns = f"t-{uuid.uuid4().hex[:8]}"

    def replica() -> dict[str, Any]:
        return {
            "replicas": 1,
            "restartPolicy": "Never",
            "template": {
                "metadata": {"annotations": {"ketch.dev/placement": "spread"}},
                "spec": {
                    "containers": [
                        {
                            "name": "pytorch",
                            "image": "pytorch/pytorch",
                            "command": ["python", "-c", TRAIN],
                            "resources": {"requests": {"cpu": "100m"}},
                        }
                    ]
                },
            },
        }

    manifest = {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": {"name": "ddp"},
        "spec": {"pytorchReplicaSpecs": {"Master": replica(), "Worker": replica()}},
    }
    apply(api, ns, manifest)
    wait_for_job(api, "PyTorchJob", ns, "ddp", "Succeeded", timeout=400)
    found = pods(api, ns, "training.kubeflow.org/job-name=ddp")
    assert len(found) == 2
    nodes = {pod["spec"]["nodeName"] for pod in found}
    assert len(nodes) == 2 and nodes <= set(ray_cluster.nodes)  # SPREAD: a node each
    grads = set()
    for pod in found:
        log = api.get(f"/api/v1/namespaces/{ns}/pods/{pod['metadata']['name']}/log").text
        line = next(li for li in log.splitlines() if li.startswith("rank "))
        assert "/2 master 127.0.0.1 sum 3 grad " in line, log
        grads.add(line.rsplit(" ", 1)[1])
    assert len(grads) == 1  # DDP averaged the gradients: every replica holds the same
    api.delete(f"/apis/kubeflow.org/v1/namespaces/{ns}/pytorchjobs/ddp")
