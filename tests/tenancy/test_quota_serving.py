"""A profile's compute quota over an InferenceService's replicas: each is charged what
its predictor asks for as it starts, one that does not fit waits (a ``FailedCreate``
Warning) and starts once the quota has room, and a stopped one gives its charge back.
Over real HTTP against a real ``ketch up``, with real ``ketch serve`` replicas."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import joblib
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from tests.tenancy.profiles import PROFILES, profile
from tests.waiting import wait_for

QUOTA = "/api/v1/namespaces/{ns}/resourcequotas/kf-resource-quota"
ISVC = "/apis/serving.kserve.io/v1beta1/namespaces/{ns}/inferenceservices"


@pytest.fixture(scope="module")
def iris_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    X, y = load_iris(return_X_y=True)
    folder = tmp_path_factory.mktemp("quota-iris") / "iris"
    folder.mkdir()
    joblib.dump(LogisticRegression(max_iter=1000).fit(X, y), folder / "model.joblib")
    return f"file://{folder}"


def _used(client: httpx.Client, ns: str) -> dict[str, str]:
    response = client.get(QUOTA.format(ns=ns))
    assert response.status_code == 200, response.text
    used: dict[str, str] = response.json()["status"]["used"]
    return used


def _replicas(client: httpx.Client, ns: str, name: str) -> list[dict[str, Any]]:
    response = client.get(
        f"/api/v1/namespaces/{ns}/pods",
        params={"labelSelector": f"serving.kserve.io/inferenceservice={name}"},
    )
    assert response.status_code == 200, response.text
    return sorted(response.json()["items"], key=lambda p: p["metadata"]["name"])


def _refusals(client: httpx.Client, ns: str, name: str) -> list[tuple[str, int]]:
    """The FailedCreate events about ``name``: their messages, and how often each was said."""
    response = client.get(
        f"/api/v1/namespaces/{ns}/events",
        params={"fieldSelector": f"involvedObject.name={name}"},
    )
    items = response.json()["items"]
    return [(e["message"], e.get("count", 1)) for e in items if e["reason"] == "FailedCreate"]


def test_replicas_past_the_quota_wait_until_it_has_room(
    client: httpx.Client, ns: str, tmp_path: Path, iris_uri: str
) -> None:
    created = client.post(PROFILES, json=profile(ns, resourceQuotaSpec={"hard": {"cpu": "1"}}))
    assert created.status_code == 201, created.text
    name = "iris"
    service = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": name},
        "spec": {
            "predictor": {
                "minReplicas": 2,
                "maxReplicas": 2,
                "sklearn": {
                    "storageUri": iris_uri,
                    "resources": {"requests": {"cpu": "600m"}, "limits": {"memory": "1Gi"}},
                },
            }
        },
    }
    isvcs = ISVC.format(ns=ns)
    response = client.post(isvcs, json=service)
    assert response.status_code == 201, response.text
    try:
        refused = wait_for(
            lambda: _refusals(client, ns, name), timeout=90, what="a replica refused"
        )
        assert refused[0][0] == (
            f'Error creating: pods "{name}-predictor-00001-2" is forbidden: exceeded quota: '
            "kf-resource-quota, requested: cpu=600m, used: cpu=600m, limited: cpu=1"
        )
        pods = wait_for(lambda: _replicas(client, ns, name), what="the first replica's pod")
        assert [p["metadata"]["name"] for p in pods] == [f"{name}-predictor-00001-1"]
        assert pods[0]["spec"]["containers"][0]["resources"] == {
            "requests": {"cpu": "600m"},
            "limits": {"memory": "1Gi"},
        }
        assert _used(client, ns) == {"cpu": "600m"}

        # the quota is raised: the second replica starts
        current = client.get(f"{PROFILES}/{ns}").json()
        current["spec"]["resourceQuotaSpec"]["hard"]["cpu"] = "2"
        assert client.put(f"{PROFILES}/{ns}", json=current).status_code == 200
        wait_for(
            lambda: len(_replicas(client, ns, name)) == 2,
            timeout=90,
            what="the second replica started",
        )
        assert _used(client, ns) == {"cpu": "1200m"}
        assert [count for _message, count in _refusals(client, ns, name)] == [1]  # said once
    finally:
        assert client.delete(f"{isvcs}/{name}").status_code == 200
    wait_for(lambda: _used(client, ns) == {"cpu": "0"}, what="the replicas' release")
