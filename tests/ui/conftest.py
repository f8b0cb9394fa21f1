"""The dashboard's servers, once per test process: a real single-user ``ketch up`` and
one with users, each holding real objects made through the real API (a stopped
Notebook, a batch Job that ran to completion, a pipeline run of a tiny pipeline
compiled with ``kfp`` and run by ``kfp.Client``, a suspended PyTorchJob to edit, a
ConfigMap to delete), and where the tests' screenshots go."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.server.fixtures import SERVER_ENV, job, serve
from tests.server.helpers import Server
from tests.tenancy.helpers import (
    ADMIN,
    ALICE,
    BOB,
    CAROL,
    as_user,
    directory_of,
    two_owners_and_a_viewer,
)
from tests.waiting import wait_for

NS = "ui-demo"
ALICE_NS, BOB_NS = "ui-alice", "ui-bob"
PASSWORD = "correct horse battery staple"
NOTEBOOK, BATCH_JOB, EDIT_JOB, DOOMED = "ui-notebook", "ui-batch", "ui-edit-job", "ui-doomed"
STOPPED = "kubeflow-resource-stopped"


def path(api: str, namespace: str, plural: str, name: str = "") -> str:
    return f"{api}/namespaces/{namespace}/{plural}" + (f"/{name}" if name else "")


def made(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code in (200, 201), (response.request.url, response.text)
    body: dict[str, Any] = response.json()
    return body


def notebook(name: str) -> dict[str, Any]:
    """A Notebook that is stopped (nothing runs for it)."""
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "Notebook",
        "metadata": {"name": name, "annotations": {STOPPED: "2026-01-01T00:00:00Z"}},
        "spec": {"template": {"spec": {"containers": [{"name": name, "image": "jupyter/base"}]}}},
    }


def batch_job(name: str) -> dict[str, Any]:
    container = {"name": "main", "image": "python:3.12", "command": ["true"]}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {"template": {"spec": {"containers": [container], "restartPolicy": "Never"}}},
    }


def config_map(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": "v"}}


def put_in(http: httpx.Client, namespace: str) -> None:
    """What every server's namespace holds for the pages: a stopped Notebook, a
    suspended PyTorchJob and ConfigMaps."""
    made(http.post(path("/apis/kubeflow.org/v1", namespace, "notebooks"), json=notebook(NOTEBOOK)))
    made(http.post(path("/apis/kubeflow.org/v1", namespace, "pytorchjobs"), json=job(EDIT_JOB)))
    for name in (DOOMED, f"{namespace}-plans"):
        made(http.post(path("/api/v1", namespace, "configmaps"), json=config_map(name)))


def run_pipeline(url: str, namespace: str, token: str | None = None) -> str:
    """A run of a tiny pipeline (two additions), compiled by ``kfp`` and made by
    ``kfp.Client``, once it succeeded: its id."""
    import kfp

    from tests.ui.pipeline import adder

    client = kfp.Client(host=url, existing_token=token)
    result = client.create_run_from_pipeline_func(
        adder, arguments={"x": 4}, experiment_name="ui-experiment", namespace=namespace
    )
    run = client.wait_for_run_completion(result.run_id, timeout=180, sleep_duration=0.2)
    assert run.state == "SUCCEEDED", run
    return str(result.run_id)


@dataclass
class Dashboard:
    """A running server and what it holds."""

    server: Server
    run_id: str = ""
    experiment_id: str = ""
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.server.url

    def client(self, who: str | None = None, **kwargs: Any) -> httpx.Client:
        if who is None:
            return self.server.client(**kwargs)
        return as_user(self.server, self.tokens[who])


@pytest.fixture(scope="session")
def single(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    """A single-user ``ketch up`` whose namespace ``ui-demo`` holds a pipeline run, a
    completed batch Job, a stopped Notebook, a suspended PyTorchJob and ConfigMaps."""
    for server in serve(Server(tmp_path_factory.mktemp("ketch-ui"), extra_env=SERVER_ENV)):
        dashboard = Dashboard(server)
        with server.client() as http:
            put_in(http, NS)
            made(http.post(path("/apis/batch/v1", NS, "jobs"), json=batch_job(BATCH_JOB)))
            dashboard.run_id = run_pipeline(server.url, NS)
            run = made(http.get(f"/apis/v2beta1/runs/{dashboard.run_id}"))
            dashboard.experiment_id = run["experiment_id"]

            def complete() -> bool:
                status = made(http.get(path("/apis/batch/v1", NS, "jobs", BATCH_JOB)))["status"]
                return any(
                    c["type"] == "Complete" and c["status"] == "True"
                    for c in status.get("conditions") or []
                )

            wait_for(complete, 120, 0.2, what="the batch Job to complete")
        yield dashboard


@pytest.fixture(scope="session")
def multi(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    """A ``ketch up`` with users: Alice owns ``ui-alice``, Bob ``ui-bob``, Carol views
    Alice's, the admin is a cluster admin; each can sign in with :data:`PASSWORD` or
    send their token. Each profile holds what :func:`put_in` makes, and Alice's a
    pipeline run."""
    for server in serve(Server(tmp_path_factory.mktemp("ketch-ui-users"), extra_env=SERVER_ENV)):
        for directory in directory_of(server):

            def reads(http: httpx.Client, namespace: str) -> bool:
                listed = http.get(path("/api/v1", namespace, "configmaps"))
                return listed.status_code == 200

            tokens = two_owners_and_a_viewer(server, directory, (ALICE_NS, BOB_NS), reads)
            for email in (ALICE, BOB, CAROL, ADMIN):
                directory.set_password(email, PASSWORD)
            dashboard = Dashboard(server, tokens=tokens)
            for owner, namespace in ((ALICE, ALICE_NS), (BOB, BOB_NS)):
                with as_user(server, tokens[owner]) as http:
                    put_in(http, namespace)
            dashboard.run_id = run_pipeline(server.url, ALICE_NS, tokens[ALICE])
            yield dashboard


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the browser tests save their screenshots: ``KETCH_UI_SCREENSHOTS`` when
    set, else a folder of pytest's temporary ones (its path is printed)."""
    chosen = os.environ.get("KETCH_UI_SCREENSHOTS")
    folder = Path(chosen) if chosen else tmp_path_factory.mktemp("ui-screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    print(f"\ndashboard screenshots: {folder}")
    return folder


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"
