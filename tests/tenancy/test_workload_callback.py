"""A workload calls the server that started it back: a real KFP component, run by a
real ``ketch up``, finds the server in ``KETCH_URL`` (with ``KETCH_CA_FILE`` over
HTTPS) and, with authentication on, its namespace's ``KETCH_TOKEN``, then asks who it
is and lists its namespace's runs over HTTP, as a component registering its model
with the model registry would. Single-user over HTTP (no token given), and with users
over HTTPS with Ketch's own CA (the token in no manifest, log or server output)."""

import json
import re
import ssl
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from google.protobuf import json_format
from kfp import dsl

from ketch.core import tls
from tests.server.fixtures import SERVER_ENV, serve
from tests.server.helpers import Server, wait_until
from tests.tenancy.helpers import add_users, directory_of
from tests.tenancy.profiles import PROFILES, profile

pytestmark = pytest.mark.timeout(300)

ADMIN, OWNER = "admin@example.com", "owner@example.com"
TOKEN = re.compile(r"ketch_[\w-]{40,}")


@dsl.component
def call_back(namespace: str) -> str:
    import json
    import os
    import ssl
    import urllib.request

    url = os.environ["KETCH_URL"]
    token = os.environ.get("KETCH_TOKEN", "")
    ca = os.environ.get("KETCH_CA_FILE")
    context = ssl.create_default_context(cafile=ca) if url.startswith("https:") else None

    def get(path: str) -> dict:
        request = urllib.request.Request(url + path)
        if token:
            request.add_header("Authorization", "Bearer " + token)
        with urllib.request.urlopen(request, context=context, timeout=30) as answer:
            return json.loads(answer.read())

    me = get("/auth/whoami")
    runs = get("/apis/v2beta1/runs?namespace=" + namespace).get("runs") or []
    listed = os.environ["KETCH_RUN_ID"] in [run["run_id"] for run in runs]
    print("called back as", me["user"])
    return json.dumps({"url": url, "token": bool(token), "user": me["user"], "listed": listed})


@dsl.pipeline(name="call-back")
def calling_back(namespace: str) -> str:
    return call_back(namespace=namespace).output


SPEC = json_format.MessageToDict(calling_back.pipeline_spec)


def run_path(namespace: str, name: str | None = None) -> str:
    base = f"/apis/pipelines.ketch.dev/v1/namespaces/{namespace}/pipelineruns"
    return f"{base}/{name}" if name else base


def called_back(http: httpx.Client, namespace: str) -> tuple[dict[str, Any], str]:
    """Run the pipeline in ``namespace``; what its task saw, and the run's id."""
    made = http.post(
        run_path(namespace),
        json={
            "apiVersion": "pipelines.ketch.dev/v1",
            "kind": "PipelineRun",
            "metadata": {"name": "call-back"},
            "spec": {"pipelineSpec": SPEC, "parameters": {"namespace": namespace}},
        },
    )
    assert made.status_code == 201, made.text
    run_id = made.json()["metadata"]["name"]

    def finished() -> dict[str, Any] | None:
        status: dict[str, Any] = http.get(run_path(namespace, run_id)).json().get("status", {})
        return status if status.get("state") in ("SUCCEEDED", "FAILED", "CANCELED") else None

    status = wait_until(finished, timeout=120)
    assert status and status["state"] == "SUCCEEDED", http.get(run_path(namespace, run_id)).text
    return json.loads(status["outputs"]["Output"]), run_id


def test_a_component_calls_a_single_user_server_back(server: Server, ns: str) -> None:
    with server.client() as http:
        seen, _ = called_back(http, ns)
    assert seen == {"url": server.url, "token": False, "user": "local", "listed": True}


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("ketch-callback-tls")
    yield from serve(Server(home, extra_env=SERVER_ENV, args=("--tls-self-signed",)))


def test_a_component_calls_an_https_server_with_users_back_with_its_token(
    tls_server: Server,
) -> None:
    server, namespace = tls_server, "team-callback"
    assert server.url.startswith("https://")
    for directory in directory_of(server):
        tokens = add_users(directory, (ADMIN, OWNER), admin=ADMIN)
    trusted = ssl.create_default_context(cafile=str(tls.ca_path(server.home)))
    with server.client(
        verify=trusted, headers={"Authorization": f"Bearer {tokens[ADMIN]}"}
    ) as http:
        assert http.post(PROFILES, json=profile(namespace, OWNER)).status_code == 201
    with server.client(
        verify=trusted, headers={"Authorization": f"Bearer {tokens[OWNER]}"}
    ) as http:
        seen, run_id = called_back(http, namespace)
        assert seen == {
            "url": server.url,
            "token": True,
            "user": f"system:serviceaccount:{namespace}:default-editor",
            "listed": True,
        }
        # the token is in no manifest or log the API shows, nor in the server's output
        shown = "".join(
            http.get(path).text
            for path in (
                run_path(namespace, run_id),
                f"{run_path(namespace, run_id)}/logs",
                f"/api/v1/namespaces/{namespace}/pods",
            )
        )
        assert "called back as system:serviceaccount" in shown
        assert not TOKEN.search(shown)
    assert not TOKEN.search(server.output())
