"""From a pipeline run to a served model and back, over a real ``ketch up``: the
example pipeline trains, evaluates and registers its model with the real
``model-registry`` client from inside a task (``KETCH_URL``); an InferenceService
serves ``model-registry://iris-clf`` (the latest LIVE version) and answers V2
inference; the registry's inference service follows it; and lineage leads from the
served version back to the run, the training task and the data set it read."""

from __future__ import annotations

import importlib.util
import uuid
from pathlib import Path
from typing import Any

import httpx
import kfp
import pytest

from tests.server.helpers import Server
from tests.waiting import poll

pytestmark = pytest.mark.timeout(300)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "registry_pipeline.py"
API = "/api/model_registry/v1"
ISVC = "/apis/serving.kserve.io/v1beta1/namespaces/default/inferenceservices"
ROW = [5.1, 3.5, 1.4, 0.2]


def _pipeline() -> Any:
    spec = importlib.util.spec_from_file_location("registry_pipeline_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.registry_pipeline


def _ready(http: httpx.Client, name: str) -> dict[str, Any] | None:
    found = http.get(f"{ISVC}/{name}").json()
    conditions = {c["type"]: c for c in found.get("status", {}).get("conditions", [])}
    ready = conditions.get("Ready", {}).get("status") == "True"
    return found if ready else None


def test_pipeline_registers_serves_and_traces_back(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kfp.Client, "_LOCAL_KFP_CONTEXT", str(tmp_path / "kfp-context.json"))
    model_name = f"iris-{uuid.uuid4().hex[:6]}"
    client = kfp.Client(host=server.url)
    made = client.create_run_from_pipeline_func(
        _pipeline(), arguments={"C": 1.0, "model_name": model_name}
    )
    run = client.wait_for_run_completion(made.run_id, timeout=180, sleep_duration=0.5)
    assert run.state == "SUCCEEDED", run

    with server.client() as http:
        model = http.get(f"{API}/registered_model", params={"name": model_name})
        assert model.status_code == 200, model.text
        versions = http.get(f"{API}/registered_models/{model.json()['id']}/versions").json()
        assert [v["name"] for v in versions["items"]] == ["v1"]
        version = versions["items"][0]
        assert version["customProperties"]["accuracy"]["metadataType"] == "MetadataDoubleValue"

        # a second run whose model is no better registers nothing
        again = client.create_run_from_pipeline_func(
            _pipeline(), arguments={"C": 1.0, "model_name": model_name}
        )
        done = client.wait_for_run_completion(again.run_id, timeout=180, sleep_duration=0.5)
        assert done.state == "SUCCEEDED"
        versions = http.get(f"{API}/registered_models/{model.json()['id']}/versions").json()
        assert [v["name"] for v in versions["items"]] == ["v1"]

        name = f"served-{uuid.uuid4().hex[:6]}"
        manifest = {
            "apiVersion": "serving.kserve.io/v1beta1",
            "kind": "InferenceService",
            "metadata": {"name": name},
            "spec": {
                "predictor": {
                    "sklearn": {
                        "storageUri": f"model-registry://{model_name}",
                        "protocolVersion": "v2",
                    }
                }
            },
        }
        assert http.post(ISVC, json=manifest).status_code == 201
        served = poll(lambda: _ready(http, name), 90, 0.3)
        assert served, http.get(f"{ISVC}/{name}").text
        url = served["status"]["url"]
        answer = httpx.post(
            f"{url}/v2/models/{name}/infer",
            json={"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": ROW}]},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["model_name"] == name
        assert answer.json()["outputs"][0]["data"] == [0]  # a setosa

        # the registry's inference service follows the InferenceService
        def entry() -> dict[str, Any] | None:
            found = http.get(f"{API}/inference_service", params={"name": name})
            return found.json() if found.status_code == 200 else None

        followed = poll(entry, 30, 0.2)
        assert followed, "the registry has no inference service for the InferenceService"
        assert followed["desiredState"] == "DEPLOYED"
        assert followed["registeredModelId"] == model.json()["id"]
        assert followed["modelVersionId"] == version["id"]
        served_version = http.get(f"{API}/inference_services/{followed['id']}/version").json()
        assert served_version["id"] == version["id"]

        # lineage: the served version ← the training task of the first run ← its data
        lineage = http.get(f"{API}/model_versions/{served_version['id']}/lineage").json()
        (artifact,) = lineage["artifacts"]
        produced = artifact["producedBy"]
        assert produced["kind"] == "PipelineRun" and produced["name"] == made.run_id
        assert produced["task"].endswith("train-model")
        assert produced["parameters"]["C"] == 1.0
        (data,) = artifact["inputs"]
        assert data["name"] == "train_data"
        # the data set the training task read: the first run's prepare-data output
        assert data["runId"] == made.run_id and data["type"] == "system.Dataset"
        path = Path(data["uri"].removeprefix("file://"))
        assert path.read_text().splitlines()[0].endswith("target")

        assert http.delete(f"{ISVC}/{name}").status_code == 200
        gone = poll(lambda: (entry() or {}).get("desiredState") == "UNDEPLOYED", 30, 0.2)
        assert gone, entry()
