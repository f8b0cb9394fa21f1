"""The Model Registry's part of the isolation matrix: what team-a holds in the registry
(made by its owner over HTTP), and each registry route made into a probe of it."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from tests.tenancy.matrix_probes import SIGNED_IN, Probe, level
from tests.tenancy.matrix_world import EDIT, TEAM, VIEW, World, ok

PREFIXES = ("/api/model_registry/v1", "/api/model_registry/v1alpha3")
#: a collection → the id (in ``world.ids``) of team-a's entity in it
COLLECTIONS = {
    "registered_models": "mr:model",
    "model_versions": "mr:version",
    "model_artifacts": "mr:artifact",
    "artifacts": "mr:artifact",
    "serving_environments": "mr:environment",
    "inference_services": "mr:service",
    "experiments": "mr:experiment",
    "experiment_runs": "mr:run",
}


def populate_registry(world: World, http: httpx.Client) -> None:
    """Team-a's registered model, version, artifact, serving environment, inference
    service, experiment and run, made by its owner."""
    base = PREFIXES[0]
    scope = {"namespace": TEAM}
    model = ok(http.post(f"{base}/registered_models", params=scope, json={"name": "mx-model"}))
    version = ok(
        http.post(
            f"{base}/model_versions",
            params=scope,
            json={"name": "v1", "registeredModelId": model["id"]},
        )
    )
    artifact = ok(
        http.post(
            f"{base}/model_versions/{version['id']}/artifacts",
            json={"artifactType": "model-artifact", "name": "mx", "uri": "file:///nowhere"},
        )
    )
    environment = ok(
        http.post(f"{base}/serving_environments", params=scope, json={"name": "mx-env"})
    )
    service = ok(
        http.post(
            f"{base}/inference_services",
            params=scope,
            json={
                "name": "mx-isvc",
                "registeredModelId": model["id"],
                "servingEnvironmentId": environment["id"],
            },
        )
    )
    experiment = ok(http.post(f"{base}/experiments", params=scope, json={"name": "mx-exp"}))
    run = ok(
        http.post(
            f"{base}/experiment_runs",
            params=scope,
            json={"name": "mx-run", "experimentId": experiment["id"]},
        )
    )
    for key, made in (
        ("mr:model", model),
        ("mr:version", version),
        ("mr:artifact", artifact),
        ("mr:environment", environment),
        ("mr:service", service),
        ("mr:experiment", experiment),
        ("mr:run", run),
    ):
        world.ids[key] = str(made["id"])


def registry_probe(path: str, method: str, world: World) -> Probe | None:
    """The probe of a Model Registry route (``None``: not one)."""
    prefix = next((p for p in PREFIXES if path.startswith(p + "/")), None)
    if prefix is None:
        return None
    tail = path[len(prefix) + 1 :]
    need = level(VIEW if method == "GET" else EDIT)
    if tail == "openapi.json":
        return Probe(path, method, path, SIGNED_IN)
    parts = tail.split("/")
    url = path
    params: dict[str, str] = {}
    if "{id}" in parts:
        url = path.replace("{id}", world.ids[COLLECTIONS[parts[0]]])
    else:
        params = {"namespace": TEAM}  # a collection, a find or a history across runs
        if len(parts) == 1 and method == "GET" and not parts[0].endswith("s"):
            params["name"] = "mx-model" if parts[0] == "registered_model" else "absent"
    probe = Probe(path, method, url, need, params=params)
    if method in ("POST", "PATCH"):
        probe.json_body = _body(parts, method)
    return probe


def _body(parts: list[str], method: str) -> dict[str, Any]:
    name = f"mx-{uuid.uuid4().hex[:6]}"
    if method == "PATCH":
        return {"description": "patched by the matrix"}
    if parts[-1] == "artifacts" or parts[0] in ("artifacts", "model_artifacts"):
        return {"artifactType": "model-artifact", "name": name, "uri": "file:///nowhere"}
    return {"name": name}
