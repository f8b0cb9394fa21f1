"""A trial's metrics files belong to that trial object: a Trial deleted and created
again under its name (through a real ``ketch up``) does not read the files of the
one before it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.server import fixtures
from tests.server.helpers import wait_until

server = fixtures.server  # a real ``ketch up`` per database, shared by the session
ns = fixtures.ns
client = fixtures.client

pytestmark = pytest.mark.slow

METRICS_FILE = "/var/log/katib/metrics.log"
#: appends one line to the File collector's file, as a logger would
PROGRAM = "import sys\nwith open(sys.argv[1], 'a') as f:\n    f.write(f'loss={sys.argv[2]}\\n')\n"


def _trial(name: str, loss: str) -> dict[str, Any]:
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": {"katib.kubeflow.org/trial": name}},
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "training-container",
                            "command": ["python", "-c", PROGRAM, METRICS_FILE, loss],
                        }
                    ],
                    "restartPolicy": "Never",
                }
            }
        },
    }
    return {
        "apiVersion": "kubeflow.org/v1beta1",
        "kind": "Trial",
        "metadata": {"name": name},
        "spec": {
            "objective": {"type": "minimize", "objectiveMetricName": "loss"},
            "parameterAssignments": [{"name": "loss", "value": loss}],
            "runSpec": job,
            "primaryContainerName": "training-container",
            "metricsCollector": {
                "collector": {"kind": "File"},
                "source": {
                    "fileSystemPath": {"path": METRICS_FILE, "kind": "File", "format": "TEXT"}
                },
            },
        },
    }


def _path(namespace: str, name: str) -> str:
    return f"/apis/kubeflow.org/v1beta1/namespaces/{namespace}/trials/{name}"


def _finished(http: httpx.Client, namespace: str, name: str) -> Callable[[], dict[str, Any] | None]:
    def probe() -> dict[str, Any] | None:
        response = http.get(_path(namespace, name))
        if response.status_code != 200:
            return None
        body = dict(response.json())
        held = {
            c["type"] for c in body.get("status", {}).get("conditions", []) if c["status"] == "True"
        }
        return body if held & {"Succeeded", "Failed", "MetricsUnavailable"} else None

    return probe


def _loss(trial: dict[str, Any]) -> dict[str, Any]:
    metrics = trial["status"].get("observation", {}).get("metrics", [])
    assert metrics, trial["status"]["conditions"]
    return next(m for m in metrics if m["name"] == "loss")


def test_a_trial_created_again_reads_only_its_own_metrics(client: httpx.Client, ns: str) -> None:
    name = "again"
    assert client.put(_path(ns, name), json=_trial(name, "0.5")).status_code == 201
    first = wait_until(_finished(client, ns, name), 120)
    assert first, "the first trial did not finish"
    assert _loss(first)["latest"] == "0.5", first

    assert client.delete(_path(ns, name)).status_code == 200
    assert wait_until(lambda: client.get(_path(ns, name)).status_code == 404, 30)
    assert client.put(_path(ns, name), json=_trial(name, "0.25")).status_code == 201
    second = wait_until(_finished(client, ns, name), 120)
    assert second, "the second trial did not finish"
    assert second["metadata"]["uid"] != first["metadata"]["uid"]
    loss = _loss(second)
    assert (loss["min"], loss["max"], loss["latest"]) == ("0.25", "0.25", "0.25"), loss
    client.delete(_path(ns, name))
