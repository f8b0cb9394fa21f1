"""Training jobs through a real ``ketch up``: real processes, real torch."""

from __future__ import annotations

import json
import os
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx

from tests.jobs.conftest import apply, condition, manifest, path, replica, wait_for
from tests.waiting import poll

PY = sys.executable

DDP_SCRIPT = """
import json, os, sys
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
torch.manual_seed(0)
x = torch.randn(64, 5)
y = x @ torch.arange(1.0, 6.0).unsqueeze(1) + 0.5
model = torch.nn.Linear(5, 1)
ddp = DDP(model)
opt = torch.optim.SGD(ddp.parameters(), lr=0.05)
shard = 64 // world
for _ in range(20):
    opt.zero_grad()
    xs, ys = x[rank * shard:(rank + 1) * shard], y[rank * shard:(rank + 1) * shard]
    torch.nn.functional.mse_loss(ddp(xs), ys).backward()
    opt.step()
out = {"weight": model.weight.detach().flatten().tolist(), "bias": model.bias.item(),
       "world": world, "rank": rank}
with open(os.path.join(sys.argv[1], f"rank{rank}.json"), "w") as f:
    json.dump(out, f)
dist.destroy_process_group()
"""


def single_process_weights() -> list[float]:
    import torch

    torch.manual_seed(0)
    x = torch.randn(64, 5)
    y = x @ torch.arange(1.0, 6.0).unsqueeze(1) + 0.5
    model = torch.nn.Linear(5, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(20):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()
    return [*model.weight.detach().flatten().tolist(), model.bias.item()]


def test_pytorchjob_ddp_matches_single_process(
    client: httpx.Client, ns: str, tmp_path: Path
) -> None:
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT)
    command = [PY, str(script), str(tmp_path)]
    job = manifest("PyTorchJob", "ddp", {"Master": replica(command), "Worker": replica(command, 3)})
    apply(client, ns, job)
    done = wait_for(client, "PyTorchJob", ns, "ddp", "Succeeded", timeout=90)
    status = done["status"]
    assert condition(done, "Succeeded")["reason"] == "PyTorchJobSucceeded"
    assert condition(done, "Created")["reason"] == "PyTorchJobCreated"
    assert status["startTime"] and status["completionTime"]
    assert status["replicaStatuses"]["Master"] == {"succeeded": 1}
    assert set(status["logPaths"]) == {
        "ddp-master-0",
        "ddp-worker-0",
        "ddp-worker-1",
        "ddp-worker-2",
    }
    deadline = time.monotonic() + 30  # the master decides; workers may still be finishing
    while len(list(tmp_path.glob("rank*.json"))) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    expected = single_process_weights()
    for rank in range(4):
        got = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert got["world"] == 4 and got["rank"] == rank
        assert all(
            abs(a - b) < 1e-6 for a, b in zip([*got["weight"], got["bias"]], expected, strict=True)
        )
    reasons = [e["reason"] for e in client.get(f"/api/v1/namespaces/{ns}/events").json()["items"]]
    assert "SuccessfulCreatePod" in reasons and "ImageNotUsed" in reasons


ENV_DUMP = "import json, os, sys; json.dump(dict(os.environ), open(sys.argv[1] + '/' + sys.argv[2] + '.json', 'w'))"


def dump_env(tmp_path: Path, tag: str) -> list[str]:
    return [PY, "-c", ENV_DUMP, str(tmp_path), tag]


def test_pytorchjob_env_and_logs(client: httpx.Client, ns: str, tmp_path: Path) -> None:
    env_script = (
        "import json, os, sys; print('hello from', os.environ['RANK']);"
        "json.dump(dict(os.environ), open(sys.argv[1] + '/' + os.environ['RANK'] + '.json', 'w'))"
    )
    command = [PY, "-c", env_script, str(tmp_path)]
    job = manifest(
        "PyTorchJob",
        "envs",
        {
            "Master": replica(command, env=[{"name": "MINE", "value": "x"}]),
            "Worker": replica(command, 2),
        },
    )
    apply(client, ns, job)
    wait_for(client, "PyTorchJob", ns, "envs", "Succeeded")
    deadline = time.monotonic() + 30  # the master decides; workers may still be finishing
    while len(list(tmp_path.glob("*.json"))) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    envs = [json.loads((tmp_path / f"{r}.json").read_text()) for r in range(3)]
    for rank, env in enumerate(envs):
        assert env["RANK"] == env["PET_NODE_RANK"] == str(rank)
        assert env["WORLD_SIZE"] == env["PET_NNODES"] == "3"
        assert env["PET_NPROC_PER_NODE"] == "1" and env["PYTHONUNBUFFERED"] == "1"
        assert env["MASTER_ADDR"] == env["PET_MASTER_ADDR"] == "127.0.0.1"
        assert env["MASTER_PORT"] == env["PET_MASTER_PORT"] == envs[0]["MASTER_PORT"]
    assert envs[0]["MINE"] == "x"
    logs = client.get(path("PyTorchJob", ns, "envs") + "/log", params={"replica": "envs-worker-1"})
    assert logs.status_code == 200 and "hello from 2" in logs.text


