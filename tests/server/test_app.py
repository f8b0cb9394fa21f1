"""Health checks, the error shape on every route, body limits and the OpenAPI document."""

from __future__ import annotations

from pathlib import Path

import httpx
from pydantic import BaseModel

from ketch.capabilities import create_app
from ketch.server import errors
from tests.server.helpers import Server, ThreadServer, assert_error, free_port


def test_healthz_and_readyz(client: httpx.Client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json() == {"status": "ok"}


def test_openapi_and_docs_are_served(client: httpx.Client) -> None:
    document = client.get("/openapi.json").json()
    paths = document["paths"]
    for path in (
        "/healthz",
        "/readyz",
        "/apis/{group}/{version}/namespaces/{namespace}/{plural}",
        "/apis/{group}/{version}/namespaces/{namespace}/{plural}/{name}",
        "/apis/{group}/{version}/namespaces/{namespace}/{plural}/{name}/status",
        "/apis/{group}/{version}/namespaces/{namespace}/{plural}/{name}/log",
        "/apis/{group}/{version}/watch/namespaces/{namespace}/{plural}",
        "/api/v1/namespaces/{namespace}/events",
    ):
        assert path in paths, path
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


def test_unknown_path_and_method_use_the_error_shape(client: httpx.Client) -> None:
    assert_error(client.get("/no/such/thing"), 404)
    body = client.get("/no/such/thing").json()
    assert body["code"] == 5
    response = client.delete("/healthz")
    assert_error(response, 405)


def test_malformed_json_and_yaml_bodies_are_400(client: httpx.Client, ns: str) -> None:
    path = f"/apis/kubeflow.org/v1/namespaces/{ns}/pytorchjobs"
    bad_json = client.post(
        path, content=b'{"apiVersion": ', headers={"content-type": "application/json"}
    )
    assert assert_error(bad_json, 400, "malformed JSON").startswith("body:")
    assert bad_json.json()["reason"] == "BadRequest"
    assert bad_json.json()["details"]["causes"][0]["field"] == "body"
    bad_yaml = client.post(
        path, content=b"kind: [unclosed", headers={"content-type": "application/yaml"}
    )
    assert_error(bad_yaml, 400, "malformed YAML")
    assert_error(
        client.post(path, content=b"", headers={"content-type": "application/json"}), 400, "body"
    )
    assert_error(client.post(path, json=[1, 2]), 400, "must be a JSON object")
    two = b"kind: A\n---\nkind: B\n"
    assert_error(
        client.post(path, content=two, headers={"content-type": "application/yaml"}),
        400,
        "one per request",
    )


def test_query_validation_is_one_message_naming_the_field(client: httpx.Client, ns: str) -> None:
    response = client.get(
        f"/apis/kubeflow.org/v1/namespaces/{ns}/pytorchjobs", params={"limit": "many"}
    )
    message = assert_error(response, 400, "query.limit")
    assert "input" in message and "[" not in message


def test_oversized_bodies_are_413(client: httpx.Client, ns: str) -> None:
    path = f"/apis/kubeflow.org/v1/namespaces/{ns}/pytorchjobs"
    big = b'{"pad": "' + b"x" * (1024 * 1024 + 10) + b'"}'
    response = client.post(path, content=big, headers={"content-type": "application/json"})
    assert_error(response, 413, "KETCH_MAX_UPLOAD_BYTES")
    assert response.json()["reason"] == "RequestEntityTooLarge"

    def chunks():  # no Content-Length: the limit is enforced while reading
        for _ in range(20):
            yield b"x" * (64 * 1024)

    streamed = client.post(path, content=chunks(), headers={"content-type": "application/json"})
    assert_error(streamed, 413, "larger than")


def test_upload_limit_default_and_override(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv(errors.MAX_UPLOAD_ENV, raising=False)
    assert errors.max_upload_bytes() == 32 * 1024 * 1024
    monkeypatch.setenv(errors.MAX_UPLOAD_ENV, "2048")
    assert errors.max_upload_bytes() == 2048
    monkeypatch.setenv(errors.MAX_UPLOAD_ENV, "lots")
    assert errors.max_upload_bytes() == 32 * 1024 * 1024


class _Thing(BaseModel):
    name: str
    size: int


def test_handlers_cover_pydantic_bodies_and_unhandled_errors(tmp_path: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    app = create_app(database_url=f"sqlite:///{tmp_path / 'k.db'}", background=False)

    async def make(thing: _Thing) -> dict[str, str]:
        return {"name": thing.name}

    async def boom() -> None:
        raise RuntimeError("secret internals")

    app.add_api_route("/test/things", make, methods=["POST"])
    app.add_api_route("/test/boom", boom, methods=["GET"])
    with ThreadServer(app) as server, httpx.Client(base_url=server.url) as http:
        missing = http.post("/test/things", json={"size": 1})
        assert assert_error(missing, 400) == "body.name: field required"
        wrong = http.post("/test/things", json={"name": "a", "size": "big"})
        assert_error(wrong, 400, "body.size:")
        malformed = http.post(
            "/test/things", content=b"{", headers={"content-type": "application/json"}
        )
        assert_error(malformed, 400, "malformed JSON")
        crash = http.get("/test/boom")
        message = assert_error(crash, 500, "internal server error")
        assert "secret" not in message and crash.json()["code"] == 13
    assert any("secret internals" in (r.exc_text or "") or r.exc_info for r in caplog.records)


def test_readyz_is_503_when_the_database_is_unreachable(tmp_path: Path) -> None:
    # Nothing listens on that port; lifespan off, so the server starts regardless.
    app = create_app(
        database_url=f"postgresql://ketch@127.0.0.1:{free_port()}/none", background=False
    )
    with ThreadServer(app, lifespan="off") as server, httpx.Client(base_url=server.url) as http:
        assert http.get("/healthz").status_code == 200
        response = http.get("/readyz")
        assert_error(response, 503, "database")
        assert response.json()["code"] == 14


def test_server_home_holds_the_database(server: Server) -> None:
    if server.database_url is None:
        assert (server.home / "ketch.db").exists()
