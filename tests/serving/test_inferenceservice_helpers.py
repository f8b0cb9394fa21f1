"""Fixtures and helpers for the InferenceService tests: a real ``ketch up`` per module,
an iris model in tmp, manifests, waiting on conditions. (No tests here.)"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import joblib
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from ketch.core.conditions import get_condition
from tests.server.helpers import (
    Server,
    wait_until,  # noqa: F401 - the serving tests import it from here
)
from tests.waiting import poll

API = "/apis/serving.kserve.io/v1beta1/namespaces/default/inferenceservices"
ROW = [5.1, 3.5, 1.4, 0.2]
V2_BODY = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": ROW}]}


@pytest.fixture(scope="module")
def iris_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    X, y = load_iris(return_X_y=True)
    folder = tmp_path_factory.mktemp("isvc-iris") / "iris"
    folder.mkdir()
    joblib.dump(LogisticRegression(max_iter=1000).fit(X, y), folder / "model.joblib")
    return f"file://{folder}"


@pytest.fixture(scope="module")
def api_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A ``ketch up`` for the module; on exit, no replica it started may be left."""
    server = Server(tmp_path_factory.mktemp("isvc-home")).start()
    try:
        yield server
    finally:
        pids = _replica_pids(server)
        code = server.stop()
        assert code == 0, server.output()[-3000:]
        assert poll(lambda: not any(alive(p) for p in pids), 15, 0.1), (
            "replicas outlived the server"
        )


def _replica_pids(server: Server) -> list[int]:
    try:
        with server.client() as client:
            items = client.get(API).json().get("items", [])
    except httpx.HTTPError:
        return []
    return [
        r["pid"]
        for item in items
        for r in item.get("status", {}).get("ketch", {}).get("replicas", [])
    ]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def manifest(name: str, predictor: dict[str, Any], **extra: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"predictor": predictor}
    annotations = extra.pop("annotations", {})
    spec.update(extra)
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": name, "annotations": annotations},
        "spec": spec,
    }


def apply(client: httpx.Client, doc: dict[str, Any]) -> None:
    response = client.put(f"{API}/{doc['metadata']['name']}", json=doc)
    assert response.status_code in (200, 201), response.text


def get(client: httpx.Client, name: str) -> dict[str, Any]:
    response = client.get(f"{API}/{name}")
    response.raise_for_status()
    return dict(response.json())


def condition(doc: dict[str, Any], type: str) -> dict[str, Any]:
    return get_condition(doc.get("status", {}), type) or {}


def wait_for(
    client: httpx.Client, name: str, check: Callable[[dict[str, Any]], bool], timeout: float = 90.0
) -> dict[str, Any]:
    last: dict[str, Any] = {}

    def probe() -> bool:
        nonlocal last
        last = get(client, name)
        return check(last)

    if not poll(probe, timeout, 0.2):
        raise AssertionError(f"{name} never reached the state wanted: {last.get('status')}")
    return last


def wait_ready(client: httpx.Client, name: str, timeout: float = 90.0) -> dict[str, Any]:
    return wait_for(client, name, lambda d: condition(d, "Ready").get("status") == "True", timeout)


def delete(client: httpx.Client, name: str) -> None:
    pids = [r["pid"] for r in get(client, name)["status"].get("ketch", {}).get("replicas", [])]
    client.delete(f"{API}/{name}").raise_for_status()
    assert poll(lambda: not any(alive(p) for p in pids), 20, 0.1), "replicas outlived the service"


def alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is gone for our purposes
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def infer(url: str, name: str, client: httpx.Client | None = None) -> httpx.Response:
    """A single-row V2 infer call at ``url`` for model ``name``."""
    target = f"{url}/v2/models/{name}/infer"
    if client is not None:
        return client.post(target, json=V2_BODY)
    return httpx.post(target, json=V2_BODY, timeout=60.0)
