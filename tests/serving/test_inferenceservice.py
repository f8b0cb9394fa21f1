"""InferenceService through a real API server: apply, infer at status.url, status,
logs, transformer, payload logger, load failure, delete."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import tritonclient.http as triton
import yaml

from tests.server.helpers import Server, ThreadServer, base_env, ketch_command
from tests.serving.test_inferenceservice_helpers import (
    ROW,
    alive,
    api_server,
    apply,
    condition,
    delete,
    get,
    infer,
    iris_uri,
    manifest,
    unique,
    wait_for,
    wait_ready,
    wait_until,
)

__all__ = ["api_server", "iris_uri"]  # fixtures


def _ketch(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**base_env(server.home), "KETCH_URL": server.url}
    return subprocess.run(
        [*ketch_command(), *args], env=env, capture_output=True, text=True, timeout=60
    )


def test_apply_infer_status_logs_delete(api_server: Server, iris_uri: str, tmp_path: Path) -> None:
    name = unique("iris")
    doc = manifest(name, {"sklearn": {"storageUri": iris_uri, "protocolVersion": "v2"}})
    path = tmp_path / "isvc.yaml"
    path.write_text(yaml.safe_dump(doc))
    applied = _ketch(api_server, "apply", "-f", str(path))
    assert applied.returncode == 0, applied.stderr
    with api_server.client() as client:
        doc = wait_ready(client, name)
        status = doc["status"]
        url = status["url"]
        assert status["address"]["url"] == url
        for kind in ("PredictorReady", "IngressReady", "Ready"):
            assert condition(doc, kind)["status"] == "True"
        revision = f"{name}-predictor-00001"
        predictor = status["components"]["predictor"]
        assert predictor["traffic"] == [
            {"revisionName": revision, "percent": 100, "latestRevision": True}
        ]
        assert predictor["latestReadyRevision"] == revision
        assert status["modelStatus"]["transitionStatus"] == "UpToDate"

        # V2 and V1 through the router with httpx
        response = infer(url, name)
        assert response.status_code == 200, response.text
        assert response.json()["outputs"][0]["data"] == [0]
        assert response.headers["ketch-revision"] == revision
        v1 = httpx.post(f"{url}/v1/models/{name}:predict", json={"instances": [ROW]})
        assert v1.json() == {"predictions": [0]}

        # tritonclient over HTTP against status.url
        triton_client = triton.InferenceServerClient(url.removeprefix("http://"))
        try:
            assert triton_client.is_model_ready(name)
            tensor = triton.InferInput("x", [2, 4], "FP64")
            tensor.set_data_from_numpy(np.array([ROW, [6.7, 3.0, 5.2, 2.3]]))
            result = triton_client.infer(name, [tensor])
            assert result.as_numpy("predict").tolist() == [0, 2]
        finally:
            triton_client.close()

        # logs of a replica, through the CLI
        replica = next(iter(status["logPaths"]))
        logs = _ketch(api_server, "logs", "inferenceservice", name, "--replica", replica)
        assert logs.returncode == 0, logs.stderr
        assert "Ketch model server listening on" in logs.stdout
        events = client.get(
            "/api/v1/namespaces/default/events",
            params={"fieldSelector": f"involvedObject.name={name}"},
        )
        if events.status_code == 200:
            reasons = {e["reason"] for e in events.json().get("items", [])}
            assert "ReplicaReady" in reasons, reasons

        delete(client, name)
        assert wait_until(lambda: _refused(url), 10), "the router still listens after delete"


def _refused(url: str) -> bool:
    try:
        httpx.get(f"{url}/v2/health/live", timeout=2)
    except httpx.ConnectError:
        return True
    return False


def test_load_failure_leaves_the_service_not_ready(api_server: Server, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.joblib").write_bytes(b"this is not a pickle")
    name = unique("broken")
    with api_server.client() as client:
        apply(client, manifest(name, {"sklearn": {"storageUri": f"file://{broken}"}}))
        doc = wait_for(
            client, name, lambda d: condition(d, "PredictorReady").get("status") == "False"
        )
        ready = condition(doc, "Ready")
        assert ready["status"] == "False"
        assert ready["reason"] == "RevisionFailed"
        assert "failed to load" in ready["message"], ready
        assert condition(doc, "PredictorReady")["message"] == ready["message"]
        ingress = condition(doc, "IngressReady")  # nothing routes to a failed predictor
        assert ingress["status"] == "False", ingress
        assert ingress["reason"] == "Predictor ingress not created"
        model_status = doc["status"]["modelStatus"]
        assert model_status["transitionStatus"] == "BlockedByFailedLoad"
        assert model_status["states"]["targetModelState"] == "FailedToLoad"
        assert model_status["states"]["activeModelState"] != "Loaded"
        for _ in range(5):  # while it retries, the service is never reported ready
            again = get(client, name)
            assert condition(again, "Ready").get("status") != "True", again["status"]
            assert condition(again, "IngressReady").get("status") != "True", again["status"]
        assert model_status["lastFailureInfo"]["reason"] == "ModelLoadFailed"
        assert "failed to load" in model_status["lastFailureInfo"]["message"]
        delete(client, name)


def test_invalid_predictor_is_refused_at_apply(api_server: Server) -> None:
    name = unique("nomodel")
    path = f"/apis/serving.kserve.io/v1beta1/namespaces/default/inferenceservices/{name}"
    with api_server.client() as client:
        response = client.put(path, json=manifest(name, {"minReplicas": 1}))
        assert response.status_code == 422, response.text
        assert "spec.predictor" in response.json()["message"]
        assert "exactly one of" in response.json()["message"]
        assert client.get(path).status_code == 404


class _Receiver:
    """A tiny CloudEvents sink: records every POST's headers and body."""

    def __init__(self) -> None:
        self.events: list[tuple[dict[str, str], bytes]] = []
        self.lock = threading.Lock()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        with self.lock:
            self.events.append((headers, body))
        await send({"type": "http.response.start", "status": 202, "headers": []})
        await send({"type": "http.response.body", "body": b""})


