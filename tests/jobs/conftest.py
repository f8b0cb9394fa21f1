"""A real ``ketch up`` for the jobs tests, with its own KETCH_HOME, and helpers to
apply kubeflow.org/v1 jobs and wait for their conditions."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.server.fixtures import serve
from tests.server.helpers import Server
from tests.waiting import poll

GROUP = "/apis/kubeflow.org/v1"


#: a short crash-loop back-off, so tests of restarts do not wait Kubernetes' 10 s and
#: more (tests/jobs/test_restarts.py checks the defaults on a server of its own)
SHORT_BACKOFF = {"KETCH_RESTART_BACKOFF_BASE": "0.2", "KETCH_RESTART_BACKOFF_CAP": "1"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from serve(Server(tmp_path_factory.mktemp("ketch-jobs"), extra_env=dict(SHORT_BACKOFF)))


@pytest.fixture
def client(server: Server) -> Iterator[httpx.Client]:
    with server.client() as http:
        yield http


@pytest.fixture
def ns(client: httpx.Client) -> Iterator[str]:
    """A namespace of the test's own; every job left in it is deleted (its processes stop)."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    yield name
    for plural in (
        "pytorchjobs",
        "tfjobs",
        "xgboostjobs",
        "mpijobs",
        "jaxjobs",
        "paddlejobs",
        "mxjobs",
    ):
        items = client.get(f"{GROUP}/namespaces/{name}/{plural}").json().get("items", [])
        for item in items:
            client.delete(f"{GROUP}/namespaces/{name}/{plural}/{item['metadata']['name']}")


def path(kind: str, ns: str, name: str | None = None) -> str:
    base = f"{GROUP}/namespaces/{ns}/{kind.lower()}s"
    return f"{base}/{name}" if name else base


def apply(client: httpx.Client, ns: str, manifest: dict[str, Any]) -> dict[str, Any]:
    manifest = {**manifest, "metadata": {**manifest["metadata"], "namespace": ns}}
    name = manifest["metadata"]["name"]
    existing = client.get(path(manifest["kind"], ns, name))
    if existing.status_code == 200:
        manifest["metadata"]["resourceVersion"] = existing.json()["metadata"]["resourceVersion"]
        response = client.put(path(manifest["kind"], ns, name), json=manifest)
    else:
        response = client.post(path(manifest["kind"], ns), json=manifest)
    assert response.status_code in (200, 201), response.text
    return dict(response.json())


def condition(job: dict[str, Any], type_: str) -> dict[str, Any] | None:
    for c in job.get("status", {}).get("conditions", []):
        if c["type"] == type_:
            return dict(c)
    return None


def wait_for(
    client: httpx.Client, kind: str, ns: str, name: str, type_: str, timeout: float = 60.0
) -> dict[str, Any]:
    """The job once condition ``type_`` is True (fails on the other terminal condition)."""
    job: dict[str, Any] = {}

    def reached() -> bool:
        nonlocal job
        job = client.get(path(kind, ns, name)).json()
        found = condition(job, type_)
        if found and found["status"] == "True":
            return True
        other = "Failed" if type_ != "Failed" else "Succeeded"
        done = condition(job, other)
        if done and done["status"] == "True" and type_ in ("Succeeded", "Failed"):
            raise AssertionError(f"{name} ended {other}: {job['status']}")
        return False

    if not poll(reached, timeout, 0.1):
        raise AssertionError(f"{name} never reached {type_}: {job.get('status')}")
    return job


REPLICAS_FIELD = {
    "PyTorchJob": "pytorchReplicaSpecs",
    "TFJob": "tfReplicaSpecs",
    "XGBoostJob": "xgbReplicaSpecs",
    "MPIJob": "mpiReplicaSpecs",
    "JAXJob": "jaxReplicaSpecs",
    "PaddleJob": "paddleReplicaSpecs",
    "MXJob": "mxReplicaSpecs",
}
DEFAULT_CONTAINER = {
    "PyTorchJob": "pytorch",
    "TFJob": "tensorflow",
    "XGBoostJob": "xgboost",
    "MPIJob": "mpi",
    "JAXJob": "jax",
    "PaddleJob": "paddle",
    "MXJob": "mxnet",
}


def manifest(
    kind: str, name: str, replicas: dict[str, dict[str, Any]], **spec: Any
) -> dict[str, Any]:
    """A ``kind`` job; containers made by :func:`replica` get the kind's default name."""
    field = REPLICAS_FIELD[kind]
    for value in replicas.values():
        for container in value.get("template", {}).get("spec", {}).get("containers", []):
            if container.get("name") == "main":
                container["name"] = DEFAULT_CONTAINER[kind]
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": kind,
        "metadata": {"name": name},
        "spec": {field: replicas, **spec},
    }


def replica(command: list[str], count: int = 1, **extra: Any) -> dict[str, Any]:
    container = {"name": "main", "image": "docker.io/example/trainer:1", "command": command}
    restart = extra.pop("restartPolicy", None)
    container.update(extra)
    out: dict[str, Any] = {"replicas": count, "template": {"spec": {"containers": [container]}}}
    if restart:
        out["restartPolicy"] = restart
    return out
