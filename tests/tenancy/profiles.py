"""What the tenancy tests share: Profile manifests, paths and a client of the real
``kubernetes`` package for a test server."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from tests.server.helpers import object_path

ALICE, BOB, CAROL = "alice@example.com", "bob@example.com", "carol@example.com"
PROFILES = "/apis/kubeflow.org/v1/profiles"
NAMESPACES = "/api/v1/namespaces"
RBAC = "/apis/rbac.authorization.k8s.io/v1"
KUBEFLOW_LABELS = {
    "app.kubernetes.io/part-of": "kubeflow-profile",
    "katib.kubeflow.org/metrics-collector-injection": "enabled",
    "pipelines.kubeflow.org/enabled": "true",
    "serving.kubeflow.org/inferenceservice": "enabled",
}


def profile(name: str, owner: str = ALICE, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "Profile",
        "metadata": {"name": name},
        "spec": {"owner": {"kind": "User", "name": owner}, **spec},
    }


def rolebindings_path(ns: str, name: str | None = None) -> str:
    return object_path(RBAC, ns, "rolebindings", name)


def ready(manifest: dict[str, Any]) -> dict[str, Any]:
    """The Ready condition of a profile (``{}`` when it has none)."""
    for condition in (manifest.get("status") or {}).get("conditions") or ():
        if condition.get("type") == "Ready":
            return dict(condition)
    return {}


def profile_events(client: httpx.Client, name: str) -> list[dict[str, Any]]:
    """The events about Profile ``name`` (kept with cluster-scoped objects, in default)."""
    selector = f"involvedObject.kind=Profile,involvedObject.name={name}"
    response = client.get(f"{NAMESPACES}/default/events", params={"fieldSelector": selector})
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


@contextmanager
def kubernetes_client(url: str) -> Iterator[Any]:
    """The ``kubernetes`` package's ApiClient for the server at ``url``."""
    kubernetes = pytest.importorskip("kubernetes")
    configuration = kubernetes.client.Configuration()
    configuration.host = url
    with kubernetes.client.ApiClient(configuration) as api_client:
        yield api_client