def test_elastic_pytorchjob_env(client: httpx.Client, ns: str, tmp_path: Path) -> None:
    job = manifest(
        "PyTorchJob",
        "elastic",
        {"Worker": replica(dump_env(tmp_path, "w"), 1)},
        elasticPolicy={"rdzvBackend": "c10d", "minReplicas": 1, "maxReplicas": 3, "maxRestarts": 2},
    )
    apply(client, ns, job)
    wait_for(client, "PyTorchJob", ns, "elastic", "Succeeded")
    env = json.loads((tmp_path / "w.json").read_text())
    assert env["PET_NNODES"] == "1:3" and env["PET_RDZV_BACKEND"] == "c10d"
    assert env["PET_RDZV_ENDPOINT"].startswith("127.0.0.1:") and env["PET_MAX_RESTARTS"] == "2"
    assert env["PET_RDZV_ID"] == "elastic"


def test_tfjob_tf_config(client: httpx.Client, ns: str, tmp_path: Path) -> None:
    script = (
        "import os, sys, json; c = json.loads(os.environ['TF_CONFIG']);"
        "open(sys.argv[1] + '/' + c['task']['type'] + str(c['task']['index']) + '.json', 'w')"
        ".write(os.environ['TF_CONFIG'])"
    )
    command = [PY, "-c", script, str(tmp_path)]
    job = manifest(
        "TFJob",
        "tf",
        {"Chief": replica(command), "PS": replica(command), "Worker": replica(command, 2)},
    )
    apply(client, ns, job)
    done = wait_for(client, "TFJob", ns, "tf", "Succeeded")
    assert condition(done, "Succeeded")["reason"] == "TFJobSucceeded"
    # the chief decides; the other replicas (cleanPodPolicy None) may still be finishing
    deadline = time.monotonic() + 30
    while len(list(tmp_path.glob("*.json"))) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    configs = {p.stem: json.loads(p.read_text()) for p in tmp_path.glob("*.json")}
    assert set(configs) == {"chief0", "ps0", "worker0", "worker1"}
    cluster = configs["chief0"]["cluster"]
    assert set(cluster) == {"chief", "ps", "worker"} and len(cluster["worker"]) == 2
    addresses = [a for v in cluster.values() for a in v]
    assert len(set(addresses)) == 4 and all(a.startswith("127.0.0.1:") for a in addresses)
    for tag, config in configs.items():
        assert config["cluster"] == cluster and config["environment"] == "cloud"
        assert f"{config['task']['type']}{config['task']['index']}" == tag


def test_xgboostjob_env(client: httpx.Client, ns: str, tmp_path: Path) -> None:
    job = manifest(
        "XGBoostJob",
        "xgb",
        {"Master": replica(dump_env(tmp_path, "m")), "Worker": replica([PY, "-c", "pass"], 2)},
    )
    apply(client, ns, job)
    wait_for(client, "XGBoostJob", ns, "xgb", "Succeeded")
    env = json.loads((tmp_path / "m.json").read_text())
    assert env["RANK"] == "0" and env["WORLD_SIZE"] == "3" and env["MASTER_ADDR"] == "127.0.0.1"
    assert env["MASTER_PORT"].isdigit() and env["WORKER_PORT"].isdigit()
    assert env["WORKER_ADDRS"] == "127.0.0.1,127.0.0.1"


def test_jaxjob_env(client: httpx.Client, ns: str, tmp_path: Path) -> None:
    script = "import os, sys; open(sys.argv[1] + '/' + os.environ['PROCESS_ID'], 'w').write(os.environ['NUM_PROCESSES'] + ' ' + os.environ['COORDINATOR_ADDRESS'])"
    apply(
        client,
        ns,
        manifest("JAXJob", "jax", {"Worker": replica([PY, "-c", script, str(tmp_path)], 2)}),
    )
    wait_for(client, "JAXJob", ns, "jax", "Succeeded")
    assert (tmp_path / "0").read_text() == (tmp_path / "1").read_text() == "2 127.0.0.1"


