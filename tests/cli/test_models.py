"""``ketch models`` against a real ``ketch up``: models registered over the Model
Registry API (plain HTTP, as the ``model-registry`` client sends it, and the real
client) are listed, described, their versions listed and archived from the CLI; a
server with users is asked with the caller's token, in the caller's profile."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from ketch.tenancy.users import Directory
from tests.cli.helpers import Ketch, bad, ok
from tests.server.fixtures import SERVER_ENV, serve
from tests.server.helpers import Server, base_env, ketch_command, wait_until
from tests.tenancy.helpers import add_users, as_user, directory_of, profile

pytestmark = pytest.mark.timeout(180)

API = "/api/model_registry/v1"


def _typed(values: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for key, value in values.items():
        if isinstance(value, bool):
            out[key] = {"metadataType": "MetadataBoolValue", "bool_value": value}
        elif isinstance(value, float):
            out[key] = {"metadataType": "MetadataDoubleValue", "double_value": value}
        elif isinstance(value, int):
            out[key] = {"metadataType": "MetadataIntValue", "int_value": str(value)}
        else:
            out[key] = {"metadataType": "MetadataStringValue", "string_value": value}
    return out


def register(
    http: httpx.Client,
    namespace: str | None,
    model: str,
    versions: list[tuple[str, str, str]],
    **fields: Any,
) -> dict[str, Any]:
    """Register ``model`` in ``namespace`` with ``versions`` ((name, URI, format)
    each), as the ``model-registry`` client does: the model, then each version and its
    model artifact. ``fields`` are the model's (``customProperties`` plain values)."""
    params = {"namespace": namespace} if namespace else {}
    body = {"name": model, "state": "LIVE", **fields}
    if "customProperties" in body:
        body["customProperties"] = _typed(body["customProperties"])
    made = http.post(f"{API}/registered_models", params=params, json=body)
    assert made.status_code == 201, made.text
    for name, uri, model_format in versions:
        version = http.post(
            f"{API}/model_versions",
            params=params,
            json={
                "name": name,
                "registeredModelId": made.json()["id"],
                "author": "alice",
                "state": "LIVE",
                "customProperties": _typed({"accuracy": 0.9}),
            },
        )
        assert version.status_code == 201, version.text
        artifact = http.post(
            f"{API}/model_versions/{version.json()['id']}/artifacts",
            json={
                "name": model,
                "artifactType": "model-artifact",
                "uri": uri,
                "modelFormatName": model_format,
                "modelFormatVersion": "1",
            },
        )
        assert artifact.status_code in (200, 201), artifact.text
    found: dict[str, Any] = made.json()
    return found


def rows(table: str) -> list[list[str]]:
    """A table's lines split into cells (the cells of these tests hold no spaces)."""
    return [line.split() for line in table.splitlines() if line.strip()]


