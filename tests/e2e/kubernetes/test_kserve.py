"""The KServe SDK's ``KServeClient`` against ``ketch up``: an InferenceService of a
scikit-learn model written by the test, created, read, waited on and deleted."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.kubernetes.sdk import Sdk
from tests.server.helpers import Server

ISVC = """
from kubernetes import client
from kserve import (
    KServeClient,
    V1beta1InferenceService,
    V1beta1InferenceServiceSpec,
    V1beta1PredictorSpec,
    V1beta1SKLearnSpec,
    constants,
)

kserve = KServeClient()
isvc = V1beta1InferenceService(
    api_version=constants.KSERVE_V1BETA1,
    kind=constants.KSERVE_KIND_INFERENCESERVICE,
    metadata=client.V1ObjectMeta(name=name, namespace=ns),
    spec=V1beta1InferenceServiceSpec(
        predictor=V1beta1PredictorSpec(sklearn=V1beta1SKLearnSpec(storage_uri=storage_uri))
    ),
)
"""

CREATE_GET_DELETE = (
    ISVC
    + """
import time

created = kserve.create(isvc)
got = kserve.get(name, namespace=ns)
listed = kserve.get(namespace=ns)
kserve.delete(name, namespace=ns)
deadline = time.monotonic() + 60
while True:
    try:
        kserve.get(name, namespace=ns)
    except RuntimeError as exc:  # KServeClient wraps the API's 404
        gone = str(exc)
        break
    assert time.monotonic() < deadline, "the InferenceService was not deleted"
    time.sleep(0.2)
result = {
    "created": created["metadata"],
    "predictor": got["spec"]["predictor"],
    "listed": [i["metadata"]["name"] for i in listed["items"]],
    "gone": gone,
}
"""
)


def test_create_get_delete(sdk: Sdk, ns: str, iris_uri: str) -> None:
    out = sdk.run(CREATE_GET_DELETE, ns=ns, name="iris", storage_uri=iris_uri)
    assert out["created"]["name"] == "iris" and out["created"]["namespace"] == ns
    assert out["predictor"]["sklearn"]["storageUri"] == iris_uri
    assert out["listed"] == ["iris"]
    assert "Not Found" in out["gone"] or "404" in out["gone"], out["gone"]


POLLED_READY = (
    ISVC
    + """
kserve.create(isvc)
kserve.wait_isvc_ready(name, namespace=ns, timeout_seconds=120, polling_interval=1)
status = kserve.get(name, namespace=ns)["status"]
result = {"ready": kserve.is_isvc_ready(name, namespace=ns), "status": status}
"""
)


@pytest.fixture
def isvc_cleanup(k8s_server: Server, ns: str) -> Iterator[str]:
    """The name of the test's InferenceService, deleted (with its replicas) at the end
    through the API, whatever the SDK did."""
    name = "iris"
    yield name
    path = f"/apis/serving.kserve.io/v1beta1/namespaces/{ns}/inferenceservices/{name}"
    with k8s_server.client() as client:
        response = client.delete(path)
        assert response.status_code in (200, 404), response.text


def test_wait_isvc_ready_by_polling_then_predict(
    sdk: Sdk, ns: str, iris_uri: str, isvc_cleanup: str
) -> None:
    out = sdk.run(POLLED_READY, ns=ns, name=isvc_cleanup, storage_uri=iris_uri, timeout=180)
    assert out["ready"] is True
    conditions = {c["type"]: c["status"] for c in out["status"]["conditions"]}
    assert conditions["Ready"] == "True"
    url = out["status"]["url"]
    response = httpx.post(
        f"{url}/v1/models/{isvc_cleanup}:predict",
        json={"instances": [[5.1, 3.5, 1.4, 0.2]]},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    assert response.json()["predictions"] == [0]


WATCHED_CREATE = (
    ISVC
    + """
kserve.create(isvc, watch=True, timeout_seconds=120)
result = kserve.is_isvc_ready(name, namespace=ns)
"""
)


def test_create_with_watch(sdk: Sdk, ns: str, iris_uri: str, isvc_cleanup: str) -> None:
    assert sdk.run(WATCHED_CREATE, ns=ns, name=isvc_cleanup, storage_uri=iris_uri) is True


WATCHED_READY = (
    ISVC
    + """
kserve.create(isvc)
kserve.wait_isvc_ready(name, namespace=ns, watch=True, timeout_seconds=120)
result = kserve.is_isvc_ready(name, namespace=ns)
"""
)


def test_wait_isvc_ready_with_watch(sdk: Sdk, ns: str, iris_uri: str, isvc_cleanup: str) -> None:
    assert sdk.run(WATCHED_READY, ns=ns, name=isvc_cleanup, storage_uri=iris_uri) is True
