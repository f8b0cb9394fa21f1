"""Katib Experiment manifests for the tuning tests, and an isolated KETCH_HOME."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ketch.capabilities import ASSEMBLY
from ketch.tuning.client import TuningClient

#: a trial program: the objective of (x, y) printed the way Katib's StdOut collector reads it
OBJECTIVE = (
    "import sys\n"
    "x, y = float(sys.argv[1]), float(sys.argv[2])\n"
    "print(f'epoch 1: score={-(x - 0.3) ** 2 - (y - 0.7) ** 2:.6f} loss={(x - 0.3) ** 2:.6f}')\n"
)


def experiment(
    name: str,
    *,
    algorithm: str = "random",
    settings: dict[str, Any] | None = None,
    parameters: list[dict[str, Any]] | None = None,
    max_trials: int = 4,
    parallel: int = 2,
    command: list[str] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    """A Katib-style Experiment whose trials are batch Jobs running ``command``."""
    parameters = parameters or [
        {"name": "x", "parameterType": "double", "feasibleSpace": {"min": "0", "max": "1"}},
        {"name": "y", "parameterType": "double", "feasibleSpace": {"min": "0", "max": "1"}},
    ]
    names = [p["name"] for p in parameters]
    command = command or ["python", "-c", OBJECTIVE, *[f"${{trialParameters.{n}}}" for n in names]]
    manifest = {
        "apiVersion": "kubeflow.org/v1beta1",
        "kind": "Experiment",
        "metadata": {"name": name},
        "spec": {
            "objective": {
                "type": "maximize",
                "objectiveMetricName": "score",
                "additionalMetricNames": ["loss"],
            },
            "algorithm": {
                "algorithmName": algorithm,
                "algorithmSettings": [
                    {"name": k, "value": str(v)} for k, v in (settings or {}).items()
                ],
            },
            "parallelTrialCount": parallel,
            "maxTrialCount": max_trials,
            "maxFailedTrialCount": 3,
            "parameters": parameters,
            "trialTemplate": {
                "primaryContainerName": "training-container",
                "trialParameters": [
                    {"name": n, "description": f"parameter {n}", "reference": n} for n in names
                ],
                "trialSpec": {
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "spec": {
                        "template": {
                            "spec": {
                                "containers": [
                                    {
                                        "name": "training-container",
                                        "image": "docker.io/kubeflowkatib/pytorch-mnist-cpu:latest",
                                        "command": command,
                                    }
                                ],
                                "restartPolicy": "Never",
                            }
                        }
                    },
                },
            },
        },
    }
    manifest["spec"].update(copy.deepcopy(spec))
    return manifest


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KETCH_HOME", str(tmp_path))
    monkeypatch.delenv("KETCH_URL", raising=False)
    monkeypatch.delenv("KETCH_DATABASE_URL", raising=False)
    return tmp_path


@pytest.fixture
def local(home: Path) -> Iterator[TuningClient]:
    """A client over this test's own store; experiments run in this process."""
    with TuningClient(server=False, assembly=ASSEMBLY) as client:
        yield client


def run_local(client: TuningClient, manifest: dict[str, Any], timeout: float = 120) -> Any:
    """Create ``manifest`` and run it to the end in this process."""
    return client.run_experiment(manifest, timeout=timeout)


def stored_trials(name: str, namespace: str = "default") -> list[dict[str, Any]]:
    """The stored Trial manifests of experiment ``name`` (labels, env, status and all),
    in creation order."""
    from ketch.core import config
    from ketch.core.store.db import Database
    from ketch.core.store.resources import ResourceStore

    with Database(config.database_url()) as database:
        store = ResourceStore(database, migrate=False)
        trials = [
            t.to_manifest()
            for t in store.list(
                "Trial", namespace, label_selector=f"katib.kubeflow.org/experiment={name}"
            )
        ]
    return sorted(
        trials, key=lambda t: (t["metadata"].get("creationTimestamp") or "", t["metadata"]["name"])
    )


def finished_reason(status: dict[str, Any]) -> str:
    """The reason of the experiment's Succeeded or Failed condition (whichever holds)."""
    for condition in status.get("conditions") or []:
        if condition["type"] in ("Succeeded", "Failed") and condition["status"] == "True":
            return str(condition["reason"])
    raise AssertionError(f"the experiment has not finished: {status}")
