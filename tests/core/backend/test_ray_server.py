"""``ketch up --backend ray --ray-address ...`` on the 3-node cluster (both in conftest.py):
a batch/v1 Job and a 4-replica gloo DDP PyTorchJob (spread over the nodes; its
weights match one process's) run on the cluster's nodes, and their pods say which
(``spec.nodeName`` is the Ray node's ID)."""

from __future__ import annotations

import importlib.util
import json
import sys
import textwrap
import uuid
from typing import Any

import httpx
import pytest

from tests.core.backend.conftest import RAY, RayCluster, batch_job, pods
from tests.jobs.conftest import apply
from tests.jobs.conftest import wait_for as wait_for_job
from tests.server.helpers import Server
from tests.waiting import wait_for

pytestmark = RAY
PY = sys.executable


def test_the_server_says_where_workloads_run(ray_server: Server, ray_cluster: RayCluster) -> None:
    assert f"Workloads run on the Ray cluster at {ray_cluster.address}: 3 nodes" in (
        ray_server.output()
    )


def test_a_batch_job_runs_its_pods_on_ray_nodes(api: httpx.Client, ray_cluster: RayCluster) -> None:
    ns = f"t-{uuid.uuid4().hex[:8]}"
    command = ["python", "-c", "import os; print('index', os.environ['JOB_COMPLETION_INDEX'])"]
    manifest = batch_job(ns, "hello", command, 3, completionMode="Indexed")
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


# 3 SGD steps of a Linear(4, 1) on 16 fixed rows, each of the 4 replicas on its
# quarter: DDP averages the shards' gradients, which is the full batch's gradient, so
# the master's final weights equal one process's 3 steps on all 16 rows
TRAIN = textwrap.dedent(
    """
    import json, os
    import torch
    import torch.distributed as dist

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    print(f"rank {rank}/{world} master {os.environ['MASTER_ADDR']}", flush=True)
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
    x = torch.linspace(-1, 1, 64).reshape(16, 4)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]]) + 0.25
    shard = 16 // world
    xs, ys = x[rank * shard:(rank + 1) * shard], y[rank * shard:(rank + 1) * shard]
    for _ in range(3):
        opt.zero_grad()
        torch.nn.functional.mse_loss(ddp(xs), ys).backward()
        opt.step()
    if rank == 0:
        print("weights " + json.dumps([p.detach().flatten().tolist() for p in model.parameters()]))
    dist.destroy_process_group()
    """
)


def train_in_one_process(steps: int = 3) -> list[Any]:
    """The same steps, one process, on all 16 rows: the parameters DDP must match."""
    import torch

    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.linspace(-1, 1, 64).reshape(16, 4)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]]) + 0.25
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()
    return [p.detach().flatten() for p in model.parameters()]


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is not installed")
def test_a_4_replica_ddp_job_spread_over_nodes_matches_one_process(
    api: httpx.Client, ray_cluster: RayCluster
) -> None:
    import torch

    ns = f"t-{uuid.uuid4().hex[:8]}"

    def replica(count: int) -> dict[str, Any]:
        return {
            "replicas": count,
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
        "spec": {"pytorchReplicaSpecs": {"Master": replica(1), "Worker": replica(3)}},
    }
    apply(api, ns, manifest)
    wait_for_job(api, "PyTorchJob", ns, "ddp", "Succeeded", timeout=400)
    found = pods(api, ns, "training.kubeflow.org/job-name=ddp")
    assert len(found) == 4
    nodes = {pod["spec"]["nodeName"] for pod in found}
    assert len(nodes) >= 2 and nodes <= set(ray_cluster.nodes)  # SPREAD over the 3 nodes
    logs = {
        pod["metadata"]["name"]: api.get(
            f"/api/v1/namespaces/{ns}/pods/{pod['metadata']['name']}/log"
        ).text
        for pod in found
    }
    ranks = set()
    for log in logs.values():
        line = next(li for li in log.splitlines() if li.startswith("rank "))
        assert line.endswith("/4 master 127.0.0.1"), log
        ranks.add(line.split()[1])
    assert ranks == {"0/4", "1/4", "2/4", "3/4"}
    master = next(log for name, log in logs.items() if "-master-" in name)
    printed = next(li for li in master.splitlines() if li.startswith("weights "))
    trained = [torch.tensor(values) for values in json.loads(printed.split(" ", 1)[1])]
    expected = train_in_one_process()
    assert len(trained) == len(expected) == 2
    for got, want in zip(trained, expected, strict=True):
        assert torch.allclose(got, want, atol=1e-6), (got, want)
    assert not torch.allclose(expected[0], train_in_one_process(steps=0)[0])  # it trained
    api.delete(f"/apis/kubeflow.org/v1/namespaces/{ns}/pytorchjobs/ddp")