def test_logger_sends_cloudevents(api_server: Server, iris_uri: str) -> None:
    receiver = _Receiver()
    name = unique("logged")
    with ThreadServer(receiver, lifespan="off") as sink, api_server.client() as client:
        predictor = {
            "sklearn": {"storageUri": iris_uri},
            "logger": {"mode": "all", "url": sink.url},
        }
        apply(client, manifest(name, predictor))
        url = wait_ready(client, name)["status"]["url"]
        ids = [f"req-{i}" for i in range(3)]
        for request_id in ids:
            response = httpx.post(
                f"{url}/v2/models/{name}/infer",
                json={
                    "id": request_id,
                    "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": ROW}],
                },
                headers={"x-request-id": request_id},
            )
            assert response.status_code == 200
        assert wait_until(lambda: len(receiver.events) >= 6, 10), receiver.events
        with receiver.lock:
            events = list(receiver.events)
        seen = {(h["ce-id"], h["ce-type"]) for h, _ in events}
        for request_id in ids:
            assert (request_id, "org.kubeflow.serving.inference.request") in seen
            assert (request_id, "org.kubeflow.serving.inference.response") in seen
        for headers, body in events:
            assert headers["ce-specversion"] == "1.0"
            assert headers["ce-inferenceservicename"] == name
            assert headers["ce-source"]
            if headers["ce-type"].endswith("response"):
                assert b'"outputs"' in body
            else:
                assert b'"inputs"' in body
        delete(client, name)


TRANSFORMER = '''
from ketch.serving import Model


class Scale(Model):
    """Turns centimetres into millimetres before the predictor, tags the answer after."""

    def preprocess(self, payload, headers=None):
        return {"instances": [[v * 10 for v in row] for row in payload["instances"]]}

    def postprocess(self, result, headers=None):
        return {**result, "transformed": True}
'''


def test_transformer_in_front_of_the_predictor(
    api_server: Server, iris_uri: str, tmp_path: Path
) -> None:
    file = tmp_path / "scale.py"
    file.write_text(TRANSFORMER)
    name = unique("chained")
    doc = manifest(
        name,
        {"sklearn": {"storageUri": iris_uri}},
        transformer={
            "containers": [
                {
                    "name": "kserve-container",
                    "image": "unused",
                    "args": [f"--ketch-transformer={file}:Scale"],
                }
            ]
        },
    )
    with api_server.client() as client:
        apply(client, doc)
        status = wait_ready(client, name)["status"]
        assert condition({"status": status}, "TransformerReady")["status"] == "True"
        assert status["url"] == status["components"]["transformer"]["url"]
        assert status["url"] != status["components"]["predictor"]["url"]
        response = httpx.post(
            f"{status['url']}/v1/models/{name}:predict",
            json={"instances": [[0.51, 0.35, 0.14, 0.02]]},
        )
        assert response.status_code == 200, response.text
        assert response.json() == {"predictions": [0], "transformed": True}
        pids = [r["pid"] for r in status["ketch"]["replicas"]]
        assert len(pids) == 2
        delete(client, name)
        assert not any(alive(p) for p in pids)


def test_status_keeps_kserve_names(api_server: Server, iris_uri: str) -> None:
    name = unique("fmt")
    predictor = {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": iris_uri}}
    with api_server.client() as client:
        apply(client, manifest(name, predictor))
        doc = wait_ready(client, name)
        assert get(client, name)["spec"]["predictor"] == predictor
        assert (
            doc["status"]["components"]["predictor"]["latestCreatedRevision"]
            == f"{name}-predictor-00001"
        )
        response = infer(doc["status"]["url"], name)
        assert response.status_code == 200
        delete(client, name)
