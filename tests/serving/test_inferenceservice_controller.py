"""The InferenceService controller owns what it starts: when the control plane that
runs it stops, every replica and router it started is stopped, while the compute
backend (the caller's, who made it) stays up."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest

from ketch.core.backend import LocalBackend, ProcessSpec
from ketch.core.conditions import is_true
from ketch.core.embedded import ControlPlane
from ketch.core.resource import Resource
from ketch.serving.capability import CAPABILITY as SERVING
from ketch.serving.controller import KIND
from tests.serving.test_inferenceservice_helpers import (
    alive,
    infer,
    iris_uri,
    manifest,
    unique,
    wait_until,
)

__all__ = ["iris_uri"]  # fixtures


def test_stopping_the_control_plane_stops_replicas_and_routers(
    tmp_path: Path, iris_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("KETCH_HOME", str(home))
    monkeypatch.delenv("KETCH_DATABASE_URL", raising=False)
    backend = LocalBackend()
    name = unique("owned")
    try:
        with ControlPlane((SERVING,), backend=backend, home=home) as plane:
            doc = manifest(name, {"sklearn": {"storageUri": iris_uri}})
            plane.store.create(Resource.model_validate(doc))

            def serving() -> bool:
                status = plane.store.get(KIND, "default", name).status
                replicas = status.get("ketch", {}).get("replicas", [])
                return is_true(status, "Ready") and any(r["ready"] for r in replicas)

            assert wait_until(serving, 90, 0.2), plane.store.get(KIND, "default", name).status
            status = plane.store.get(KIND, "default", name).status
            pids = [r["pid"] for r in status["ketch"]["replicas"]]
            url = status["url"]
            assert infer(url, name).status_code == 200
        # stopped by the controller, not by shutting the backend down
        assert wait_until(lambda: not any(alive(p) for p in pids), 15), "replicas outlived it"
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{url}/v2/health/ready", timeout=5)
        after = backend.start(ProcessSpec(name="after", command=[sys.executable, "-c", "pass"]))
        assert after.wait(60) == 0
    finally:
        backend.shutdown(grace=1.0)
