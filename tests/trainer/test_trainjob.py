"""TrainJobs (Kubeflow Trainer v1alpha1) through a real ``ketch up``: real torchrun, real HTTP."""

from __future__ import annotations

import functools
import http.server
import json
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.server.helpers import Server, base_env, ketch_command
from tests.waiting import poll

PY = sys.executable
TRAINER = "/apis/trainer.kubeflow.org/v1alpha1"


@pytest.fixture
def ns(client: httpx.Client) -> Iterator[str]:
    """A namespace of the test's own; its TrainJobs (and their processes) and runtimes go at the end."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    yield name
    for plural in ("trainjobs", "trainingruntimes"):
        items = client.get(f"{TRAINER}/namespaces/{name}/{plural}").json().get("items", [])
        for item in items:
            client.delete(f"{TRAINER}/namespaces/{name}/{plural}/{item['metadata']['name']}")


def path(plural: str, ns: str, name: str | None = None) -> str:
    base = f"{TRAINER}/namespaces/{ns}/{plural}"
    return f"{base}/{name}" if name else base


def create(client: httpx.Client, ns: str, manifest: dict[str, Any]) -> dict[str, Any]:
    plural = {"TrainJob": "trainjobs", "TrainingRuntime": "trainingruntimes"}[manifest["kind"]]
    manifest = {**manifest, "metadata": {**manifest["metadata"], "namespace": ns}}
    response = client.post(path(plural, ns), json=manifest)
    assert response.status_code == 201, response.text
    return dict(response.json())


def trainjob(name: str, runtime: str = "torch-distributed", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "trainer.kubeflow.org/v1alpha1",
        "kind": "TrainJob",
        "metadata": {"name": name},
        "spec": {"runtimeRef": {"name": runtime}, **spec},
    }


def condition(job: dict[str, Any], type_: str) -> dict[str, Any] | None:
    for c in job.get("status", {}).get("conditions", []):
        if c["type"] == type_:
            return dict(c)
    return None


def wait_for(
    client: httpx.Client, ns: str, name: str, type_: str, timeout: float = 90.0
) -> dict[str, Any]:
    """The TrainJob once condition ``type_`` is True (fails early on the other terminal one)."""
    job: dict[str, Any] = {}

    def reached() -> bool:
        nonlocal job
        job = client.get(path("trainjobs", ns, name)).json()
        found = condition(job, type_)
        if found and found["status"] == "True":
            return True
        other = condition(job, "Failed" if type_ != "Failed" else "Complete")
        if other and other["status"] == "True" and type_ in ("Complete", "Failed"):
            raise AssertionError(f"{name} ended {other['type']}: {job['status']}")
        return False

    if not poll(reached, timeout, 0.1):
        raise AssertionError(f"{name} never reached {type_}: {job.get('status')}")
    return job


def jobs(job: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {j["name"]: j for j in job["status"]["jobsStatus"]}


ALLREDUCE = textwrap.dedent(
    """
    import json, os, sys
    import torch
    import torch.distributed as dist

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    value = torch.tensor([float(rank)])
    dist.all_reduce(value)
    out = {"rank": rank, "world": world, "sum": value.item(),
           "local_rank": int(os.environ["LOCAL_RANK"]), "node": int(os.environ["GROUP_RANK"])}
    with open(os.path.join(sys.argv[1], f"rank{rank}.json"), "w") as f:
        json.dump(out, f)
    if rank == 0:
        status = os.environ["KUBEFLOW_TRAINER_STATUS_FILE"]
        with open(status + ".tmp", "w") as f:
            json.dump({"progressPercentage": 100, "metrics": {"loss": 0.25, "world": world}}, f)
        os.replace(status + ".tmp", status)
    print("rank", rank, "of", world, "sum", value.item())
    dist.destroy_process_group()
    """
)


def test_torch_distributed_two_nodes_two_procs(
    client: httpx.Client, ns: str, tmp_path: Path
) -> None:
    script = tmp_path / "allreduce.py"
    script.write_text(ALLREDUCE)
    out = tmp_path / "out"
    out.mkdir()
    job = trainjob(
        "ddp",
        trainer={
            "image": "pytorch/pytorch:2.7.1-cuda12.8-cudnn9-runtime",
            "command": ["python", str(script), str(out)],
            "numNodes": 2,
            "numProcPerNode": 2,
        },
    )
    create(client, ns, job)
    done = wait_for(client, ns, "ddp", "Complete", timeout=120)
    complete = condition(done, "Complete")
    assert complete is not None and complete["reason"] == "AllJobsCompleted"
    assert condition(done, "Created")["reason"] == "JobsCreationSucceeded"  # type: ignore[index]
    results = [json.loads((out / f"rank{r}.json").read_text()) for r in range(4)]
    assert {r["rank"] for r in results} == {0, 1, 2, 3}
    assert all(r["world"] == 4 and r["sum"] == 6.0 for r in results)
    assert sorted((r["node"], r["local_rank"]) for r in results) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    status = done["status"]
    assert jobs(done)["node"] == {
        "name": "node",
        "ready": 0,
        "succeeded": 1,
        "failed": 0,
        "active": 0,
        "suspended": 0,
    }
    assert set(status["logPaths"]) == {"node-0", "node-1"}
    trainer_status = status["trainerStatus"]
    assert trainer_status["progressPercentage"] == 100 and trainer_status["lastUpdatedTime"]
    assert {"name": "loss", "value": "0.25"} in trainer_status["metrics"]
    assert {"name": "world", "value": "4"} in trainer_status["metrics"]
    log = client.get(path("trainjobs", ns, "ddp") + "/log", params={"replica": "node-1"})
    assert log.status_code == 200 and "of 4 sum 6.0" in log.text
    reasons = [e["reason"] for e in client.get(f"/api/v1/namespaces/{ns}/events").json()["items"]]
    assert "ImageNotUsed" in reasons and "RuntimeResolved" in reasons


def _env_dump(marker: Path) -> list[str]:
    code = "import json, os, sys; json.dump(dict(os.environ), open(sys.argv[1], 'w'))"
    return ["python3", "-c", code, str(marker)]


def test_runtime_kind_defaults_to_the_cluster_runtime(
    client: httpx.Client, ns: str, tmp_path: Path
) -> None:
    local = {
        "apiVersion": "trainer.kubeflow.org/v1alpha1",
        "kind": "TrainingRuntime",
        "metadata": {"name": "torch-distributed"},
        "spec": {
            "mlPolicy": {"numNodes": 1},
            "template": {
                "spec": {
                    "replicatedJobs": [
                        {
                            "name": "node",
                            "template": {
                                "metadata": {
                                    "labels": {
                                        "trainer.kubeflow.org/trainjob-ancestor-step": "trainer"
                                    }
                                },
                                "spec": {
                                    "template": {
                                        "spec": {
                                            "containers": [
                                                {
                                                    "name": "node",
                                                    "image": "busybox",
                                                    "command": _env_dump(tmp_path / "local.json"),
                                                }
                                            ]
                                        }
                                    }
                                },
                            },
                        }
                    ]
                }
            },
        },
    }
    create(client, ns, local)
    local_job = trainjob("local")
    local_job["spec"]["runtimeRef"]["kind"] = "TrainingRuntime"
    create(client, ns, local_job)
    done = wait_for(client, ns, "local", "Complete")
    env = json.loads((tmp_path / "local.json").read_text())
    assert "PET_NNODES" not in env and env["KETCH_WORKSPACE_DIR"].endswith(f"/{ns}/local")
    assert jobs(done)["node"]["succeeded"] == 1
    # runtimeRef.kind left out: ClusterTrainingRuntime, as in Kubeflow
    default = trainjob("default-kind", trainer={"command": _env_dump(tmp_path / "cluster.json")})
    create(client, ns, default)
    wait_for(client, ns, "default-kind", "Complete")
    env = json.loads((tmp_path / "cluster.json").read_text())
    assert (
        env["PET_NNODES"] == env["PET_NPROC_PER_NODE"] == "1"
        and env["PET_MASTER_ADDR"] == "127.0.0.1"
    )
    assert "WORLD_SIZE" not in env  # 'python -c' is not a script torchrun can start: it runs as is


ENV_BY_PID = "import json, os, sys; json.dump(dict(os.environ), open(f'{sys.argv[1]}/{os.getpid()}.json', 'w'))"


@pytest.mark.parametrize("runtime", ["jax-distributed", "xgboost-distributed", "mpi-distributed"])
def test_builtin_runtime_env(client: httpx.Client, ns: str, tmp_path: Path, runtime: str) -> None:
    name = runtime.split("-")[0]
    job = trainjob(
        name,
        runtime=runtime,
        trainer={"command": ["python", "-c", ENV_BY_PID, str(tmp_path)], "numNodes": 2},
    )
    create(client, ns, job)
    done = wait_for(client, ns, name, "Complete")
    envs = sorted(
        (json.loads(p.read_text()) for p in tmp_path.glob("*.json")),
        key=lambda e: e.get("JAX_PROCESS_ID", e.get("DMLC_TASK_ID", "")),
    )
    if runtime == "jax-distributed":
        assert [e["JAX_PROCESS_ID"] for e in envs] == ["0", "1"]
        assert all(
            e["JAX_NUM_PROCESSES"] == "2" and e["JAX_DISTRIBUTED_BACKEND"] == "gloo" for e in envs
        )
        assert envs[0]["JAX_COORDINATOR_ADDRESS"] == f"127.0.0.1:{envs[1]['JAX_COORDINATOR_PORT']}"
    elif runtime == "xgboost-distributed":
        assert [e["DMLC_TASK_ID"] for e in envs] == ["0", "1"]
        assert all(
            e["DMLC_NUM_WORKER"] == "2" and e["DMLC_TRACKER_URI"] == "127.0.0.1" for e in envs
        )
    else:  # the launcher runs the command; the nodes idle, holding their place
        # for the ranks its remote shell starts (here, on this machine)
        assert len(envs) == 1 and list(jobs(done)) == ["launcher", "node"]
        assert not jobs(done)["node"].get("failed"), jobs(done)
        hostfile = Path(envs[0]["OMPI_MCA_orte_default_hostfile"]).read_text()
        assert hostfile == "mpi-node-0-0.mpi slots=1\nmpi-node-0-1.mpi slots=1\n"
        agent = Path(envs[0]["OMPI_MCA_plm_rsh_agent"])
        shell = subprocess.run(
            [str(agent), "mpi-node-0-1.mpi", "echo", "here"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert shell.stdout.strip() == "here"


@pytest.fixture
def http_files(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A local HTTP server on 127.0.0.1 serving a directory: ``(base URL, directory)``."""
    root = tmp_path / "served"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


