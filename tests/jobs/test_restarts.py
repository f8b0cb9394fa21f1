"""Through a real ``ketch up`` with Kubernetes' default back-off and a ``PATH`` that
does not hold Ketch's environment: crash-loop back-off of failing replicas, commands
found in Ketch's environment first, GPU requests on a machine without them, and
fresh logs for a job created again under its old name."""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ketch.core.backend.host import host_gpus
from tests import waiting
from tests.jobs.conftest import apply, condition, manifest, path, replica, wait_for
from tests.server.fixtures import serve
from tests.server.helpers import Server

VENV_BIN = Path(sys.executable).parent
BARE_PATH = "/usr/local/bin:/usr/bin:/bin"
JOBS = "/apis/batch/v1/namespaces/{ns}/jobs"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server with the default back-off, started with a PATH without Ketch's venv."""
    assert str(VENV_BIN) not in BARE_PATH.split(":")
    yield from serve(
        Server(tmp_path_factory.mktemp("ketch-restarts"), extra_env={"PATH": BARE_PATH})
    )


@pytest.fixture
def ns(client: httpx.Client) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:10]}"
    yield name
    for plural in ("pytorchjobs", "tfjobs", "jaxjobs"):
        for item in (
            client.get(f"/apis/kubeflow.org/v1/namespaces/{name}/{plural}").json().get("items", [])
        ):
            client.delete(
                f"/apis/kubeflow.org/v1/namespaces/{name}/{plural}/{item['metadata']['name']}"
            )
    for item in client.get(JOBS.format(ns=name)).json().get("items", []):
        client.delete(f"{JOBS.format(ns=name)}/{item['metadata']['name']}")


def events(client: httpx.Client, ns: str, reason: str | None = None) -> list[dict[str, Any]]:
    items = client.get(f"/api/v1/namespaces/{ns}/events").json()["items"]
    return [e for e in items if reason is None or e["reason"] == reason]


def wait_events(
    client: httpx.Client, ns: str, reason: str, timeout: float = 30.0
) -> list[dict[str, Any]]:
    found = waiting.poll(lambda: events(client, ns, reason), timeout, 0.1)
    if not found:
        raise AssertionError(f"no {reason} event: {[e['reason'] for e in events(client, ns)]}")
    return found


def batch_job(
    name: str, command: list[str], restart: str = "Never", **container: Any
) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {"name": "main", "image": "python:3.12", "command": command, **container}
                    ],
                    "restartPolicy": restart,
                }
            }
        },
    }


def job_log(client: httpx.Client, url: str, replica_name: str | None = None, want: str = "") -> str:
    """The log once it holds ``want`` (a process's output may land a moment after it ended)."""
    params = {"replica": replica_name} if replica_name else {}
    text = ""

    def holds_want() -> bool:
        nonlocal text
        response = client.get(url + "/log", params=params)
        text = response.text if response.status_code == 200 else ""
        return want in text

    waiting.poll(holds_want, 15, 0.1)
    return text


def test_failing_replica_backs_off(client: httpx.Client, ns: str) -> None:
    job = manifest(
        "PyTorchJob",
        "crash",
        {
            "Master": replica(
                ["python", "-c", "import sys; print('crashing'); sys.exit(1)"],
                restartPolicy="OnFailure",
            )
        },
    )
    apply(client, ns, job)
    backoff = wait_events(client, ns, "BackOff")
    assert (
        "Back-off 10s restarting failed container pytorch in pod crash-master-0"
        in backoff[0]["message"]
    )
    assert backoff[0]["type"] == "Warning"
    time.sleep(3)  # a busy loop would have restarted it hundreds of times by now
    current = client.get(path("PyTorchJob", ns, "crash")).json()
    status = current["status"]
    assert int(status.get("restartCount") or 0) <= 2, status
    assert status["replicaStatuses"]["Master"] == {"active": 1}  # waiting, not failed
    restarting = condition(current, "Restarting")
    assert restarting is not None and restarting["status"] == "True"
    assert sum(int(e.get("count") or 1) for e in events(client, ns, "BackOff")) <= 2
    assert condition(current, "Failed") is None

    # a batch Job's container restarted in place backs off the same way
    response = client.post(
        JOBS.format(ns=ns),
        json=batch_job("flaky", ["python", "-c", "raise SystemExit(4)"], "OnFailure"),
    )
    assert response.status_code == 201, response.text
    waiting.poll(
        lambda: any("flaky-0" in e["message"] for e in events(client, ns, "BackOff")), 30, 0.1
    )
    flaky = [e for e in events(client, ns, "BackOff") if "flaky-0" in e["message"]]
    assert (
        flaky
        and "Back-off 10s restarting failed container main in pod flaky-0" in flaky[0]["message"]
    )
    time.sleep(2)
    assert not any(e["reason"] == "Restarted" for e in events(client, ns))


