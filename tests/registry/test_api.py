"""The Model Registry REST API over HTTP, beyond what the client calls: every
collection's create, read, find, update and list; nested routes; custom properties of
every metadataType; experiments with runs, metrics and their history; the inference
services' model and version; filterQuery on fields and custom properties; paging in
both orders; and clear {code, message} refusals that change nothing."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.server.helpers import Server

pytestmark = pytest.mark.timeout(120)

API = "/api/model_registry/v1"
PROPERTIES = {
    "framework": {"metadataType": "MetadataStringValue", "string_value": "sklearn"},
    "epochs": {"metadataType": "MetadataIntValue", "int_value": "12"},
    "accuracy": {"metadataType": "MetadataDoubleValue", "double_value": 0.97},
    "tuned": {"metadataType": "MetadataBoolValue", "bool_value": True},
    "config": {"metadataType": "MetadataStructValue", "struct_value": "eyJhIjogMX0="},
    "blob": {
        "metadataType": "MetadataProtoValue",
        "type": "google.protobuf.Any",
        "proto_value": "AAEC",
    },
}


@pytest.fixture
def http(server: Server) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


def made(response: httpx.Response, status: int = 201) -> dict[str, Any]:
    assert response.status_code == status, response.text
    found: dict[str, Any] = response.json()
    return found


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_models_versions_artifacts_and_properties(http: httpx.Client) -> None:
    name = unique("model")
    model = made(
        http.post(
            f"{API}/registered_models",
            json={
                "name": name,
                "owner": "me",
                "language": ["python"],
                "tasks": ["classification"],
                "customProperties": PROPERTIES,
            },
        )
    )
    assert model["state"] == "LIVE" and model["customProperties"] == PROPERTIES
    assert model["language"] == ["python"]
    version = made(
        http.post(f"{API}/registered_models/{model['id']}/versions", json={"name": "v1"})
    )
    assert version["registeredModelId"] == model["id"]
    artifact = made(
        http.post(
            f"{API}/model_versions/{version['id']}/artifacts",
            json={"artifactType": "model-artifact", "name": "weights", "uri": "s3://b/w"},
        ),
        200,
    )
    doc = made(
        http.post(
            f"{API}/model_versions/{version['id']}/artifacts",
            json={"artifactType": "doc-artifact", "name": "card", "uri": "s3://b/README.md"},
        ),
        200,
    )
    # the upsert of a same-named artifact updates it, and keeps its id
    again = made(
        http.post(
            f"{API}/model_versions/{version['id']}/artifacts",
            json={"artifactType": "model-artifact", "name": "weights", "uri": "s3://b/w2"},
        ),
        200,
    )
    assert again["id"] == artifact["id"] and again["uri"] == "s3://b/w2"
    listed = made(http.get(f"{API}/model_versions/{version['id']}/artifacts"), 200)
    assert {a["id"] for a in listed["items"]} == {artifact["id"], doc["id"]}
    only_models = made(
        http.get(
            f"{API}/model_versions/{version['id']}/artifacts",
            params={"artifactType": "model-artifact"},
        ),
        200,
    )
    assert [a["id"] for a in only_models["items"]] == [artifact["id"]]
    assert made(http.get(f"{API}/model_artifacts/{artifact['id']}"), 200)["uri"] == "s3://b/w2"
    assert http.get(f"{API}/model_artifacts/{doc['id']}").status_code == 404
    found = made(
        http.get(
            f"{API}/model_artifact", params={"name": "weights", "parentResourceId": version["id"]}
        ),
        200,
    )
    assert found["id"] == artifact["id"]
    by_external = made(
        http.patch(f"{API}/registered_models/{model['id']}", json={"externalId": f"ext-{name}"}),
        200,
    )
    assert by_external["externalId"] == f"ext-{name}"
    assert (
        made(http.get(f"{API}/registered_model", params={"externalId": f"ext-{name}"}), 200)["id"]
        == model["id"]
    )
    # filterQuery on fields and on custom properties, typed and untyped
    for query, hit in (
        (f"name = '{name}'", True),
        (f"name LIKE '{name[:8]}%' AND state = 'LIVE'", True),
        ("accuracy > 0.95", True),
        ("framework.string_value = 'sklearn' AND epochs >= 12", True),
        ("tuned = true OR accuracy < 0.1", True),
        ("accuracy > 0.99", False),
    ):
        page = made(http.get(f"{API}/registered_models", params={"filterQuery": query}), 200)
        assert (model["id"] in {m["id"] for m in page["items"]}) is hit, query


def test_paging_in_both_orders(http: httpx.Client) -> None:
    prefix = unique("paged")
    ids = [
        made(http.post(f"{API}/registered_models", json={"name": f"{prefix}-{n}"}))["id"]
        for n in range(5)
    ]
    query = {"filterQuery": f"name LIKE '{prefix}-%'", "pageSize": "2"}
    for order, expected in (("ASC", ids), ("DESC", ids[::-1])):
        seen: list[str] = []
        token = ""
        while True:
            page = made(
                http.get(
                    f"{API}/registered_models",
                    params={
                        **query,
                        "sortOrder": order,
                        "orderBy": "CREATE_TIME",
                        "nextPageToken": token,
                    },
                ),
                200,
            )
            assert page["size"] == len(page["items"]) <= 2 and page["pageSize"] == 2
            seen += [m["id"] for m in page["items"]]
            token = page["nextPageToken"]
            if not token:
                break
        assert seen == expected, order


def test_serving_records_and_experiments(http: httpx.Client) -> None:
    model = made(http.post(f"{API}/registered_models", json={"name": unique("served")}))
    v1 = made(http.post(f"{API}/registered_models/{model['id']}/versions", json={"name": "v1"}))
    v2 = made(http.post(f"{API}/registered_models/{model['id']}/versions", json={"name": "v2"}))
    environment = made(http.post(f"{API}/serving_environments", json={"name": unique("env")}))
    service = made(
        http.post(
            f"{API}/serving_environments/{environment['id']}/inference_services",
            json={"registeredModelId": model["id"], "runtime": "sklearn", "name": unique("isvc")},
        )
    )
    assert service["desiredState"] == "DEPLOYED"
    assert service["servingEnvironmentId"] == environment["id"]
    assert (
        made(http.get(f"{API}/inference_services/{service['id']}/model"), 200)["id"] == model["id"]
    )
    # no version named: the latest LIVE one is served
    assert (
        made(http.get(f"{API}/inference_services/{service['id']}/version"), 200)["id"] == v2["id"]
    )
    made(http.patch(f"{API}/model_versions/{v2['id']}", json={"state": "ARCHIVED"}), 200)
    assert (
        made(http.get(f"{API}/inference_services/{service['id']}/version"), 200)["id"] == v1["id"]
    )
    serve = made(
        http.post(
            f"{API}/inference_services/{service['id']}/serves",
            json={"modelVersionId": v1["id"], "lastKnownState": "RUNNING"},
        )
    )
    served = made(http.get(f"{API}/inference_services/{service['id']}/serves"), 200)
    assert [s["id"] for s in served["items"]] == [serve["id"]]

    experiment = made(http.post(f"{API}/experiments", json={"name": unique("exp")}))
    run = made(
        http.post(f"{API}/experiments/{experiment['id']}/experiment_runs", json={"name": "r1"})
    )
    assert run["experimentId"] == experiment["id"]
    for step, value in enumerate((0.9, 0.5, 0.2)):
        made(
            http.post(
                f"{API}/experiment_runs/{run['id']}/artifacts",
                json={"artifactType": "metric", "name": "loss", "value": value, "step": step},
            ),
            200,
        )
    made(
        http.post(
            f"{API}/experiment_runs/{run['id']}/artifacts",
            json={
                "artifactType": "parameter",
                "name": "lr",
                "value": "0.01",
                "parameterType": "number",
            },
        ),
        200,
    )
    artifacts = made(http.get(f"{API}/experiment_runs/{run['id']}/artifacts"), 200)
    loss = [a for a in artifacts["items"] if a["name"] == "loss"]
    assert len(loss) == 1 and loss[0]["value"] == 0.2  # the metric holds its latest value
    history = made(
        http.get(f"{API}/experiment_runs/{run['id']}/metric_history", params={"name": "loss"}), 200
    )
    assert [(h["step"], h["value"]) for h in history["items"]] == [(0, 0.9), (1, 0.5), (2, 0.2)]
    some = made(
        http.get(f"{API}/experiment_runs/{run['id']}/metric_history", params={"stepIds": "0,2"}),
        200,
    )
    assert [h["step"] for h in some["items"]] == [0, 2]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "words"),
    [
        ("POST", "/registered_models", {"nme": "typo"}, 400, "no field 'nme'"),
        ("POST", "/registered_models", {"name": "x", "state": "GONE"}, 400, "state must be one of"),
        (
            "POST",
            "/registered_models",
            {
                "name": "x",
                "customProperties": {"p": {"metadataType": "MetadataIntValue", "int_value": "1.5"}},
            },
            400,
            "customProperties.p.int_value",
        ),
        ("POST", "/model_versions", {"name": "v"}, 400, "registeredModelId"),
        (
            "POST",
            "/model_versions",
            {"name": "v", "registeredModelId": "999999"},
            404,
            "registeredModelId",
        ),
        ("POST", "/artifacts", {"artifactType": "pickle"}, 400, "artifactType must be one of"),
        ("GET", "/registered_model", None, 400, "name or externalId"),
        ("GET", "/registered_models/abc", None, 400, "id"),
        ("GET", "/registered_models?filterQuery=name%20%3D", None, 400, "filterQuery"),
        ("GET", "/registered_models?nextPageToken=forged", None, 400, "nextPageToken"),
        ("GET", "/registered_models?orderBy=NAME", None, 400, "orderBy"),
    ],
)
def test_refusals_name_the_field(
    http: httpx.Client, method: str, path: str, body: Any, status: int, words: str
) -> None:
    before = made(http.get(f"{API}/registered_models", params={"pageSize": "1000"}), 200)["size"]
    response = http.request(method, API + path, json=body)
    assert response.status_code == status, response.text
    error = response.json()
    assert set(error) == {"code", "message"} and error["code"] == str(status)
    assert words in error["message"], error["message"]
    after = made(http.get(f"{API}/registered_models", params={"pageSize": "1000"}), 200)["size"]
    assert after == before


def test_duplicate_names_conflict_and_a_non_json_body_is_refused(http: httpx.Client) -> None:
    name = unique("twice")
    made(http.post(f"{API}/registered_models", json={"name": name}))
    twice = http.post(f"{API}/registered_models", json={"name": name})
    assert twice.status_code == 409 and name in twice.json()["message"]
    text = http.post(
        f"{API}/registered_models", content=b"name=x", headers={"content-type": "text/plain"}
    )
    assert text.status_code in (400, 415)


def test_the_openapi_document(http: httpx.Client) -> None:
    document = made(http.get(f"{API}/openapi.json"), 200)
    assert f"{API}/registered_models" in document["paths"]
    assert "post" in document["paths"][f"{API}/model_versions/{{id}}/artifacts"]