def test_mpijob_hostfile(client: httpx.Client, ns: str, tmp_path: Path) -> None:
    script = (
        "import os, sys, shutil; shutil.copy(os.environ['OMPI_MCA_orte_default_hostfile'], sys.argv[1] + '/hostfile');"
        "open(sys.argv[1] + '/agent', 'w').write(os.environ['OMPI_MCA_plm_rsh_agent'])"
    )
    job = manifest(
        "MPIJob",
        "mpi",
        {
            "Launcher": replica([PY, "-c", script, str(tmp_path)]),
            "Worker": replica([PY, "-c", "import time; time.sleep(60)"], 2),
        },
        slotsPerWorker=2,
        runPolicy={"cleanPodPolicy": "Running"},
    )
    apply(client, ns, job)
    done = wait_for(client, "MPIJob", ns, "mpi", "Succeeded")
    assert (tmp_path / "hostfile").read_text() == "mpi-worker-0 slots=2\nmpi-worker-1 slots=2\n"
    assert os.access((tmp_path / "agent").read_text(), os.X_OK)
    assert "active" not in done["status"]["replicaStatuses"]["Worker"]


def test_exit_code_137_restarts_then_succeeds(
    client: httpx.Client, ns: str, tmp_path: Path
) -> None:
    script = textwrap.dedent(
        """
        import os, sys
        marker = sys.argv[1] + '/tried'
        if not os.path.exists(marker):
            open(marker, 'w').close()
            sys.exit(137)
        """
    )
    # the master runs until the test releases it, after the worker's restart
    master = [
        PY,
        "-c",
        "import os, time, sys\nwhile not os.path.exists(sys.argv[1] + '/release'): time.sleep(0.05)",
        str(tmp_path),
    ]
    job = manifest(
        "PyTorchJob",
        "retry",
        {
            "Master": replica(master),
            "Worker": replica([PY, "-c", script, str(tmp_path)], restartPolicy="ExitCode"),
        },
    )
    apply(client, ns, job)

    def running_again() -> dict[str, Any] | None:
        found = client.get(path("PyTorchJob", ns, "retry")).json()
        restarting = condition(found, "Restarting")
        running = condition(found, "Running")
        again = restarting and restarting["status"] == "False" and running["status"] == "True"
        return found if again else None

    # running after the restart: Running is the last condition (the State column)
    again = poll(running_again, 60, 0.05)
    assert again, client.get(path("PyTorchJob", ns, "retry")).json()["status"]
    assert last_condition(again) == "Running"
    (tmp_path / "release").touch()
    done = wait_for(client, "PyTorchJob", ns, "retry", "Succeeded")
    assert condition(done, "Restarting") is not None  # it was restarting once
    assert last_condition(done) == "Succeeded"
    events = client.get(f"/api/v1/namespaces/{ns}/events").json()["items"]
    assert any(e["reason"] == "PyTorchJobRestarting" for e in events)


def test_exit_code_1_fails(client: httpx.Client, ns: str) -> None:
    job = manifest(
        "PyTorchJob",
        "fatal",
        {"Master": replica([PY, "-c", "import sys; sys.exit(1)"], restartPolicy="ExitCode")},
    )
    apply(client, ns, job)
    done = wait_for(client, "PyTorchJob", ns, "fatal", "Failed")
    failed = condition(done, "Failed")
    assert (
        failed["reason"] == "PyTorchJobFailed" and "Master replica(s) failed" in failed["message"]
    )
    assert done["status"]["replicaStatuses"]["Master"] == {"failed": 1}


def test_backoff_limit_fails(client: httpx.Client, ns: str) -> None:
    job = manifest(
        "PyTorchJob",
        "backoff",
        {"Master": replica([PY, "-c", "import sys; sys.exit(3)"], restartPolicy="OnFailure")},
        runPolicy={"backoffLimit": 2},
    )
    apply(client, ns, job)
    failed = condition(wait_for(client, "PyTorchJob", ns, "backoff", "Failed"), "Failed")
    assert failed["reason"] == "PyTorchJobFailed" and "backoff limit" in failed["message"]


def test_active_deadline_fails(client: httpx.Client, ns: str) -> None:
    job = manifest(
        "TFJob",
        "deadline",
        {"Worker": replica([PY, "-c", "import time; time.sleep(60)"])},
        runPolicy={"activeDeadlineSeconds": 1},
    )
    apply(client, ns, job)
    done = wait_for(client, "TFJob", ns, "deadline", "Failed")
    failed = condition(done, "Failed")
    assert failed["reason"] == "TFJobFailed" and "deadline" in failed["message"]
    assert "active" not in done["status"]["replicaStatuses"]["Worker"]


