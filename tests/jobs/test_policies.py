"""Run policies of the kubeflow.org/v1 jobs through a real ``ketch up``: TTL, cleanPodPolicy,
backoff across a server restart, elastic scaling; and the Paddle operator's environment."""

from __future__ import annotations

import json
import os
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest

from tests.jobs.conftest import (
    SHORT_BACKOFF,
    apply,
    condition,
    manifest,
    path,
    replica,
    wait_for,
)
from tests.server.helpers import Server

PY = sys.executable
ENV_BY_PID = "import json, os, sys; json.dump(dict(os.environ), open(f'{sys.argv[1]}/{os.getpid()}.json', 'w'))"


def _envs(folder: Path, count: int) -> list[dict[str, str]]:
    deadline = time.monotonic() + 30  # the deciding replica may finish before the others wrote
    while len(list(folder.glob("*.json"))) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return [json.loads(p.read_text()) for p in folder.glob("*.json")]


def test_paddlejob_collective_env(client: httpx.Client, ns: str, tmp_path: Path) -> None:
    apply(
        client,
        ns,
        manifest(
            "PaddleJob", "collective", {"Worker": replica([PY, "-c", ENV_BY_PID, str(tmp_path)], 2)}
        ),
    )
    wait_for(client, "PaddleJob", ns, "collective", "Succeeded")
    envs = _envs(tmp_path, 2)
    assert len(envs) == 2
    for env in envs:
        assert env["PADDLE_NNODES"] == "2" and env["PADDLE_JOB_ID"] == "collective"
        assert (
            env["PADDLE_MASTER"].startswith("127.0.0.1:")
            and env["PADDLE_MASTER"] == envs[0]["PADDLE_MASTER"]
        )
        assert "PADDLE_SERVER_NUM" not in env and "PADDLE_TRAINER_NUM" not in env
    assert sum("POD_IP_DUMMY" in env for env in envs) == 1  # worker-0 is the rendezvous


def test_paddlejob_ps_env(client: httpx.Client, ns: str, tmp_path: Path) -> None:
    job = manifest(
        "PaddleJob",
        "ps",
        {
            "Master": replica([PY, "-c", ENV_BY_PID, str(tmp_path)]),
            "Worker": replica([PY, "-c", ENV_BY_PID, str(tmp_path)]),
        },
    )
    apply(client, ns, job)
    wait_for(client, "PaddleJob", ns, "ps", "Succeeded")
    envs = _envs(tmp_path, 2)
    servers = [e for e in envs if e.get("PADDLE_SERVER_NUM") == "1"]
    trainers = [e for e in envs if e.get("PADDLE_TRAINER_NUM") == "1"]
    assert len(servers) == 1 and len(trainers) == 1
    assert "POD_IP_DUMMY" in servers[0] and "POD_IP_DUMMY" not in trainers[0]
    assert servers[0]["PADDLE_MASTER"] == trainers[0]["PADDLE_MASTER"]
    assert all(e["PADDLE_NNODES"] == "2" for e in envs)


def test_ttl_deletes_finished_job(client: httpx.Client, ns: str) -> None:
    job = manifest(
        "PyTorchJob",
        "short-lived",
        {"Master": replica([PY, "-c", "pass"])},
        runPolicy={"ttlSecondsAfterFinished": 1},
    )
    apply(client, ns, job)
    wait_for(client, "PyTorchJob", ns, "short-lived", "Succeeded")
    deadline = time.monotonic() + 30
    while (
        client.get(path("PyTorchJob", ns, "short-lived")).status_code == 200
        and time.monotonic() < deadline
    ):
        time.sleep(0.1)
    assert client.get(path("PyTorchJob", ns, "short-lived")).status_code == 404


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("policy", ["Running", "All", "None"])
def test_clean_pod_policy(client: httpx.Client, ns: str, tmp_path: Path, policy: str) -> None:
    """The master decides success; a worker still running is stopped unless the policy is None."""
    pid_file = tmp_path / "worker.pid"
    worker = [
        PY,
        "-c",
        "import os, sys, time; open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(120)",
        str(pid_file),
    ]
    master = [
        PY,
        "-c",
        "import os, sys, time\nwhile not os.path.exists(sys.argv[1]): time.sleep(0.05)",
        str(pid_file),
    ]
    name = f"clean-{policy.lower()}"
    job = manifest(
        "PyTorchJob",
        name,
        {"Master": replica(master), "Worker": replica(worker)},
        runPolicy={"cleanPodPolicy": policy},
    )
    apply(client, ns, job)
    done = wait_for(client, "PyTorchJob", ns, name, "Succeeded")
    pid = int(pid_file.read_text())
    if policy == "None":
        assert _alive(pid) and done["status"]["replicaStatuses"]["Worker"] == {"active": 1}
        assert client.delete(path("PyTorchJob", ns, name)).status_code == 200  # deleting stops it
    deadline = time.monotonic() + 20
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid)
    if policy != "None":
        assert "active" not in done["status"]["replicaStatuses"]["Worker"]


