"""Fixtures shared by the server and CLI tests: a real ``ketch up`` per database.

One server per test session and database (SQLite, and PostgreSQL when
``KETCH_TEST_POSTGRES_URL`` is set), each with its own ``KETCH_HOME``; tests keep
out of each other's way with a namespace of their own (``ns``). Safe with xdist:
every worker starts its own servers.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.core.conftest import _postgres_database
from tests.server.helpers import Server, object_path

SERVER_ENV = {
    "KETCH_MAX_UPLOAD_BYTES": str(1024 * 1024),
    "KETCH_WATCH_POLL_SECONDS": "0.2",
    # pytest's folders are closed to other OS users, so these servers' workloads could
    # not run as their profiles' users (tests/tenancy/test_host_isolation.py does that)
    "KETCH_HOST_ISOLATION": "off",
}


def serve(server: Server) -> Iterator[Server]:
    server.start()
    try:
        yield server
    finally:
        code = server.stop()
        assert code == 0, f"the server exited with {code}:\n{server.output()[-4000:]}"


#: the databases a server fixture runs on (PostgreSQL's when one is configured)
DATABASES = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


def serve_on(database: str, home: Path) -> Iterator[Server]:
    """:func:`serve` a ``ketch up`` in ``home`` on ``database`` (a :data:`DATABASES`
    name): SQLite in ``home``, or a fresh PostgreSQL database."""
    if database == "sqlite":
        yield from serve(Server(home, extra_env=SERVER_ENV))
        return
    for url in _postgres_database():
        yield from serve(Server(home, database_url=url, extra_env=SERVER_ENV))


@pytest.fixture(scope="session", params=DATABASES)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A running ``ketch up`` (SQLite, or a fresh PostgreSQL database)."""
    yield from serve_on(request.param, tmp_path_factory.mktemp(f"ketch-{request.param}"))


@pytest.fixture
def client(server: Server) -> Iterator[httpx.Client]:
    with server.client() as http:
        yield http


@pytest.fixture
def ns() -> str:
    """A namespace no other test uses."""
    return f"t-{uuid.uuid4().hex[:12]}"


# A valid PyTorchJob that stays suspended (runPolicy.suspend, as the training operator
# honours it): the resource tests use it as any stored object, and nothing runs.
SUSPENDED_JOB_SPEC: dict[str, Any] = {
    "runPolicy": {"suspend": True},
    "pytorchReplicaSpecs": {
        "Master": {
            "replicas": 1,
            "restartPolicy": "Never",
            "template": {
                "spec": {
                    "containers": [
                        {"name": "pytorch", "image": "pytorch/pytorch", "command": ["true"]}
                    ]
                }
            },
        }
    },
}


def job(
    name: str, *, labels: dict[str, str] | None = None, spec: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A suspended PyTorchJob manifest; ``spec`` adds fields to its spec."""
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {**copy.deepcopy(SUSPENDED_JOB_SPEC), **(spec or {})},
    }


def runtime(
    name: str, *, labels: dict[str, str] | None = None, spec: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A TrainingRuntime manifest: a template TrainJobs name, whose status no controller
    writes, for tests of the resource API's own semantics."""
    return {
        "apiVersion": "trainer.kubeflow.org/v1alpha1",
        "kind": "TrainingRuntime",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": spec if spec is not None else {},
    }


def runtimes_path(ns: str, name: str | None = None) -> str:
    return object_path("/apis/trainer.kubeflow.org/v1alpha1", ns, "trainingruntimes", name)


def jobs_path(ns: str, name: str | None = None) -> str:
    return object_path("/apis/kubeflow.org/v1", ns, "pytorchjobs", name)
