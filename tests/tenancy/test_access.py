"""Authentication and authorization of a real ``ketch up``: off without users, on as
soon as the store has one (the server is not restarted), 401 without credentials,
403 without a role, tokens revoked at once, Kubernetes' Status bodies, the audit log
read by admins only."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ketch.core.store.db import Database
from ketch.tenancy.tables import MIGRATIONS
from ketch.tenancy.users import Directory
from tests.server.fixtures import SERVER_ENV, serve
from tests.server.helpers import Server, base_env, ketch_command, wait_until
from tests.tenancy.helpers import add_users, as_user, directory_of, profile

ADMIN, ALICE, BOB = "admin@example.com", "alice@example.com", "bob@example.com"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from serve(Server(tmp_path_factory.mktemp("ketch-access"), extra_env=SERVER_ENV))


@pytest.fixture(scope="module")
def directory(server: Server) -> Iterator[Directory]:
    yield from directory_of(server)


@pytest.fixture(scope="module")
def tokens(server: Server, directory: Directory) -> dict[str, str]:
    # Before any user exists, the one local user may do everything.
    with server.client() as http:
        assert http.get("/api/v1/namespaces").status_code == 200
        whoami = http.get("/auth/whoami")
        assert whoami.status_code == 200 and whoami.json()["via"] == "local"
    return add_users(directory, (ADMIN, ALICE, BOB), admin=ADMIN)


def test_a_user_added_to_a_running_server_turns_authentication_on(
    server: Server, tokens: dict[str, str]
) -> None:
    def refused() -> bool:
        with as_user(server, None) as http:
            return http.get("/api/v1/namespaces").status_code == 401

    assert wait_until(refused, timeout=10)
    with as_user(server, None) as http:
        answer = http.get("/api/v1/namespaces")
        assert answer.headers["www-authenticate"].startswith("Bearer")
        status = answer.json()
        assert (status["kind"], status["reason"], status["code"]) == ("Status", "Unauthorized", 401)
        # health checks stay open; the KFP API answers in its own error shape
        assert http.get("/healthz").status_code == 200
        kfp = http.get("/apis/v2beta1/runs")
        assert kfp.status_code == 401 and "kind" not in kfp.json()
    with as_user(server, "ketch_not-a-token") as http:
        assert http.get("/healthz").status_code == 401
        assert "not valid" in http.get("/api/v1/namespaces").json()["message"]
    with as_user(server, tokens[ADMIN]) as http:
        assert http.get("/api/v1/namespaces").status_code == 200
        me = http.get("/auth/whoami").json()
        assert (me["user"], me["admin"], me["via"]) == (ADMIN, True, "token")


def test_a_namespace_without_a_role_is_forbidden(server: Server, tokens: dict[str, str]) -> None:
    server.store().apply(profile("alice-ns", ALICE))
    path = "/apis/kubeflow.org/v1/namespaces/alice-ns/pytorchjobs"

    def alice_may() -> bool:
        with as_user(server, tokens[ALICE]) as http:
            return http.get(path).status_code == 200

    assert wait_until(alice_may, timeout=10)
    with as_user(server, tokens[BOB]) as http:
        answer = http.get(path)
        assert answer.status_code == 403
        status = answer.json()
        assert status["reason"] == "Forbidden"
        assert f'User "{BOB}" cannot list resource "pytorchjobs"' in status["message"]
        assert 'in the namespace "alice-ns"' in status["message"]
        assert http.get("/api/v1/namespaces/alice-ns/pods").status_code == 403
        assert http.get("/api/v1/namespaces/alice-ns/events").status_code == 403
        assert http.get("/api/v1/namespaces/alice-ns").status_code == 403
        created = http.post(
            "/api/v1/namespaces/alice-ns/configmaps",
            json={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}},
        )
        assert created.status_code == 403
        # what every signed-in caller reads
        assert http.get("/version").status_code == 200
        assert http.get("/apis").status_code == 200
    with as_user(server, tokens[ALICE]) as http:
        created = http.post(
            "/api/v1/namespaces/alice-ns/configmaps",
            json={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "mine"}},
        )
        assert created.status_code == 201, created.text
        assert http.get("/api/v1/namespaces/alice-ns").status_code == 200
        # a profile's namespace is made and removed through the profile, not directly
        assert http.delete("/api/v1/namespaces/alice-ns").status_code == 403


def test_a_revoked_token_is_refused_at_once(
    server: Server, directory: Directory, tokens: dict[str, str]
) -> None:
    token, secret = directory.create_token(BOB, name="short-lived")
    with as_user(server, secret) as http:
        assert http.get("/auth/whoami").json()["user"] == BOB
        directory.revoke_token(token.id)
        answer = http.get("/auth/whoami")
        assert answer.status_code == 401 and "revoked" in answer.text


def test_the_audit_log_records_writes_for_admins_only(
    server: Server, tokens: dict[str, str]
) -> None:
    with as_user(server, tokens[BOB]) as http:
        http.post(
            "/api/v1/namespaces/alice-ns/secrets",
            json={"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "nope"}},
        )
        assert http.get("/auth/audit").status_code == 403

    def recorded() -> list[dict[str, object]]:
        with as_user(server, tokens[ADMIN]) as http:
            items: list[dict[str, object]] = http.get("/auth/audit", params={"user": BOB}).json()[
                "items"
            ]
        return [e for e in items if e["resource"] == "secrets"]

    found = wait_until(recorded, timeout=10)
    assert found, "the refused write is in the audit log"
    entry = found[0]
    assert (entry["verb"], entry["namespace"], entry["code"]) == ("create", "alice-ns", 403)

    # ketch audit prints it as a table for an admin, and refuses anyone else
    def cli(token: str) -> subprocess.CompletedProcess[str]:
        env = {**base_env(server.home), "KETCH_URL": server.url, "KETCH_TOKEN": token}
        return subprocess.run(
            [*ketch_command(), "audit", "--user", BOB],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )

    shown = cli(tokens[ADMIN])
    assert shown.returncode == 0, shown.stderr
    row = next(line for line in shown.stdout.splitlines() if "secrets" in line)
    assert BOB in row and "create" in row and "alice-ns" in row and "403" in row
    refused = cli(tokens[BOB])
    assert refused.returncode != 0 and "forbidden" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_tokens_never_reach_the_server_log(server: Server, tokens: dict[str, str]) -> None:
    time.sleep(0.2)
    log = server.output()
    for secret in tokens.values():
        assert secret not in log
    assert Path(server.home).exists()


def _kfam_profile(name: str, owner: str) -> dict[str, object]:
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "Profile",
        "metadata": {"name": name},
        "spec": {"owner": {"kind": "User", "name": owner}},
    }


def test_a_profile_that_refused_its_namespace_gives_its_owner_nothing(
    server: Server, tokens: dict[str, str]
) -> None:
    with as_user(server, tokens[ADMIN]) as http:
        made = http.post("/kfam/v1/profiles", json=_kfam_profile("alice-team", ALICE))
        assert made.status_code == 200, made.text
        # a second profile naming alice's namespace, owned by bob, does not take it over
        taken = http.post(
            "/apis/kubeflow.org/v1/profiles",
            json={**_kfam_profile("alice-team", BOB), "metadata": {"name": "alice-team"}},
        )
        assert taken.status_code == 409
    with as_user(server, tokens[BOB]) as http:
        # only an admin creates profiles while the registration flow is off
        refused = http.post("/kfam/v1/profiles", json=_kfam_profile("bobs", BOB))
        assert refused.status_code == 403 and "registration" in refused.text
        assert http.get("/api/v1/namespaces/alice-team/configmaps").status_code == 403
    with as_user(server, tokens[ALICE]) as http:
        assert http.get("/api/v1/namespaces/alice-team/configmaps").status_code == 200


def test_the_registration_flow_lets_a_user_make_one_profile_of_their_own(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    with Database(f"sqlite:///{home / 'ketch.db'}") as database:
        database.migrate([MIGRATIONS])
        Directory(database).add(ADMIN, admin=True)
        Directory(database).add(BOB)
        token = Directory(database).create_token(BOB)[1]
    registering = Server(home, extra_env=SERVER_ENV, args=("--registration-flow",)).start()
    try:
        with as_user(registering, token) as http:
            other = http.post("/kfam/v1/profiles", json=_kfam_profile("not-mine", ALICE))
            assert other.status_code == 403 and "owned by you" in other.text
            made = http.post("/kfam/v1/profiles", json=_kfam_profile("bob", BOB))
            assert made.status_code == 200, made.text
            assert http.get("/api/v1/namespaces/bob/configmaps").status_code == 200
            me = http.get("/auth/whoami").json()
            assert me["profiles"] == {"bob": "admin"}
            again = http.post("/kfam/v1/profiles", json=_kfam_profile("bob-2", BOB))
            assert again.status_code == 403 and "already" in again.text
    finally:
        assert registering.stop() == 0


def test_a_user_a_trusted_proxy_names_gets_a_profile_with_the_registration_flow(
    tmp_path: Path,
) -> None:
    server = Server(
        tmp_path / "home",
        extra_env=SERVER_ENV,
        args=("--registration-flow", "--trusted-proxy", "127.0.0.1/32"),
    ).start()
    try:
        with server.client(headers={"kubeflow-userid": "Carol.Ng@example.com"}) as http:
            me = http.get("/auth/whoami").json()
            assert (me["user"], me["via"], me["profiles"]) == (
                "carol.ng@example.com",
                "proxy",
                {"carol-ng": "admin"},
            )
            assert http.get("/api/v1/namespaces/carol-ng/configmaps").status_code == 200
            namespace = http.get("/api/v1/namespaces/carol-ng").json()
            assert namespace["metadata"]["annotations"]["owner"] == "carol.ng@example.com"
        with server.client() as http:  # no header: nobody
            assert http.get("/api/v1/namespaces").status_code == 401
    finally:
        assert server.stop() == 0
