"""MXJob through a real ``ketch up``: the MXNet operator's DMLC_* variables and
MX_CONFIG, read back from real replica processes."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import httpx

from tests.jobs.conftest import apply, condition, manifest, path, replica, wait_for

PY = sys.executable
# each replica prints its environment as one JSON line and saves it under its role
DUMP = (
    "import json, os, sys; env = dict(os.environ); print(json.dumps(env));"
    "open(os.path.join(sys.argv[1], env['DMLC_ROLE'] + env.get('DMLC_WORKER_ID', '')), 'w').write(json.dumps(env))"
)


def test_mxjob_dmlc_env(client: httpx.Client, ns: str, tmp_path: Path) -> None:
    command = [PY, "-c", DUMP, str(tmp_path)]
    # the scheduler decides success: it waits for the others to have written theirs
    scheduler = [
        PY,
        "-c",
        DUMP + "\nimport time\nwhile len(os.listdir(sys.argv[1])) < 4: time.sleep(0.05)",
        str(tmp_path),
    ]
    job = manifest(
        "MXJob",
        "mx",
        {
            "Scheduler": replica(scheduler),
            "Server": replica(command),
            "Worker": replica(command, 2),
        },
        jobMode="MXTrain",
    )
    job["spec"]["mxReplicaSpecs"]["Server"]["template"]["metadata"] = {
        "annotations": {"tuner-server-key": "srv"}
    }
    apply(client, ns, job)
    done = wait_for(client, "MXJob", ns, "mx", "Succeeded")
    assert condition(done, "Succeeded")["reason"] == "MXJobSucceeded"
    assert done["status"]["replicaStatuses"]["Scheduler"] == {"succeeded": 1}
    envs = {p.name: json.loads(p.read_text()) for p in tmp_path.iterdir()}
    assert set(envs) == {"scheduler", "server", "worker0", "worker1"}

    scheduler_config = json.loads(envs["scheduler"]["MX_CONFIG"])
    cluster = scheduler_config["cluster"]
    assert list(cluster) == ["scheduler", "server", "worker"]  # Go's json: sorted map keys
    root = cluster["scheduler"][0]
    assert root["url"] == "127.0.0.1" and isinstance(root["port"], int)
    assert [len(cluster[t]) for t in ("scheduler", "server", "worker")] == [1, 1, 2]
    assert scheduler_config["labels"] == {"scheduler": "", "server": "srv", "worker": ""}

    for tag, env in envs.items():
        role = tag.rstrip("01")
        config = json.loads(env["MX_CONFIG"])
        assert list(config) == ["cluster", "labels", "task"]
        assert config["cluster"] == cluster
        assert config["task"] == {"type": role, "index": int(tag[-1]) if role == "worker" else 0}
        assert env["DMLC_ROLE"] == role
        assert env["DMLC_PS_ROOT_URI"] == "127.0.0.1"
        assert env["DMLC_PS_ROOT_PORT"] == str(root["port"])
        assert env["DMLC_NUM_SERVER"] == "1" and env["DMLC_NUM_WORKER"] == "2"
        assert env["DMLC_USE_KUBERNETES"] == "1"
        assert env.get("DMLC_WORKER_ID") == (tag[-1] if role == "worker" else None)
        assert " " not in env["MX_CONFIG"]  # compact, as the operator writes it
    log = client.get(path("MXJob", ns, "mx") + "/log", params={"replica": "mx-worker-1"})
    assert log.status_code == 200 and '"DMLC_WORKER_ID": "1"' in log.text


def test_single_worker_mxjob_succeeds_with_its_worker(client: httpx.Client, ns: str) -> None:
    apply(
        client, ns, manifest("MXJob", "solo", {"Worker": replica([PY, "-c", "print('trained')"])})
    )
    done = wait_for(client, "MXJob", ns, "solo", "Succeeded")
    assert done["status"]["replicaStatuses"]["Worker"] == {"succeeded": 1}
    deadline = time.monotonic() + 10
    text = ""
    while "trained" not in text and time.monotonic() < deadline:
        text = client.get(
            path("MXJob", ns, "solo") + "/log", params={"replica": "solo-worker-0"}
        ).text
        time.sleep(0.1)
    assert "trained" in text


def test_mxjob_is_served_and_listed(client: httpx.Client, ns: str) -> None:
    resources = client.get("/apis/kubeflow.org/v1").json()["resources"]
    assert any(r["kind"] == "MXJob" and r["name"] == "mxjobs" for r in resources)
    assert client.get(path("MXJob", ns)).status_code == 200