READ_WORKSPACE = textwrap.dedent(
    """
    import os, sys
    data = open(sys.argv[1]).read()
    model = open(os.path.join(os.environ["KETCH_WORKSPACE_DIR"], "model", "weights.bin"), "rb").read()
    open(sys.argv[2], "w").write(f"{data.strip()}|{model.decode()}|{os.environ['RANK']}")
    open(sys.argv[2] + ".workspace", "w").write(os.environ["KETCH_WORKSPACE_DIR"])
    """
)


def test_initializers_copy_file_and_download_http(
    client: httpx.Client, ns: str, tmp_path: Path, http_files: tuple[str, Path]
) -> None:
    base, served = http_files
    (served / "weights.bin").write_bytes(b"W42")
    dataset = tmp_path / "dataset"
    (dataset / "sub").mkdir(parents=True)
    (dataset / "train.csv").write_text("x,y\n1,2\n")
    (dataset / "sub" / "extra.txt").write_text("more")
    script = tmp_path / "read.py"
    script.write_text(READ_WORKSPACE)
    result = tmp_path / "result.txt"
    job = trainjob(
        "init",
        initializer={
            "dataset": {"storageUri": dataset.as_uri()},
            "model": {"storageUri": f"{base}/weights.bin"},
        },
        trainer={"command": ["python", str(script), "/workspace/dataset/train.csv", str(result)]},
    )
    create(client, ns, job)
    done = wait_for(client, ns, "init", "Complete")
    assert result.read_text() == "x,y\n1,2|W42|0"
    statuses = jobs(done)
    assert list(statuses) == ["dataset-initializer", "model-initializer", "node"]
    assert all(s["succeeded"] == 1 for s in statuses.values())
    assert {"dataset-initializer-0", "model-initializer-0", "node-0"} <= set(
        done["status"]["logPaths"]
    )
    log = client.get(
        path("trainjobs", ns, "init") + "/log", params={"replica": "model-initializer-0"}
    )
    assert "weights.bin" in log.text
    workspace = Path(Path(f"{result}.workspace").read_text())
    assert (workspace / "dataset" / "sub" / "extra.txt").read_text() == "more"
    assert client.delete(path("trainjobs", ns, "init")).status_code == 200
    poll(lambda: not workspace.exists(), 20)  # the workspace goes with the job
    assert not workspace.exists()


