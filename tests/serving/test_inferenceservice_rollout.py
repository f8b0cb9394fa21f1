"""Canary rollout of an InferenceService: split, promote, roll back."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from tests.server.helpers import Server
from tests.serving.test_inferenceservice_helpers import (
    api_server,
    apply,
    delete,
    iris_uri,
    manifest,
    unique,
    wait_for,
    wait_ready,
)

__all__ = ["api_server", "iris_uri"]  # fixtures


def _copy(iris_uri: str, tmp_path: Path, label: str) -> str:
    target = tmp_path / label
    shutil.copytree(iris_uri.removeprefix("file://"), target)
    return f"file://{target}"


def _split(doc: dict[str, Any]) -> dict[str, int]:
    traffic = doc["status"]["components"]["predictor"].get("traffic", [])
    return {t["revisionName"]: t["percent"] for t in traffic}


def _answers(url: str, name: str, count: int) -> Counter[str]:
    seen: Counter[str] = Counter()
    body = {
        "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [5.1, 3.5, 1.4, 0.2]}]
    }
    with httpx.Client(timeout=30) as client:
        for _ in range(count):
            response = client.post(f"{url}/v2/models/{name}/infer", json=body)
            assert response.status_code == 200, response.text
            seen[response.headers["ketch-revision"]] += 1
    return seen


def test_canary_split_promote_and_rollback(
    api_server: Server, iris_uri: str, tmp_path: Path
) -> None:
    name = unique("canary")
    rev1, rev2, rev3 = (f"{name}-predictor-0000{i}" for i in (1, 2, 3))
    uri2 = _copy(iris_uri, tmp_path, "v2")
    uri3 = _copy(iris_uri, tmp_path, "v3")
    with api_server.client() as client:
        apply(client, manifest(name, {"sklearn": {"storageUri": iris_uri}}))
        url = wait_ready(client, name)["status"]["url"]

        # a changed predictor with canaryTrafficPercent: the new revision gets that share
        apply(client, manifest(name, {"canaryTrafficPercent": 30, "sklearn": {"storageUri": uri2}}))
        doc = wait_for(client, name, lambda d: _split(d) == {rev1: 70, rev2: 30})
        predictor = doc["status"]["components"]["predictor"]
        assert predictor["latestCreatedRevision"] == rev2
        assert predictor["latestRolledoutRevision"] == rev1
        assert doc["status"]["url"] == url
        seen = _answers(url, name, 100)
        assert seen[rev1] > 0 and seen[rev2] > 0, seen
        assert 10 <= seen[rev2] <= 55, seen  # 30 % expected, generous for 100 draws

        # 100 % promotes
        apply(
            client, manifest(name, {"canaryTrafficPercent": 100, "sklearn": {"storageUri": uri2}})
        )
        doc = wait_for(client, name, lambda d: _split(d) == {rev2: 100})
        predictor = doc["status"]["components"]["predictor"]
        assert predictor["latestRolledoutRevision"] == rev2
        assert predictor["previousRolledoutRevision"] == rev1
        wait_for(
            client,
            name,
            lambda d: {r["revision"] for r in d["status"]["ketch"]["replicas"]} == {rev2},
        )
        assert _answers(url, name, 20) == Counter({rev2: 20})

        # a new canary, then the spec reverted: the rolled-out revision takes it all back
        apply(client, manifest(name, {"canaryTrafficPercent": 50, "sklearn": {"storageUri": uri3}}))
        wait_for(client, name, lambda d: _split(d) == {rev2: 50, rev3: 50})
        apply(client, manifest(name, {"sklearn": {"storageUri": uri2}}))
        doc = wait_for(client, name, lambda d: _split(d) == {rev2: 100})
        assert doc["status"]["components"]["predictor"]["latestRolledoutRevision"] == rev2
        wait_for(
            client,
            name,
            lambda d: {r["revision"] for r in d["status"]["ketch"]["replicas"]} == {rev2},
        )
        assert _answers(url, name, 20) == Counter({rev2: 20})
        delete(client, name)
