"""Who may call an InferenceService's endpoints once authentication is on, through a
real ``ketch up`` and its router over HTTP: 401 without credentials (or with a token
that is not one), 403 without a role in the service's namespace, 200 for its
viewers, editors, owner and cluster admins; the ``serving.ketch.dev/public``
annotation opens it to anyone; a revoked token and a removed RoleBinding stop
working within about a second; a transformer reaches its predictor's router with its
namespace's service-account token, and the caller's credentials never reach a model."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ketch.core.resource import Resource
from ketch.serving.secret import ENV as SECRET_ENV
from ketch.serving.secret import HEADER as SECRET_HEADER
from ketch.tenancy.users import Directory
from tests.server.fixtures import SERVER_ENV, serve
from tests.server.helpers import Server, wait_until
from tests.serving.test_inferenceservice_helpers import ROW, V2_BODY, iris_uri, unique
from tests.tenancy.helpers import add_users, directory_of, profile

__all__ = ["iris_uri"]  # a fixture

ADMIN, OWNER, VIEWER, STRANGER = (
    "admin@example.com",
    "owner@example.com",
    "viewer@example.com",
    "stranger@example.com",
)
NAMESPACE = "team-serving"
API = f"/apis/serving.kserve.io/v1beta1/namespaces/{NAMESPACE}/inferenceservices"
BINDINGS = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{NAMESPACE}/rolebindings"

PEEK = '''
from ketch.serving import Model


class Peek(Model):
    """Passes requests on to the predictor; answers with the headers it was sent."""

    def preprocess(self, payload, headers=None):
        self.seen = sorted(str(k).lower() for k in (headers or {}))
        return payload

    def postprocess(self, result, headers=None):
        return {**result, "headers": self.seen}
'''


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from serve(Server(tmp_path_factory.mktemp("isvc-access"), extra_env=SERVER_ENV))


@pytest.fixture(scope="module")
def directory(server: Server) -> Iterator[Directory]:
    yield from directory_of(server)


@pytest.fixture(scope="module")
def tokens(server: Server, directory: Directory) -> dict[str, str]:
    made = add_users(directory, (ADMIN, OWNER, VIEWER, STRANGER), admin=ADMIN)
    store = server.store()
    store.apply(profile(NAMESPACE, OWNER))
    store.apply(_binding("viewer", VIEWER))
    return made


def _binding(name: str, user: str) -> Resource:
    return Resource.from_manifest(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "kubeflow-view",
                },
                "subjects": [
                    {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}
                ],
            },
        }
    )


def _headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def _serve(
    server: Server, token: str, name: str, spec: dict[str, Any], annotations: dict[str, str]
) -> str:
    """Apply InferenceService ``name`` as the caller of ``token``; its URL once ready."""
    doc = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": name, "namespace": NAMESPACE, "annotations": annotations},
        "spec": spec,
    }
    with server.client(headers=_headers(token)) as http:
        answer = http.put(f"{API}/{name}", json=doc)
        assert answer.status_code in (200, 201), answer.text

        def ready() -> str | None:
            status = http.get(f"{API}/{name}").json().get("status", {})
            for condition in status.get("conditions", []):
                if condition["type"] == "Ready" and condition["status"] == "True":
                    return str(status["url"])
            return None

        url = wait_until(ready, timeout=120)
        assert url, f"{name} never became ready: {server.output()[-3000:]}"
        return str(url)


def _predict(url: str, name: str, token: str | None) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/models/{name}:predict",
        json={"instances": [ROW]},
        headers=_headers(token),
        timeout=60,
    )


def _infer(url: str, name: str, token: str | None) -> httpx.Response:
    return httpx.post(
        f"{url}/v2/models/{name}/infer", json=V2_BODY, headers=_headers(token), timeout=60
    )


@pytest.fixture(scope="module")
def service(server: Server, tokens: dict[str, str], iris_uri: str) -> tuple[str, str]:
    name = unique("guarded")
    url = _serve(
        server, tokens[OWNER], name, {"predictor": {"sklearn": {"storageUri": iris_uri}}}, {}
    )
    return name, url


def test_callers_need_view_in_the_namespace(
    service: tuple[str, str], tokens: dict[str, str]
) -> None:
    name, url = service
    for call in (_predict, _infer):
        anonymous = call(url, name, None)
        assert anonymous.status_code == 401, anonymous.text
        assert anonymous.headers["www-authenticate"].startswith("Bearer")
        assert "sign in" in anonymous.json()["error"]
        wrong = call(url, name, "ketch_not-a-token")
        assert wrong.status_code == 401 and "not valid" in wrong.json()["error"]
        stranger = call(url, name, tokens[STRANGER])
        assert stranger.status_code == 403, stranger.text
        message = stranger.json()["error"]
        assert STRANGER in message and NAMESPACE in message and "public" in message
        for who in (VIEWER, OWNER, ADMIN):
            allowed = call(url, name, tokens[who])
            assert allowed.status_code == 200, (who, allowed.text)
    assert _predict(url, name, tokens[VIEWER]).json() == {"predictions": [0]}
    # every path of the service's URL is guarded, not only inference
    assert httpx.get(f"{url}/v2/models/{name}/ready").status_code == 401
    ready = httpx.get(f"{url}/v2/models/{name}/ready", headers=_headers(tokens[VIEWER]))
    assert ready.status_code == 200


def test_a_replica_answers_only_its_router(
    server: Server, service: tuple[str, str], tokens: dict[str, str]
) -> None:
    name, url = service
    with server.client(headers=_headers(tokens[OWNER])) as http:
        doc = http.get(f"{API}/{name}").json()
        pods = http.get(f"/api/v1/namespaces/{NAMESPACE}/pods").text
    replica = doc["status"]["ketch"]["replicas"][0]
    # the replica's own port skips nothing: without its router's secret it refuses
    # everyone, the service's owner too
    for token in (None, tokens[OWNER]):
        for call in (_predict, _infer):
            direct = call(replica["url"], name, token)
            assert direct.status_code == 403, direct.text
            assert "status.url" in direct.json()["error"]
    assert _infer(url, name, tokens[OWNER]).status_code == 200
    # the secret is in the replica's environment, and shown nowhere
    environ = Path(f"/proc/{replica['pid']}/environ").read_bytes().split(b"\0")
    prefix = f"{SECRET_ENV}=".encode()
    (secret,) = [v[len(prefix) :].decode() for v in environ if v.startswith(prefix)]
    with_secret = httpx.post(
        f"{replica['url']}/v2/models/{name}/infer", json=V2_BODY, headers={SECRET_HEADER: secret}
    )
    assert with_secret.status_code == 200, with_secret.text
    shown = [
        json.dumps(doc),
        pods,
        Path(f"/proc/{replica['pid']}/cmdline").read_bytes().decode(errors="replace"),
        server.output(),
        *(Path(log).read_text(errors="replace") for log in doc["status"]["logPaths"].values()),
    ]
    for text in shown:
        assert secret not in text


def test_a_public_service_answers_anyone(
    server: Server, tokens: dict[str, str], iris_uri: str
) -> None:
    name = unique("open")
    spec = {"predictor": {"sklearn": {"storageUri": iris_uri}}}
    url = _serve(server, tokens[OWNER], name, spec, {"serving.ketch.dev/public": "true"})
    assert _predict(url, name, None).json() == {"predictions": [0]}
    assert _infer(url, name, tokens[STRANGER]).status_code == 200
    # taking the annotation away closes it again
    with server.client(headers=_headers(tokens[OWNER])) as http:
        patched = http.patch(
            f"{API}/{name}",
            json={"metadata": {"annotations": {"serving.ketch.dev/public": None}}},
            headers={"Content-Type": "application/merge-patch+json"},
        )
        assert patched.status_code == 200, patched.text
    assert wait_until(lambda: _predict(url, name, None).status_code == 401, timeout=10)
    assert _predict(url, name, tokens[STRANGER]).status_code == 403


def test_a_revoked_token_stops_working_within_a_second(
    service: tuple[str, str], directory: Directory
) -> None:
    name, url = service
    token, secret = directory.create_token(VIEWER, name="revoked-soon")
    assert _predict(url, name, secret).status_code == 200
    directory.revoke_token(token.id)
    refused = wait_until(lambda: _predict(url, name, secret).status_code == 401, timeout=5)
    assert refused, "the revoked token still works"


def test_a_removed_binding_stops_working(
    server: Server, service: tuple[str, str], directory: Directory, tokens: dict[str, str]
) -> None:
    name, url = service
    reader = "reader@example.com"
    directory.add(reader)
    secret = directory.create_token(reader, name="test")[1]
    with server.client(headers=_headers(tokens[OWNER])) as http:
        stored = _binding("reader", reader)
        binding = {  # as Kubernetes has it: roleRef and subjects at the top
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "reader", "namespace": NAMESPACE},
            **stored.spec,
        }
        made = http.post(BINDINGS, json=binding)
        if made.status_code == 404:  # no RoleBinding route on this server: the store
            server.store().apply(stored)
        else:
            assert made.status_code == 201, made.text
        assert wait_until(lambda: _predict(url, name, secret).status_code == 200, timeout=10)
        if made.status_code == 404:
            server.store().delete("RoleBinding", NAMESPACE, "reader")
        else:
            assert http.delete(f"{BINDINGS}/reader").status_code == 200
    assert wait_until(lambda: _predict(url, name, secret).status_code == 403, timeout=10)


def test_a_transformer_calls_its_predictor_as_the_namespace(
    server: Server, tokens: dict[str, str], iris_uri: str, tmp_path: Path
) -> None:
    file = tmp_path / "peek.py"
    file.write_text(PEEK)
    name = unique("chain")
    spec = {
        "predictor": {"sklearn": {"storageUri": iris_uri}},
        "transformer": {
            "containers": [
                {
                    "name": "kserve-container",
                    "image": "unused",
                    "args": [f"--ketch-transformer={file}:Peek"],
                }
            ]
        },
    }
    url = _serve(server, tokens[OWNER], name, spec, {})
    assert _predict(url, name, None).status_code == 401
    answer = _predict(url, name, tokens[VIEWER])
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["predictions"] == [0]
    # the router took the caller's credentials out before the model saw the request, and
    # the replica took out its secret
    assert "authorization" not in body["headers"] and "cookie" not in body["headers"]
    assert "content-type" in body["headers"] and SECRET_HEADER not in body["headers"]
    # the predictor's own router is guarded too: the transformer got through with its
    # namespace's service-account token, which no manifest shows
    with server.client(headers=_headers(tokens[OWNER])) as http:
        doc = http.get(f"{API}/{name}").json()
        predictor = doc["status"]["components"]["predictor"]["url"]
        assert _predict(predictor, name, None).status_code == 401
        pods = http.get(f"/api/v1/namespaces/{NAMESPACE}/pods").text
        assert "KETCH_TOKEN" not in pods and not re.search(r"ketch_[\w-]{40,}", pods)


def test_tokens_never_reach_the_server_log(server: Server, tokens: dict[str, str]) -> None:
    log = server.output()
    for secret in tokens.values():
        assert secret not in log
