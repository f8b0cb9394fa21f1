"""InferenceServices through a real API server: a service deleted and created again
under its name starts with fresh logs; a failed canary never makes the service look
ready."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.server.helpers import Server
from tests.serving.test_inferenceservice_helpers import (
    API,
    api_server,
    apply,
    condition,
    delete,
    get,
    iris_uri,
    manifest,
    unique,
    wait_for,
    wait_ready,
)

__all__ = ["api_server", "iris_uri"]  # fixtures

LISTENING = "Ketch model server listening on"


def _logs(client: httpx.Client, name: str, replica: str) -> str:
    response = client.get(f"{API}/{name}/log", params={"replica": replica})
    assert response.status_code == 200, response.text
    return response.text


def test_a_service_created_again_under_its_name_gets_fresh_logs(
    api_server: Server, iris_uri: str
) -> None:
    name = unique("again")
    doc = manifest(name, {"sklearn": {"storageUri": iris_uri}})
    with api_server.client() as client:
        apply(client, doc)
        first = wait_ready(client, name)
        replica = next(iter(first["status"]["logPaths"]))
        assert _logs(client, name, replica).count(LISTENING) == 1
        delete(client, name)

        apply(client, doc)
        second = wait_ready(client, name)
        assert second["metadata"]["uid"] != first["metadata"]["uid"]
        assert replica in second["status"]["logPaths"]  # the same replica name...
        assert second["status"]["logPaths"][replica] != first["status"]["logPaths"][replica]
        text = _logs(client, name, replica)  # ...and only the new replica's output
        assert text.count(LISTENING) == 1, text
        delete(client, name)


def test_a_failed_canary_leaves_the_service_not_ready_while_the_old_model_serves(
    api_server: Server, iris_uri: str, tmp_path: Path
) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.joblib").write_bytes(b"not a model")
    name = unique("canary")
    with api_server.client() as client:
        apply(client, manifest(name, {"sklearn": {"storageUri": iris_uri}}))
        wait_ready(client, name)
        apply(
            client,
            manifest(
                name, {"canaryTrafficPercent": 20, "sklearn": {"storageUri": f"file://{broken}"}}
            ),
        )
        doc = wait_for(
            client, name, lambda d: condition(d, "PredictorReady").get("status") == "False"
        )
        for type_ in ("PredictorReady", "IngressReady", "Ready"):
            assert condition(doc, type_)["status"] == "False", doc["status"]["conditions"]
        assert condition(doc, "IngressReady")["reason"] == "Predictor ingress not created"
        assert "failed to load" in condition(doc, "Ready")["message"]
        states = doc["status"]["modelStatus"]["states"]
        assert states == {"activeModelState": "Loaded", "targetModelState": "FailedToLoad"}
        assert doc["status"]["modelStatus"]["transitionStatus"] == "BlockedByFailedLoad"
        # the rolled-out revision keeps all the traffic
        traffic = doc["status"]["components"]["predictor"]["traffic"]
        served = [t for t in traffic if t["percent"] > 0]
        assert [t["revisionName"] for t in served] == [f"{name}-predictor-00001"]
        assert get(client, name)["status"]["url"] == doc["status"]["url"]
        delete(client, name)