def test_initializer_without_network_fails_clearly(
    client: httpx.Client, ns: str, tmp_path: Path
) -> None:
    ran = tmp_path / "ran"
    job = trainjob(
        "hf",
        initializer={"model": {"storageUri": "hf://meta-llama/Llama-3.2-1B-Instruct"}},
        trainer={"command": ["python", "-c", "open(__import__('sys').argv[1], 'w')", str(ran)]},
    )
    create(client, ns, job)
    done = wait_for(client, ns, "hf", "Failed")
    failed = condition(done, "Failed")
    assert failed is not None and failed["reason"] == "FailedJobs"
    assert "model-initializer-0 exited with code 1" in failed["message"]
    assert "huggingface_hub" in failed["message"] and "file://" in failed["message"]
    assert not ran.exists()  # the trainer never started
    assert jobs(done)["node"] == {
        "name": "node",
        "ready": 0,
        "succeeded": 0,
        "failed": 0,
        "active": 0,
        "suspended": 0,
    }


def test_failing_node_fails_with_its_error(client: httpx.Client, ns: str, tmp_path: Path) -> None:
    script = tmp_path / "boom.py"
    script.write_text(
        "import os\nif os.environ['RANK'] == '1':\n    raise ValueError('boom on rank 1')\n"
    )
    job = trainjob("boom", trainer={"command": ["python", str(script)], "numNodes": 2})
    create(client, ns, job)
    done = wait_for(client, ns, "boom", "Failed")
    failed = condition(done, "Failed")
    assert failed is not None and failed["reason"] == "FailedJobs"
    assert "node-1 exited with code 1" in failed["message"]
    assert "ValueError: boom on rank 1" in failed["message"]
    assert jobs(done)["node"]["failed"] == 1 and jobs(done)["node"]["active"] == 0


