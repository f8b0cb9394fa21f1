"""Errors on the Kubernetes paths are Kubernetes ``Status`` objects (reason, details,
causes naming the field), with Ketch's message and hint; the KFP facade and every
other path keep grpc-gateway's body. Checked against a real ``ketch up``, an
in-process server for the reasons no Ketch route gives yet, Ketch's own client and
the real kubectl."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from ketch.capabilities import create_app
from ketch.core.errors import InvalidSpec, KetchError, NotFound
from ketch.core.http import ApiClient
from ketch.server.errors import Gone, ServiceUnavailable, is_kubernetes_path
from tests.server.fixtures import job, jobs_path, runtime, runtimes_path
from tests.server.helpers import Server, ThreadServer, assert_error, assert_status
from tests.server.kubectl import kubectl_for

STATUS_KEYS = {"kind", "apiVersion", "metadata", "status", "message", "reason", "details", "code"}


def status_of(response: httpx.Response, code: int, reason: str, *fragments: str) -> dict[str, Any]:
    """The ``Status`` body of ``response``, checked to be a failure with ``code`` and
    ``reason`` whose message holds ``fragments``."""
    assert_status(response, code, reason, *fragments)
    body: dict[str, Any] = response.json()
    assert set(body) == STATUS_KEYS, body
    return body


def grpc_body(response: httpx.Response, code: int) -> dict[str, Any]:
    assert response.status_code == code, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"error", "message", "code", "details"}, body
    assert "kind" not in body
    return body


# -- which paths are Kubernetes paths -----------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/api",
        "/api/v1",
        "/api/v1/namespaces/default/events",
        "/apis",
        "/apis/kubeflow.org/v1",
        "/apis/kubeflow.org/v1/namespaces/a/pytorchjobs/b",
        "/apis/no.such.group/v1/things",
        "/apis/pipelines.ketch.dev/v1/namespaces/a/pipelineruns/b/cancel",
        "/version",
        "/openapi/v2",
        "/openapi/v3",
        "/openapi/v3/apis/kubeflow.org/v1",
    ],
)
def test_kubernetes_paths(path: str) -> None:
    assert is_kubernetes_path(path)


@pytest.mark.parametrize(
    "path",
    [
        "/apis/v2beta1/runs",
        "/apis/v2beta1/pipelines/upload",
        "/apis/v1beta1/healthz",
        "/openapi.json",
        "/docs",
        "/healthz",
        "/readyz",
        "/v1/models/iris:predict",
        "/apiserver",
        "/",
    ],
)
def test_other_paths(path: str) -> None:
    assert not is_kubernetes_path(path)


# -- a real ketch up ------------------------------------------------------------------------


def test_not_found_names_the_object_as_kubernetes_does(client: httpx.Client, ns: str) -> None:
    body = status_of(
        client.get(jobs_path(ns, "missing")),
        404,
        "NotFound",
        'pytorchjobs.kubeflow.org "missing" not found',
        f"ketch get pytorchjob -n {ns}",  # Ketch's hint after the Kubernetes form
    )
    assert body["message"].startswith('pytorchjobs.kubeflow.org "missing" not found')
    assert body["details"] == {"name": "missing", "group": "kubeflow.org", "kind": "pytorchjobs"}
    for method in ("DELETE", "PATCH"):
        response = client.request(
            method,
            jobs_path(ns, "missing"),
            json={"spec": {}},
            headers={"content-type": "application/merge-patch+json"},
        )
        assert status_of(response, 404, "NotFound")["details"]["name"] == "missing"


def test_unknown_paths_under_api_and_apis_are_status(client: httpx.Client) -> None:
    unknown_kind = status_of(
        client.get("/apis/kubeflow.org/v1/namespaces/x/pytorchjob"), 404, "NotFound", "pytorchjobs"
    )
    assert unknown_kind["details"]["group"] == "kubeflow.org"
    for path in ("/apis/kubeflow.org/v1/a/b/c/d/e/f/g", "/api/v9/no/such/thing/at/all"):
        status_of(client.get(path), 404, "NotFound", "could not find the requested resource", path)


def test_kfp_facade_and_other_paths_keep_grpc_gateway_bodies(client: httpx.Client) -> None:
    assert grpc_body(client.get("/apis/v2beta1/no/such/route"), 404)["code"] == 5
    assert grpc_body(client.get("/apis/v2beta1/runs/no-such-run"), 404)["code"] == 5
    assert grpc_body(client.get("/no/such/thing"), 404)["code"] == 5
    forbidden = client.get("/apis/v2beta1/runs", headers={"host": "evil.example"})
    assert grpc_body(forbidden, 403)["code"] == 7


def test_create_of_an_existing_name_is_already_exists(client: httpx.Client, ns: str) -> None:
    assert client.post(runtimes_path(ns), json=runtime("taken")).status_code == 201
    body = status_of(
        client.post(runtimes_path(ns), json=runtime("taken")),
        409,
        "AlreadyExists",
        'trainingruntimes.trainer.kubeflow.org "taken" already exists',
        "use apply to update it",
    )
    assert body["details"] == {
        "name": "taken",
        "group": "trainer.kubeflow.org",
        "kind": "trainingruntimes",
    }


def test_stale_update_is_conflict(client: httpx.Client, ns: str) -> None:
    created = client.post(runtimes_path(ns), json=runtime("stale")).json()
    version = created["metadata"]["resourceVersion"]
    assert client.put(runtimes_path(ns, "stale"), json=runtime("stale", spec={"x": 1})).is_success
    old = runtime("stale", spec={"x": 2})
    old["metadata"]["resourceVersion"] = version
    body = status_of(
        client.put(runtimes_path(ns, "stale"), json=old),
        409,
        "Conflict",
        'Operation cannot be fulfilled on trainingruntimes.trainer.kubeflow.org "stale"',
        "resourceVersion",
        "read it again and retry",
    )
    assert body["details"]["name"] == "stale"
    stale_status = {"metadata": {"resourceVersion": version}, "status": {}}
    status_of(
        client.put(runtimes_path(ns, "stale") + "/status", json=stale_status), 409, "Conflict"
    )


def test_invalid_object_is_422_with_a_cause_naming_the_field(client: httpx.Client, ns: str) -> None:
    bad = job("bad", spec={"pytorchReplicaSpecs": {}})
    body = status_of(
        client.post(jobs_path(ns), json=bad),
        422,
        "Invalid",
        'PyTorchJob.kubeflow.org "bad" is invalid: spec.pytorchReplicaSpecs',
    )
    details = body["details"]
    assert details["name"] == "bad" and details["kind"] == "PyTorchJob"
    assert details["group"] == "kubeflow.org"
    (cause,) = details["causes"]
    assert cause["reason"] == "FieldValueInvalid"
    assert cause["field"] == "spec.pytorchReplicaSpecs"
    assert cause["message"] and not cause["message"].startswith("spec.")
    assert client.get(jobs_path(ns, "bad")).status_code == 404

    named = status_of(client.post(jobs_path(ns), json=job("Upper_Case")), 422, "Invalid")
    assert named["details"]["causes"][0]["field"] == "metadata.name"
    unnamed = job("x")
    unnamed["metadata"] = {}
    status_of(client.post(jobs_path(ns), json=unnamed), 422, "Invalid", "metadata.name")


def test_bad_requests_are_400_naming_the_field(client: httpx.Client, ns: str) -> None:
    malformed = status_of(
        client.post(
            jobs_path(ns), content=b'{"kind": ', headers={"content-type": "application/json"}
        ),
        400,
        "BadRequest",
        "malformed JSON",
    )
    assert malformed["details"]["causes"][0]["field"] == "body"
    limit = status_of(
        client.get(jobs_path(ns), params={"limit": "many"}), 400, "BadRequest", "limit"
    )
    assert [c["field"] for c in limit["details"]["causes"]] == ["limit"]
    selector = status_of(
        client.get(jobs_path(ns), params={"labelSelector": "a=b=c"}), 400, "BadRequest"
    )
    assert selector["details"]["causes"][0]["field"] == "labelSelector"
    bad_ns = status_of(
        client.get("/apis/kubeflow.org/v1/namespaces/Bad_NS/pytorchjobs"), 400, "BadRequest"
    )
    assert bad_ns["details"]["causes"][0]["field"] == "namespace"


def test_guard_answers_status_on_kubernetes_paths(client: httpx.Client, ns: str) -> None:
    forbidden = status_of(
        client.get(jobs_path(ns), headers={"host": "evil.example"}),
        403,
        "Forbidden",
        "does not answer to host",
    )
    assert forbidden["details"] == {}
    status_of(
        client.post(jobs_path(ns), json=job("x"), headers={"origin": "http://evil.example"}),
        403,
        "Forbidden",
        "cross-origin",
    )
    status_of(
        client.post(jobs_path(ns), content=b"kind: x", headers={"content-type": "text/plain"}),
        415,
        "UnsupportedMediaType",
        "Content-Type text/plain",
    )


def test_body_limit_method_not_allowed(client: httpx.Client, ns: str) -> None:
    big = b'{"pad": "' + b"x" * (1024 * 1024 + 10) + b'"}'
    status_of(
        client.post(jobs_path(ns), content=big, headers={"content-type": "application/json"}),
        413,
        "RequestEntityTooLarge",
        "KETCH_MAX_UPLOAD_BYTES",
    )
    wrong_method = client.post(jobs_path(ns, "x"), json=job("x"))
    status_of(wrong_method, 405, "MethodNotAllowed", "POST is not allowed")
    assert "GET" in wrong_method.headers["allow"]
    run = "/apis/pipelines.ketch.dev/v1/namespaces/default/pipelineruns/some-run"
    status_of(client.patch(run, json={"spec": {}}), 405, "MethodNotAllowed", "cannot be patched")


def test_ketch_client_reads_the_status_message(server: Server, ns: str) -> None:
    with ApiClient(server.url) as api:
        with pytest.raises(NotFound) as missing:
            api.json("GET", jobs_path(ns, "nothing"))
        assert str(missing.value).startswith('pytorchjobs.kubeflow.org "nothing" not found')
        with pytest.raises(InvalidSpec) as invalid:  # a 422 is the user's to fix, exit 2
            api.json("POST", jobs_path(ns), json=job("bad", spec={"pytorchReplicaSpecs": {}}))
        assert "spec.pytorchReplicaSpecs" in str(invalid.value)
        assert invalid.value.exit_code == 2


# -- the reasons no Ketch route gives yet: an in-process server ------------------------------


class _Unauthorized(KetchError):
    http_status = 401


class _TooMany(KetchError):
    http_status = 429


_RAISES: dict[str, Exception] = {
    "gone": Gone("the watch's resourceVersion 3 is too old", hint="list again"),
    "unauthorized": _Unauthorized("a bearer token is required"),
    "busy": _TooMany("too many requests; slow down"),
    "unavailable": ServiceUnavailable("the server is shutting down"),
    "crash": RuntimeError("secret internals"),
}


@pytest.fixture(scope="module")
def raising(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    home = tmp_path_factory.mktemp("raising")
    app = create_app(database_url=f"sqlite:///{home / 'k.db'}", background=False)

    async def fail(what: str) -> None:
        raise _RAISES[what]

    # deeper than any resource route, so none of them matches first
    app.add_api_route("/apis/test.ketch.dev/v1/a/b/c/d/{what}", fail, methods=["GET"])
    app.add_api_route("/test/{what}", fail, methods=["GET"])
    with ThreadServer(app) as running, httpx.Client(base_url=running.url) as http:
        yield http


@pytest.mark.parametrize(
    ("what", "code", "reason", "fragment"),
    [
        ("gone", 410, "Gone", "too old (list again)"),
        ("unauthorized", 401, "Unauthorized", "bearer token"),
        ("busy", 429, "TooManyRequests", "slow down"),
        ("unavailable", 503, "ServiceUnavailable", "shutting down"),
        ("crash", 500, "InternalError", "internal server error"),
    ],
)
def test_every_reason(
    raising: httpx.Client, what: str, code: int, reason: str, fragment: str
) -> None:
    body = status_of(raising.get(f"/apis/test.ketch.dev/v1/a/b/c/d/{what}"), code, reason, fragment)
    assert "secret" not in body["message"]
    elsewhere = raising.get(f"/test/{what}")
    assert_error(elsewhere, code, fragment)
    assert "kind" not in elsewhere.json()


# -- the real kubectl ----------------------------------------------------------------------


def test_kubectl_prints_kubernetes_errors(server: Server, tmp_path: Path) -> None:
    kubectl = kubectl_for(server.url, tmp_path)
    name = f"missing-{uuid.uuid4().hex[:8]}"
    # In "default": for another namespace kubectl first asks whether the namespace exists.
    missing = kubectl.run("get", "pytorchjob", name, "-n", "default", check=False)
    assert missing.returncode == 1, missing
    assert (
        f'Error from server (NotFound): pytorchjobs.kubeflow.org "{name}" not found'
        in missing.stderr
    ), missing.stderr
    assert "ketch get pytorchjob" in missing.stderr

    taken = f"taken-{uuid.uuid4().hex[:8]}"
    manifest = tmp_path / "job.yaml"
    manifest.write_text(yaml.safe_dump({**job(taken), "metadata": {"name": taken}}))
    kubectl.run("create", "-f", str(manifest), "-n", "default", "--validate=false")
    again = kubectl.run(
        "create", "-f", str(manifest), "-n", "default", "--validate=false", check=False
    )
    assert again.returncode == 1
    assert "Error from server (AlreadyExists)" in again.stderr, again.stderr
    assert f'pytorchjobs.kubeflow.org "{taken}" already exists' in again.stderr

    bad = tmp_path / "bad.yaml"
    bad_name = f"bad-{uuid.uuid4().hex[:8]}"
    bad.write_text(
        yaml.safe_dump(
            {**job(bad_name, spec={"pytorchReplicaSpecs": {}}), "metadata": {"name": bad_name}}
        )
    )
    invalid = kubectl.run(
        "create", "-f", str(bad), "-n", "default", "--validate=false", check=False
    )
    assert invalid.returncode == 1
    # kubectl words an Invalid Status from its details: kind, name, the causes' fields
    assert f'The PyTorchJob "{bad_name}" is invalid' in invalid.stderr, invalid.stderr
    assert "spec.pytorchReplicaSpecs" in invalid.stderr
    kubectl.run("delete", "pytorchjob", taken, "-n", "default")