def test_list_describe_versions_and_archive(ketch: Ketch, client: httpx.Client, ns: str) -> None:
    iris = register(
        client,
        ns,
        "iris",
        [
            ("v1", "s3://models/iris/1", "sklearn"),
            ("v2", "s3://models/iris/2", "onnx"),
        ],
        owner="alice",
        description="iris-classifier",
        customProperties={"team": "vision", "stars": 5, "public": True},
    )
    register(client, ns, "empty", [], owner="bob")

    listed = rows(ok(ketch("models", "list", "-n", ns)))
    assert listed[0] == ["NAME", "ID", "STATE", "OWNER", "LATEST", "VERSION", "VERSIONS", "UPDATED"]
    by_name = {row[0]: row for row in listed[1:]}
    assert set(by_name) == {"iris", "empty"}
    assert by_name["iris"][1:6] == [iris["id"], "LIVE", "alice", "v2", "2"]
    assert by_name["empty"][2:6] == ["LIVE", "bob", "-", "0"]
    assert by_name["iris"][-1] == "ago"

    described = ok(ketch("models", "describe", "iris", "-n", ns))
    assert "Name:         iris" in described
    assert f"ID:           {iris['id']}" in described
    assert f"Namespace:    {ns}" in described
    assert "State:        LIVE" in described
    assert "Owner:        alice" in described
    assert "Description:  iris-classifier" in described
    properties, versions = described.split("Custom properties:")[1].split("Versions:")
    assert rows(properties) == [
        ["NAME", "TYPE", "VALUE"],
        ["public", "bool", "true"],
        ["stars", "int", "5"],
        ["team", "string", "vision"],
    ]
    table = rows(versions)
    assert table[0] == ["NAME", "ID", "STATE", "AUTHOR", "CREATED", "ARTIFACT", "URI", "FORMAT"]
    assert [(r[0], r[2], r[3], r[6], r[7], r[8]) for r in table[1:]] == [
        ("v1", "LIVE", "alice", "s3://models/iris/1", "sklearn", "1"),
        ("v2", "LIVE", "alice", "s3://models/iris/2", "onnx", "1"),
    ]
    assert "Versions:  <none>" in ok(ketch("models", "describe", "empty", "-n", ns))

    table = rows(ok(ketch("models", "versions", "iris", "-n", ns)))
    assert table[0] == ["NAME", "ID", "STATE", "AUTHOR", "CREATED", "ARTIFACT", "URI"]
    assert [(r[0], r[2], r[-1]) for r in table[1:]] == [
        ("v1", "LIVE", "s3://models/iris/1"),
        ("v2", "LIVE", "s3://models/iris/2"),
    ]

    # archive one version, then the model: PATCHed state, seen by the API and the tables
    assert ok(ketch("models", "archive", "iris", "--version", "v1", "-n", ns)).strip() == (
        "version v1 of iris archived"
    )
    found = client.get(
        f"{API}/model_version",
        params={"name": "v1", "parentResourceId": iris["id"], "namespace": ns},
    ).json()
    assert found["state"] == "ARCHIVED"
    table = rows(ok(ketch("models", "versions", "iris", "-n", ns)))
    assert [(r[0], r[2]) for r in table[1:]] == [("v1", "ARCHIVED"), ("v2", "LIVE")]
    assert "was archived already" in ok(
        ketch("models", "archive", "iris", "--version", "v1", "-n", ns)
    )
    assert (
        ok(ketch("models", "archive", "iris", "-n", ns)).strip() == "registered model iris archived"
    )
    model = client.get(f"{API}/registered_models/{iris['id']}").json()
    assert model["state"] == "ARCHIVED"
    listed = {row[0]: row for row in rows(ok(ketch("models", "list", "-n", ns)))[1:]}
    assert listed["iris"][2] == "ARCHIVED" and listed["empty"][2] == "LIVE"
    # the other version was left as it was
    v2 = client.get(
        f"{API}/model_version",
        params={"name": "v2", "parentResourceId": iris["id"], "namespace": ns},
    ).json()
    assert v2["state"] == "LIVE"


def test_json_and_yaml_output(ketch: Ketch, client: httpx.Client, ns: str) -> None:
    model = register(client, ns, "wine", [("v1", "s3://models/wine/1", "xgboost")])
    listed = json.loads(ok(ketch("models", "list", "-n", ns, "-o", "json")))
    assert [m["name"] for m in listed["items"]] == ["wine"]
    assert listed["items"][0]["id"] == model["id"]
    described = yaml.safe_load(ok(ketch("models", "describe", "wine", "-n", ns, "-o", "yaml")))
    assert described["name"] == "wine" and described["state"] == "LIVE"
    (version,) = described["versions"]
    assert version["name"] == "v1"
    assert version["customProperties"]["accuracy"]["double_value"] == 0.9
    assert [a["uri"] for a in version["artifacts"]] == ["s3://models/wine/1"]
    assert [a["modelFormatName"] for a in version["artifacts"]] == ["xgboost"]
    versions = json.loads(ok(ketch("models", "versions", "wine", "-n", ns, "-o", "json")))
    assert [v["name"] for v in versions["items"]] == ["v1"]
    bad(ketch("models", "list", "-n", ns, "-o", "wide"), 2, "--output", "json, yaml")


@pytest.mark.filterwarnings("ignore:User access token is missing")
def test_what_the_real_client_registered(ketch: Ketch, server: Server) -> None:
    from model_registry import ModelRegistry

    from tests.registry.conftest import LoopRunner

    name = f"client-{uuid.uuid4().hex[:8]}"
    runner = LoopRunner()
    try:
        host, port = server.url.rsplit(":", 1)
        registry = ModelRegistry(
            host, int(port), author="carol", is_secure=False, async_runner=runner.run
        )
        for n in (1, 2):
            registry.register_model(
                name,
                f"file:///models/{name}/{n}",
                model_format_name="sklearn",
                model_format_version="1",
                version=f"{n}.0",
                metadata={"epochs": n},
            )
    finally:
        runner.close()
    # no -n: the server's own choice, the default namespace without users
    described = ok(ketch("models", "describe", name))
    assert "Owner:        carol" in described
    table = rows(described.split("Versions:")[1])
    assert [(r[0], r[3], r[6], r[7]) for r in table[1:]] == [
        ("1.0", "carol", f"file:///models/{name}/1", "sklearn"),
        ("2.0", "carol", f"file:///models/{name}/2", "sklearn"),
    ]
    listed = {row[0]: row for row in rows(ok(ketch("models", "list")))[1:]}
    assert listed[name][4:6] == ["2.0", "2"]


