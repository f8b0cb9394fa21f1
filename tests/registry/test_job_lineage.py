"""Lineage from a registered model to the Katib trial that trained it: a trial's batch
Job writes its model under ``KETCH_OUTPUT_DIR``; registered with that URI, the
version's lineage names the Job, its trial, the experiment and the parameters the
trial was assigned."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.server.helpers import Server, wait_until
from tests.tuning.conftest import experiment

pytestmark = pytest.mark.timeout(180)

API = "/api/model_registry/v1"
EXPERIMENTS = "/apis/kubeflow.org/v1beta1/namespaces/default/experiments"
TRIAL = (
    "import os, sys\n"
    "x, y = float(sys.argv[1]), float(sys.argv[2])\n"
    "path = os.path.join(os.environ['KETCH_OUTPUT_DIR'], 'model.txt')\n"
    "open(path, 'w').write(f'{x} {y}')\n"
    "print(f'score={-(x - 0.3) ** 2 - (y - 0.7) ** 2:.6f} loss=0.1')\n"
)


def _succeeded(found: dict[str, Any]) -> bool:
    conditions = found.get("status", {}).get("conditions") or []
    return any(c["type"] == "Succeeded" and c["status"] == "True" for c in conditions)


def test_a_trials_model_traces_back_to_its_parameters(server: Server) -> None:
    name = f"lineage-{uuid.uuid4().hex[:6]}"
    manifest = experiment(
        name,
        max_trials=1,
        maxFailedTrialCount=1,
        parallel=1,
        command=["python", "-c", TRIAL, "${trialParameters.x}", "${trialParameters.y}"],
    )
    with server.client() as http:
        created = http.post(EXPERIMENTS, json=manifest)
        assert created.status_code == 201, created.text
        assert wait_until(lambda: _succeeded(http.get(f"{EXPERIMENTS}/{name}").json()), 120)
        trials = http.get(
            "/apis/kubeflow.org/v1beta1/namespaces/default/trials",
            params={"labelSelector": f"katib.kubeflow.org/experiment={name}"},
        ).json()["items"]
        (trial,) = trials
        assigned = {a["name"]: a["value"] for a in trial["spec"]["parameterAssignments"]}
        trial_name = trial["metadata"]["name"]
        (written,) = (server.home / "logs" / "training" / "default" / "job" / trial_name).glob(
            "*/outputs/model.txt"
        )

        model = http.post(f"{API}/registered_models", json={"name": name}).json()
        version = http.post(
            f"{API}/registered_models/{model['id']}/versions", json={"name": "v1"}
        ).json()
        artifact = http.post(
            f"{API}/model_versions/{version['id']}/artifacts",
            json={"artifactType": "model-artifact", "name": name, "uri": f"file://{written}"},
        )
        assert artifact.status_code == 200, artifact.text
        lineage = http.get(f"{API}/model_versions/{version['id']}/lineage").json()
    (entry,) = lineage["artifacts"]
    produced = entry["producedBy"]
    assert produced["kind"] == "Job" and produced["name"] == trial_name
    assert produced["namespace"] == "default"
    assert produced["detail"]["trial"] == trial_name
    assert produced["detail"]["experiment"] == name
    assert produced["parameters"] == assigned