def test_suspend_then_resume(client: httpx.Client, ns: str, tmp_path: Path) -> None:
    # it runs until the test releases it
    code = (
        "import os, sys, time\nopen(sys.argv[1] + '/ran', 'w')\n"
        "while not os.path.exists(sys.argv[1] + '/release'): time.sleep(0.05)"
    )
    command = [PY, "-c", code, str(tmp_path)]
    job = manifest("PyTorchJob", "held", {"Master": replica(command)}, runPolicy={"suspend": True})
    apply(client, ns, job)
    held = wait_for(client, "PyTorchJob", ns, "held", "Suspended")
    assert condition(held, "Suspended")["reason"] == "PyTorchJobSuspended"
    assert last_condition(held) == "Suspended"  # kubectl get's State
    assert "logPaths" not in held["status"] and not (tmp_path / "ran").exists()
    job["spec"]["runPolicy"]["suspend"] = False
    apply(client, ns, job)
    running = wait_for(client, "PyTorchJob", ns, "held", "Running")
    assert last_condition(running) == "Running"
    (tmp_path / "release").touch()
    done = wait_for(client, "PyTorchJob", ns, "held", "Succeeded")
    assert (tmp_path / "ran").exists()
    assert condition(done, "Suspended")["status"] == "False"
    assert last_condition(done) == "Succeeded"


def last_condition(job: dict[str, Any]) -> str:
    """The type of the job's last condition: the State column of ``kubectl get``."""
    return str(job["status"]["conditions"][-1]["type"])


def test_jobs_queue_when_cpus_run_out(client: httpx.Client, ns: str) -> None:
    cpus = len(os.sched_getaffinity(0))
    request = {"requests": {"cpu": str(cpus * 0.75)}}
    command = [PY, "-c", "import time; time.sleep(1.5)"]
    for name in ("first", "second"):
        apply(
            client,
            ns,
            manifest("PyTorchJob", name, {"Master": replica(command, resources=request)}),
        )
    first = wait_for(client, "PyTorchJob", ns, "first", "Succeeded")
    second = wait_for(client, "PyTorchJob", ns, "second", "Succeeded")
    assert second["status"]["startTime"] >= first["status"]["completionTime"]
    events = client.get(f"/api/v1/namespaces/{ns}/events").json()["items"]
    assert any(e["reason"] == "WaitingForResources" for e in events)


def test_delete_stops_processes(client: httpx.Client, ns: str, tmp_path: Path) -> None:
    command = [
        PY,
        "-c",
        "import os, sys, time; open(sys.argv[1] + '/' + os.environ['RANK'], 'w').write(str(os.getpid())); time.sleep(60)",
        str(tmp_path),
    ]
    apply(
        client,
        ns,
        manifest("PyTorchJob", "gone", {"Master": replica(command), "Worker": replica(command)}),
    )
    wait_for(client, "PyTorchJob", ns, "gone", "Running")
    deadline = time.monotonic() + 20
    while len(list(tmp_path.iterdir())) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    pids = [int(p.read_text()) for p in tmp_path.iterdir()]
    assert client.delete(path("PyTorchJob", ns, "gone")).status_code == 200
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(_alive(pid) for pid in pids):
        time.sleep(0.05)
    assert not any(_alive(pid) for pid in pids)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_kubeflow_docs_manifest_is_accepted(client: httpx.Client, ns: str, tmp_path: Path) -> None:
    """The PyTorchJob example from Kubeflow's documentation, its python script made local."""
    script = tmp_path / "mnist.py"
    script.write_text("import sys; print('epochs', sys.argv[sys.argv.index('--epochs') + 1])")
    container = {
        "name": "pytorch",
        "image": "docker.io/kubeflowkatib/pytorch-mnist:v1beta1-45c5727",
        "imagePullPolicy": "Always",
        "command": ["python3", str(script), "--epochs=1"],
    }
    container["command"] = ["python3", str(script), "--epochs", "1"]
    spec = {
        "replicas": 1,
        "restartPolicy": "OnFailure",
        "template": {"spec": {"containers": [container]}},
    }
    doc = {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": {"name": "pytorch-simple", "namespace": "kubeflow"},
        "spec": {"pytorchReplicaSpecs": {"Master": spec, "Worker": spec}},
    }
    apply(client, ns, doc)
    done = wait_for(client, "PyTorchJob", ns, "pytorch-simple", "Succeeded")
    assert (
        done["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0][
            "imagePullPolicy"
        ]
        == "Always"
    )
    log = client.get(
        path("PyTorchJob", ns, "pytorch-simple") + "/log",
        params={"replica": "pytorch-simple-worker-0"},
    )
    assert "epochs 1" in log.text