def test_commands_are_found_in_ketchs_environment_first(client: httpx.Client, ns: str) -> None:
    # what the process starts in turn is found there too (PATH starts with Ketch's bin)
    code = "import shutil, sys; print(shutil.which('torchrun')); print(sys.executable)"
    apply(client, ns, manifest("PyTorchJob", "which", {"Master": replica(["python", "-c", code])}))
    wait_for(client, "PyTorchJob", ns, "which", "Succeeded")
    text = job_log(client, path("PyTorchJob", ns, "which"), "which-master-0", str(VENV_BIN))
    lines = text.strip().splitlines()
    assert Path(lines[-1]).parent == VENV_BIN and lines[-2] == str(VENV_BIN / "torchrun"), text

    # a TrainJob's trainer command
    trainjobs = f"/apis/trainer.kubeflow.org/v1alpha1/namespaces/{ns}/trainjobs"
    response = client.post(
        trainjobs,
        json={
            "apiVersion": "trainer.kubeflow.org/v1alpha1",
            "kind": "TrainJob",
            "metadata": {"name": "which"},
            "spec": {
                "runtimeRef": {"name": "jax-distributed"},
                "trainer": {
                    "command": ["python3", "-c", "import sys; print(sys.executable)"],
                    "numNodes": 1,
                },
            },
        },
    )
    assert response.status_code == 201, response.text
    text = job_log(client, f"{trainjobs}/which", "node-0", str(VENV_BIN))
    assert Path(text.strip().splitlines()[-1]).parent == VENV_BIN, text
    assert client.delete(f"{trainjobs}/which").status_code == 200

    # a console script of Ketch's environment, not on the server's PATH
    response = client.post(JOBS.format(ns=ns), json=batch_job("pipv", ["pip", "--version"]))
    assert response.status_code == 201, response.text
    text = job_log(client, f"{JOBS.format(ns=ns)}/pipv", want="pip ")
    site = str(VENV_BIN.parent)
    assert site in text, text


def test_gpu_request_without_gpus_warns_and_runs(client: httpx.Client, ns: str) -> None:
    wanted = str(host_gpus() + 1)  # more than this machine has, with or without GPUs
    command = ["python", "-c", "print('ran on the cpu')"]
    job = manifest(
        "PyTorchJob",
        "gpu",
        {"Master": replica(command, resources={"limits": {"nvidia.com/gpu": wanted}})},
    )
    apply(client, ns, job)
    wait_for(client, "PyTorchJob", ns, "gpu", "Succeeded")
    warning = wait_events(client, ns, "GPUNotAvailable")[0]
    assert warning["type"] == "Warning" and "nvidia.com/gpu" in warning["message"]
    assert "gpu-master-0" in warning["message"]

    response = client.post(
        JOBS.format(ns=ns),
        json=batch_job("gpujob", command, resources={"limits": {"nvidia.com/gpu": wanted}}),
    )
    assert response.status_code == 201, response.text
    waiting.poll(lambda: len(events(client, ns, "GPUNotAvailable")) >= 2, 30, 0.1)
    assert any("gpujob-0" in e["message"] for e in events(client, ns, "GPUNotAvailable"))


def test_recreated_job_starts_a_fresh_log(client: httpx.Client, ns: str) -> None:
    url = path("JAXJob", ns, "again")
    first = manifest(
        "JAXJob", "again", {"Worker": replica(["python", "-c", "print('old output')"])}
    )
    apply(client, ns, first)
    done = wait_for(client, "JAXJob", ns, "again", "Succeeded")
    old_path = done["status"]["logPaths"]["again-worker-0"]
    assert "old output" in job_log(client, url, "again-worker-0", "old output")
    assert client.delete(url).status_code == 200
    waiting.wait_for(
        lambda: client.get(url).status_code == 404,
        10,
        what="JAXJob 'again' is gone after its delete",
    )

    second = manifest(
        "JAXJob", "again", {"Worker": replica(["python", "-c", "print('new output')"])}
    )
    apply(client, ns, second)
    done = wait_for(client, "JAXJob", ns, "again", "Succeeded")
    assert done["status"]["logPaths"]["again-worker-0"] != old_path
    text = job_log(client, url, "again-worker-0", "new output")
    assert "new output" in text and "old output" not in text

    # a batch Job too
    jobs = JOBS.format(ns=ns)
    for word in ("before", "after"):
        response = client.post(jobs, json=batch_job("twice", ["python", "-c", f"print('{word}')"]))
        assert response.status_code == 201, response.text
        text = job_log(client, f"{jobs}/twice", want=word)
        assert word in text
        if word == "after":
            assert "before" not in text
        assert client.delete(f"{jobs}/twice").status_code == 200
        waiting.wait_for(
            lambda: client.get(f"{jobs}/twice").status_code == 404,
            10,
            what="Job 'twice' is gone after its delete",
        )