def test_suspend_then_resume(client: httpx.Client, ns: str, tmp_path: Path) -> None:
    ran = tmp_path / "ran"
    job = trainjob(
        "held",
        suspend=True,
        trainer={"command": ["python", "-c", "import sys; open(sys.argv[1], 'w')", str(ran)]},
    )
    create(client, ns, job)
    held = wait_for(client, ns, "held", "Suspended")
    suspended = condition(held, "Suspended")
    assert suspended is not None and suspended["reason"] == "Suspended"
    assert jobs(held)["node"]["suspended"] == 1 and "logPaths" not in held["status"]
    time.sleep(0.5)
    assert not ran.exists()
    current = client.get(path("trainjobs", ns, "held")).json()
    current["spec"]["suspend"] = False
    response = client.put(path("trainjobs", ns, "held"), json=current)
    assert response.status_code == 200, response.text
    done = wait_for(client, ns, "held", "Complete")
    assert ran.exists()
    resumed = condition(done, "Suspended")
    assert resumed is not None and resumed["status"] == "False" and resumed["reason"] == "Resumed"
    assert jobs(done)["node"]["suspended"] == 0


def test_active_deadline_fails(client: httpx.Client, ns: str, tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    sleeper = (
        "import os, sys, time; open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(120)"
    )
    job = trainjob(
        "late",
        activeDeadlineSeconds=2,
        trainer={"command": ["python", "-c", sleeper, str(pid_file)]},
    )
    create(client, ns, job)
    done = wait_for(client, ns, "late", "Failed")
    failed = condition(done, "Failed")
    assert failed is not None and failed["reason"] == "DeadlineExceeded"
    assert "activeDeadlineSeconds" in failed["message"]
    assert jobs(done)["node"]["active"] == 0
    if pid_file.exists():  # the process it had started is gone
        pid = int(pid_file.read_text())
        poll(lambda: not _alive(pid), 20)
        assert not _alive(pid)


def _alive(pid: int) -> bool:
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_unknown_runtime_fails_with_message(client: httpx.Client, ns: str) -> None:
    create(
        client,
        ns,
        trainjob("lost", runtime="no-such-runtime", trainer={"command": ["python", "-c", "pass"]}),
    )
    failed = condition(wait_for(client, ns, "lost", "Failed"), "Failed")
    assert failed is not None and failed["reason"] == "TrainingRuntimeNotFound"
    assert "'no-such-runtime' not found" in failed["message"]
    assert "torch-distributed" in failed["message"]  # what exists instead


def test_invalid_trainjob_is_refused(client: httpx.Client, ns: str) -> None:
    job = trainjob("bad", trainer={"numNodes": 0, "command": ["python", "-c", "pass"]})
    response = client.post(
        path("trainjobs", ns), json={**job, "metadata": {"name": "bad", "namespace": ns}}
    )
    assert response.status_code == 422 and "spec.trainer.numNodes" in response.text


def test_kubeflow_docs_manifest_is_accepted(
    server: Server, client: httpx.Client, ns: str, tmp_path: Path
) -> None:
    """Kubeflow Trainer's PyTorch MNIST example, its script made local (the image is kept, not run)."""
    script = tmp_path / "mnist.py"
    script.write_text(
        "import argparse, os\n"
        "p = argparse.ArgumentParser(); p.add_argument('--epochs', type=int); p.add_argument('--batch-size', type=int)\n"
        "p.add_argument('--lr', type=float); p.add_argument('--log-interval', type=int)\n"
        "a = p.parse_args(); print('epochs', a.epochs, 'lr', a.lr, 'world', os.environ['WORLD_SIZE'])\n"
    )
    doc = {
        "apiVersion": "trainer.kubeflow.org/v1alpha1",
        "kind": "TrainJob",
        "metadata": {
            "name": "pytorch-mnist",
            "namespace": ns,
            "labels": {"app": "pytorch-training", "dataset": "mnist"},
        },
        "spec": {
            "runtimeRef": {
                "apiGroup": "trainer.kubeflow.org",
                "kind": "ClusterTrainingRuntime",
                "name": "torch-distributed",
            },
            "trainer": {
                "numNodes": 1,
                "image": "docker.io/kubeflowkatib/pytorch-mnist:v1beta1-45c5727",
                "command": [
                    "python3",
                    str(script),
                    "--epochs=1",
                    "--batch-size=64",
                    "--lr=0.01",
                    "--log-interval=10",
                ],
            },
        },
    }
    create(client, ns, doc)
    done = wait_for(client, ns, "pytorch-mnist", "Complete")
    assert (
        done["spec"]["trainer"]["image"] == "docker.io/kubeflowkatib/pytorch-mnist:v1beta1-45c5727"
    )
    assert done["metadata"]["labels"] == {"app": "pytorch-training", "dataset": "mnist"}
    env = {**base_env(server.home), "KETCH_URL": server.url}
    logs = subprocess.run(
        [*ketch_command(), "logs", "trainjob", "pytorch-mnist", "--replica", "node-0", "-n", ns],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert logs.returncode == 0, logs.stderr
    assert "epochs 1 lr 0.01 world 1" in logs.stdout


def test_cli_lists_builtin_runtimes(server: Server) -> None:
    env = {**base_env(server.home), "KETCH_URL": server.url}
    listed = subprocess.run(
        [*ketch_command(), "get", "clustertrainingruntimes"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listed.returncode == 0, listed.stderr
    for name in ("torch-distributed", "jax-distributed", "xgboost-distributed", "mpi-distributed"):
        assert name in listed.stdout
    shown = subprocess.run(
        [*ketch_command(), "get", "clustertrainingruntime", "torch-distributed", "-o", "json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    runtime = json.loads(shown.stdout)
    assert runtime["spec"]["mlPolicy"]["torch"]["numProcPerNode"] == "auto"
    assert runtime["metadata"]["labels"]["trainer.kubeflow.org/framework"] == "torch"
