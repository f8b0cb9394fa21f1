"""The registry with users: models belong to a profile's namespace. Alice's and Bob's
clients (the real ``model-registry`` client with their tokens) register into their own
profiles without naming one; neither sees the other's models; a contributor with the
view role reads Alice's but cannot write there; nobody signed in is refused; deleting
a profile deletes what the registry kept of its namespace."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from ketch.tenancy.users import Directory
from tests.server.helpers import Server, wait_until
from tests.tenancy.helpers import (
    ADMIN,
    ALICE,
    BOB,
    CAROL,
    as_user,
    directory_of,
    two_owners_and_a_viewer,
)

pytestmark = pytest.mark.timeout(180)

API = "/api/model_registry/v1"


@pytest.fixture(scope="module")
def directory(server: Server) -> Iterator[Directory]:
    yield from directory_of(server)


@pytest.fixture(scope="module")
def tokens(server: Server, directory: Directory) -> dict[str, str]:
    def reads(http: httpx.Client, namespace: str) -> bool:
        found = http.get(f"{API}/registered_models", params={"namespace": namespace})
        return found.status_code == 200

    return two_owners_and_a_viewer(server, directory, ("alice-mr", "bob-mr"), reads)


def test_each_owner_registers_into_their_profile(
    registry_client: Callable[..., Any], server: Server, tokens: dict[str, str]
) -> None:
    alice = registry_client(author=ALICE, token=tokens[ALICE])
    bob = registry_client(author=BOB, token=tokens[BOB])
    alice.register_model(
        "shared-name", "file:///a", model_format_name="onnx", model_format_version="1", version="v1"
    )
    bob.register_model(
        "shared-name", "file:///b", model_format_name="onnx", model_format_version="1", version="v1"
    )
    assert alice.get_model_artifact("shared-name", "v1").uri == "file:///a"
    assert bob.get_model_artifact("shared-name", "v1").uri == "file:///b"
    alice.register_model(
        "alice-only", "file:///a2", model_format_name="onnx", model_format_version="1", version="v1"
    )
    assert bob.get_registered_model("alice-only") is None
    assert {m.name for m in bob.get_registered_models()} == {"shared-name"}

    with as_user(server, tokens[BOB]) as http:
        # naming Alice's namespace is refused, by id too
        assert (
            http.get(f"{API}/registered_models", params={"namespace": "alice-mr"}).status_code
            == 403
        )
        with as_user(server, tokens[ALICE]) as mine:
            found = mine.get(f"{API}/registered_model", params={"name": "alice-only"}).json()
        refused = http.get(f"{API}/registered_models/{found['id']}")
        assert refused.status_code == 403
        assert set(refused.json()) == {"code", "message"} and refused.json()["code"] == "403"
        patched = http.patch(f"{API}/registered_models/{found['id']}", json={"state": "ARCHIVED"})
        assert patched.status_code == 403
    with as_user(server, tokens[CAROL]) as http:
        scope = {"namespace": "alice-mr"}
        listed = http.get(f"{API}/registered_models", params=scope).json()
        assert {"shared-name", "alice-only"} <= {m["name"] for m in listed["items"]}
        assert (
            http.post(f"{API}/registered_models", params=scope, json={"name": "x"}).status_code
            == 403
        )
        # Carol owns no profile: a call that names no namespace says what to do
        lost = http.get(f"{API}/registered_models")
        assert lost.status_code == 400 and "namespace" in lost.json()["message"]
    with as_user(server, None) as http:
        assert http.get(f"{API}/registered_models").status_code == 401
    with as_user(server, tokens[ALICE]) as http:
        # unchanged by Bob's refused archive
        assert http.get(f"{API}/registered_models/{found['id']}").json()["state"] == "LIVE"


def test_deleting_a_profile_deletes_its_registry(server: Server, tokens: dict[str, str]) -> None:
    scope = {"namespace": "gone-mr"}
    with as_user(server, tokens[ADMIN]) as http:
        manifest = {
            "apiVersion": "kubeflow.org/v1",
            "kind": "Profile",
            "metadata": {"name": "gone-mr"},
            "spec": {"owner": {"kind": "User", "name": ALICE}},
        }
        assert http.post("/apis/kubeflow.org/v1/profiles", json=manifest).status_code == 201
    with as_user(server, tokens[ALICE]) as http:
        assert wait_until(
            lambda: http.get(f"{API}/registered_models", params=scope).status_code == 200,
            timeout=20,
        )
        made = http.post(f"{API}/registered_models", params=scope, json={"name": "doomed"})
        assert made.status_code == 201, made.text
        kept = http.post(
            f"{API}/registered_models", params={"namespace": "alice-mr"}, json={"name": "kept"}
        )
        assert kept.status_code in (201, 409), kept.text
    with as_user(server, tokens[ADMIN]) as http:
        assert http.delete("/apis/kubeflow.org/v1/profiles/gone-mr").status_code == 200

        def emptied() -> bool:
            listed = http.get(f"{API}/registered_models", params=scope)
            return listed.status_code == 200 and listed.json()["items"] == []

        assert wait_until(emptied, timeout=30)
        assert http.get(f"{API}/registered_models/{made.json()['id']}").status_code == 404
        # the other profiles keep theirs
        left = http.get(f"{API}/registered_models", params={"namespace": "alice-mr"}).json()
        assert "kept" in {m["name"] for m in left["items"]}