FAIL_TWICE_THEN_HANG = textwrap.dedent(
    """
    import sys, time
    runs = sys.argv[1]
    with open(runs, "a") as f:
        f.write("run\\n")
    if len(open(runs).read().splitlines()) == 2:
        time.sleep(120)  # the server is stopped while this run is going
    sys.exit(1)
    """
)


def test_restart_count_survives_server_restart(tmp_path: Path) -> None:
    """backoffLimit counts the restarts made before a server restart too."""
    runs = tmp_path / "runs"
    job = manifest(
        "PyTorchJob",
        "flaky",
        {"Master": replica([PY, "-c", FAIL_TWICE_THEN_HANG, str(runs)], restartPolicy="OnFailure")},
        runPolicy={"backoffLimit": 2},
    )
    home = tmp_path / "home"
    first = Server(home, extra_env=dict(SHORT_BACKOFF)).start()
    try:
        with first.client() as http:
            apply(http, "default", job)
            deadline = time.monotonic() + 60
            status: dict[str, object] = {}
            while time.monotonic() < deadline:
                status = http.get(path("PyTorchJob", "default", "flaky")).json().get("status", {})
                if (
                    status.get("restartCount") == 1
                    and runs.exists()
                    and len(runs.read_text().splitlines()) == 2
                ):
                    break
                time.sleep(0.1)
            assert status.get("restartCount") == 1, status
    finally:
        assert first.stop() == 0, first.output()[-3000:]
    second = Server(home, extra_env=dict(SHORT_BACKOFF)).start()
    try:
        with second.client() as http:
            done = wait_for(http, "PyTorchJob", "default", "flaky", "Failed", timeout=60)
            failed = condition(done, "Failed")
            assert failed is not None and "backoff limit" in failed["message"]
            assert done["status"]["restartCount"] == 2
            assert (
                len(runs.read_text().splitlines()) == 4
            )  # 1 + 1 restart, then 1 start + 1 restart
            http.delete(path("PyTorchJob", "default", "flaky"))
    finally:
        assert second.stop() == 0, second.output()[-3000:]


ELASTIC = textwrap.dedent(
    """
    import os, sys, time
    import torch
    import torch.distributed as dist

    dist.init_process_group("gloo")
    world, rank = dist.get_world_size(), dist.get_rank()
    open(os.path.join(sys.argv[1], f"seen-{world}-{rank}"), "w").close()
    if world < 2:
        time.sleep(120)  # until a second node joins and the agent restarts this worker
        sys.exit(3)
    total = torch.ones(1)
    dist.all_reduce(total)
    open(os.path.join(sys.argv[1], f"sum-{rank}"), "w").write(str(total.item()))
    dist.destroy_process_group()
    """
)


def test_elastic_pytorchjob_scales_up(client: httpx.Client, ns: str, tmp_path: Path) -> None:
    script = tmp_path / "elastic.py"
    script.write_text(ELASTIC)
    out = tmp_path / "out"
    out.mkdir()
    command = [PY, "-m", "torch.distributed.run", str(script), str(out)]
    job = manifest(
        "PyTorchJob",
        "grow",
        {"Worker": replica(command, 1)},
        elasticPolicy={
            "rdzvBackend": "c10d",
            "minReplicas": 1,
            "maxReplicas": 3,
            "maxRestarts": 3,
            "rdzvConf": [{"key": "last_call_timeout", "value": "1"}],
        },
    )
    apply(client, ns, job)
    deadline = time.monotonic() + 90
    while not (out / "seen-1-0").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert (out / "seen-1-0").exists(), (
        client.get(path("PyTorchJob", ns, "grow")).json().get("status")
    )
    job["spec"]["pytorchReplicaSpecs"]["Worker"]["replicas"] = 2
    apply(client, ns, job)
    done = wait_for(client, "PyTorchJob", ns, "grow", "Succeeded", timeout=120)
    assert {"grow-worker-0", "grow-worker-1"} <= set(done["status"]["logPaths"])
    deadline = time.monotonic() + 30
    while len(list(out.glob("sum-*"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sorted(p.read_text() for p in out.glob("sum-*")) == ["2.0", "2.0"]
    assert (out / "seen-2-0").exists() and (out / "seen-2-1").exists()
    reasons = [e["reason"] for e in client.get(f"/api/v1/namespaces/{ns}/events").json()["items"]]
    assert "ScaledUp" in reasons