def test_clear_errors(ketch: Ketch, client: httpx.Client, ns: str) -> None:
    register(client, ns, "kept", [("v1", "s3://models/kept/1", "onnx")])
    missing = bad(ketch("models", "describe", "absent", "-n", ns), 2, "'absent'", ns)
    assert "ketch models list" in missing
    bad(ketch("models", "versions", "absent", "-n", ns), 2, "'absent'", "ketch models list")
    bad(ketch("models", "archive", "absent", "-n", ns), 2, "'absent'", "ketch models list")
    bad(
        ketch("models", "archive", "kept", "--version", "v9", "-n", ns),
        2,
        "no version 'v9'",
        "ketch models versions kept",
    )
    # another namespace does not see it
    other = f"{ns}-other"
    assert bad(ketch("models", "describe", "kept", "-n", other), 2, "'kept'", other)
    empty = ketch("models", "list", "-n", other)
    assert empty.returncode == 0 and empty.stdout == ""
    assert f"No registered models found in the namespace '{other}'" in empty.stderr
    bad(ketch("models", "list", "-n", "Not_A_Namespace"), 2, "--namespace")


# -- a server with users: the caller's token and profile --------------------------------

ALICE, BOB = "alice@example.com", "bob@example.com"


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("ketch-models-users")
    yield from serve(Server(home, extra_env=SERVER_ENV))


@pytest.fixture(scope="module")
def tokens(secured: Server) -> Iterator[dict[str, str]]:
    for directory in directory_of(secured):
        yield _users(secured, directory)


def _users(server: Server, directory: Directory) -> dict[str, str]:
    made = add_users(directory, (ALICE, BOB))
    store = server.store()
    store.apply(profile("alice-models", ALICE))
    store.apply(profile("bob-models", BOB))

    def ready() -> bool:
        for email, namespace in ((ALICE, "alice-models"), (BOB, "bob-models")):
            with as_user(server, made[email]) as http:
                found = http.get(f"{API}/registered_models", params={"namespace": namespace})
                if found.status_code != 200:
                    return False
        return True

    assert wait_until(ready, timeout=20), "the profiles' roles did not take effect"
    return made


def _as(
    server: Server, home: Path, token: str | None, *args: str
) -> subprocess.CompletedProcess[str]:
    env = base_env(home)
    env["KETCH_URL"] = server.url
    if token:
        env["KETCH_TOKEN"] = token
    else:
        env.pop("KETCH_TOKEN", None)
    return subprocess.run(
        [*ketch_command(), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=home,
    )


def test_the_callers_token_and_profile(
    secured: Server, tokens: dict[str, str], tmp_path: Path
) -> None:
    with as_user(secured, tokens[ALICE]) as alice:
        register(alice, None, "alice-model", [("v1", "s3://alice/1", "onnx")])
    with as_user(secured, tokens[BOB]) as bob:
        register(bob, None, "bob-model", [("v1", "s3://bob/1", "onnx")])

    # no -n: the caller's own profile
    mine = rows(ok(_as(secured, tmp_path, tokens[ALICE], "models", "list")))
    assert [row[0] for row in mine[1:]] == ["alice-model"]
    assert "bob-model" in ok(
        _as(secured, tmp_path, tokens[BOB], "models", "list", "-n", "bob-models")
    )
    # Alice may not read Bob's profile; nobody signed in is told how to sign in
    refused = _as(secured, tmp_path, tokens[ALICE], "models", "list", "-n", "bob-models")
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert refused.stderr.startswith("error: ") and "bob-models" in refused.stderr
    anonymous = _as(secured, tmp_path, None, "models", "list")
    assert anonymous.returncode != 0 and "ketch login" in anonymous.stderr
    # Bob cannot archive Alice's model: it is not in his profile
    bad(
        _as(secured, tmp_path, tokens[BOB], "models", "archive", "alice-model"),
        2,
        "'alice-model'",
        "ketch models list",
    )
    assert ok(
        _as(secured, tmp_path, tokens[ALICE], "models", "archive", "alice-model")
    ).strip() == ("registered model alice-model archived")
