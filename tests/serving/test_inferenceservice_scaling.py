"""InferenceService replicas: scale from zero, scale on concurrency, a replica killed
under load, and a server restart."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import httpx
import pytest

from tests.server.helpers import Server
from tests.serving.test_inferenceservice_helpers import (
    V2_BODY,
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

WINDOW = {"autoscaling.knative.dev/window": "1s"}


def _ready_replicas(doc: dict) -> list[dict]:
    return [r for r in doc["status"].get("ketch", {}).get("replicas", []) if r["ready"]]


def test_scale_to_zero_and_back(api_server: Server, iris_uri: str) -> None:
    name = unique("zero")
    predictor = {"minReplicas": 0, "maxReplicas": 1, "sklearn": {"storageUri": iris_uri}}
    with api_server.client() as client:
        apply(client, manifest(name, predictor, annotations=WINDOW))
        url = wait_ready(client, name)["status"]["url"]
        doc = wait_for(client, name, lambda d: not d["status"]["ketch"]["replicas"])
        assert condition(doc, "Ready")["status"] == "True"  # scaled to zero is still ready
        response = infer(url, name)  # waits while a replica starts
        assert response.status_code == 200, response.text
        assert response.json()["outputs"][0]["data"] == [0]
        assert len(_ready_replicas(get(client, name))) == 1
        delete(client, name)


class _Load:
    """Threads sending infer calls until stopped; counts answers and failures."""

    def __init__(self, url: str, name: str, threads: int) -> None:
        self.url = f"{url}/v2/models/{name}/infer"
        self.ok = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        with httpx.Client(timeout=60) as client:
            while not self._stop.is_set():
                try:
                    response = client.post(self.url, json=V2_BODY)
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                    continue
                if response.status_code == 200:
                    self.ok += 1
                else:
                    self.failures.append(f"{response.status_code} {response.text}")

    def __enter__(self) -> _Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)


def test_a_replica_killed_under_load_fails_no_request(api_server: Server, iris_uri: str) -> None:
    name = unique("kill")
    predictor = {"minReplicas": 2, "maxReplicas": 2, "sklearn": {"storageUri": iris_uri}}
    with api_server.client() as client:
        apply(client, manifest(name, predictor))
        doc = wait_for(client, name, lambda d: len(_ready_replicas(d)) == 2)
        url = doc["status"]["url"]
        victim = _ready_replicas(doc)[0]
        with _Load(url, name, 4) as load:
            assert wait_until(lambda: load.ok > 50, 30)
            os.kill(victim["pid"], signal.SIGKILL)
            replaced = wait_for(
                client,
                name,
                lambda d: (
                    len(_ready_replicas(d)) == 2
                    and victim["name"] not in {r["name"] for r in _ready_replicas(d)}
                ),
            )
            before = load.ok
            assert wait_until(lambda: load.ok > before + 50, 30)
        assert load.failures == [], load.failures[:5]
        assert not alive(victim["pid"])
        events = client.get(
            "/api/v1/namespaces/default/events",
            params={"fieldSelector": f"involvedObject.name={name}"},
        )
        if events.status_code == 200:
            assert "ReplicaExited" in {e["reason"] for e in events.json().get("items", [])}
        assert len(_ready_replicas(replaced)) == 2
        delete(client, name)


def test_scales_up_on_concurrency(api_server: Server, iris_uri: str) -> None:
    name = unique("scale")
    predictor = {
        "minReplicas": 1,
        "maxReplicas": 2,
        "scaleMetric": "concurrency",
        "scaleTarget": 1,
        "sklearn": {"storageUri": iris_uri},
    }
    with api_server.client() as client:
        apply(client, manifest(name, predictor, annotations=WINDOW))
        url = wait_ready(client, name)["status"]["url"]
        with _Load(url, name, 4) as load:
            wait_for(client, name, lambda d: len(_ready_replicas(d)) == 2, timeout=60)
        assert load.failures == []
        # load gone: back to minReplicas after the window
        wait_for(client, name, lambda d: len(d["status"]["ketch"]["replicas"]) == 1, timeout=60)
        delete(client, name)


@pytest.mark.slow
def test_server_restart_reconciles_again(tmp_path: Path, iris_uri: str) -> None:
    name = unique("restart")
    server = Server(tmp_path / "home").start()
    try:
        with server.client() as client:
            apply(client, manifest(name, {"sklearn": {"storageUri": iris_uri}}))
            doc = wait_ready(client, name)
        pids = [r["pid"] for r in doc["status"]["ketch"]["replicas"]]
    finally:
        assert server.stop() == 0
    assert wait_until(lambda: not any(alive(p) for p in pids), 15), "replicas outlived the server"
    server = Server(tmp_path / "home").start()
    try:
        with server.client() as client:
            doc = wait_for(
                client,
                name,
                lambda d: (
                    condition(d, "Ready").get("status") == "True"
                    and bool(_ready_replicas(d))
                    and _ready_replicas(d)[0]["pid"] not in pids
                ),
            )
            response = infer(doc["status"]["url"], name)
            assert response.status_code == 200
            delete(client, name)
    finally:
        assert server.stop() == 0
