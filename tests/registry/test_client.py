"""The real ``model-registry`` client (PyPI) against ``ketch up`` over HTTP: register,
find, list across pages, update, archive, and the "version already exists" refusal."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from model_registry.exceptions import StoreError

from tests.server.helpers import Server

pytestmark = pytest.mark.timeout(180)


def test_register_and_read_back(registry_client: Callable[..., Any]) -> None:
    registry = registry_client(author="alice")
    model = registry.register_model(
        "iris-clf",
        "file:///models/iris/1",
        model_format_name="sklearn",
        model_format_version="1",
        version="v1",
        description="first cut",
        metadata={"accuracy": 0.93, "epochs": 3, "tuned": False, "framework": "sklearn"},
    )
    assert model.name == "iris-clf" and model.id
    found = registry.get_registered_model("iris-clf")
    assert found is not None and found.id == model.id and found.owner == "alice"
    version = registry.get_model_version("iris-clf", "v1")
    assert version is not None and version.author == "alice"
    assert version.registered_model_id == model.id
    assert version.custom_properties == {
        "accuracy": 0.93,
        "epochs": 3,
        "tuned": False,
        "framework": "sklearn",
    }
    artifact = registry.get_model_artifact("iris-clf", "v1")
    assert artifact is not None
    assert artifact.uri == "file:///models/iris/1"
    assert artifact.model_format_name == "sklearn"
    assert registry.get_registered_model("no-such-model") is None
    assert registry.get_model_version("iris-clf", "v9") is None

    with pytest.raises(StoreError, match="already exists"):
        registry.register_model(
            "iris-clf",
            "file:///elsewhere",
            model_format_name="sklearn",
            model_format_version="1",
            version="v1",
        )
    # nothing was written by the refused call
    assert registry.get_model_artifact("iris-clf", "v1").uri == "file:///models/iris/1"


def test_pages_update_and_archive(registry_client: Callable[..., Any], server: Server) -> None:
    registry = registry_client(author="bob")
    for n in range(3):
        registry.register_model(
            "paged",
            f"file:///models/paged/{n}",
            model_format_name="onnx",
            model_format_version="1",
            version=f"v{n}",
        )
    names = [v.name for v in registry.get_model_versions("paged").page_size(2)]
    assert names == ["v0", "v1", "v2"]
    models = [m.name for m in registry.get_registered_models().page_size(1)]
    assert "paged" in models and len(models) == len(set(models))

    version = registry.get_model_version("paged", "v1")
    version.description = "the good one"
    from mr_openapi import ModelVersionState

    version.state = ModelVersionState.ARCHIVED
    registry.update(version)
    again = registry.get_model_version("paged", "v1")
    assert again.description == "the good one"
    assert again.state == ModelVersionState.ARCHIVED
    assert int(again.last_update_time_since_epoch) >= int(again.create_time_since_epoch)

    with server.client() as http:
        base = "/api/model_registry/v1"
        live = http.get(
            f"{base}/registered_models/{again.registered_model_id}/versions",
            params={"filterQuery": "state = 'LIVE'"},
        ).json()
        assert sorted(v["name"] for v in live["items"]) == ["v0", "v2"]
        # no DELETE, as upstream
        assert http.delete(f"{base}/model_versions/{again.id}").status_code in (404, 405)
        # the published v1alpha3 prefix answers the same, marked deprecated
        old = http.get(f"{V1ALPHA3}/model_versions/{again.id}")
        assert old.status_code == 200 and old.json()["name"] == "v1"
        assert old.headers["Deprecation"] == "true"
        # errors are {code, message}
        missing = http.get(f"{base}/registered_model", params={"name": "absent"})
        assert missing.status_code == 404
        assert set(missing.json()) == {"code", "message"} and missing.json()["code"] == "404"


V1ALPHA3 = "/api/model_registry/v1alpha3"
