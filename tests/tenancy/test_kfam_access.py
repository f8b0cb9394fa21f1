"""KFAM's API on a real ``ketch up`` with users (authentication on): a profile's owner
adds and removes contributors and nobody else does, a list across profiles shows the
caller's own, profiles are made by cluster admins and deleted by their owners, and
``clusteradmin`` says who is an admin."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from ketch.tenancy.users import Directory
from tests.server.fixtures import SERVER_ENV, serve
from tests.server.helpers import Server, assert_error
from tests.tenancy.helpers import add_users, as_user, directory_of
from tests.tenancy.test_kfam import KFAM, kfam_binding, listed

ADMIN, ALICE, BOB, CAROL = (f"{who}@kfam.example.com" for who in ("admin", "alice", "bob", "carol"))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from serve(Server(tmp_path_factory.mktemp("ketch-kfam"), extra_env=SERVER_ENV))


@pytest.fixture(scope="module")
def directory(server: Server) -> Iterator[Directory]:
    yield from directory_of(server)


@pytest.fixture(scope="module")
def tokens(directory: Directory) -> dict[str, str]:
    return add_users(directory, (ADMIN, ALICE, BOB, CAROL), admin=ADMIN)


def new_profile(name: str, owner: str) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"owner": {"kind": "User", "name": owner}}}


def test_kfam_writes_are_the_owners_and_lists_show_the_callers_profiles(
    server: Server, tokens: dict[str, str]
) -> None:
    admin, alice, bob, carol = (as_user(server, tokens[who]) for who in (ADMIN, ALICE, BOB, CAROL))
    with admin, alice, bob, carol:
        # only a cluster admin makes profiles
        refused = alice.post(f"{KFAM}/profiles", json=new_profile("alice-team", ALICE))
        assert_error(refused, 403, "only a cluster admin creates profiles")
        for name, owner in (("alice-team", ALICE), ("admin-team", ADMIN)):
            made = admin.post(f"{KFAM}/profiles", json=new_profile(name, owner))
            assert made.status_code == 200, made.text

        # the owner adds a contributor; nobody else may, not even for themselves
        assert_error(
            bob.post(f"{KFAM}/bindings", json=kfam_binding("alice-team", BOB, "admin")),
            403,
            "rolebindings",
        )
        added = alice.post(f"{KFAM}/bindings", json=kfam_binding("alice-team", BOB, "view"))
        assert added.status_code == 200, added.text
        assert_error(
            alice.post(f"{KFAM}/bindings", json=kfam_binding("admin-team", ALICE, "edit")),
            403,
            "admin-team",
        )

        # a list across profiles shows the namespaces the caller works in
        mine = [listed(ALICE, "alice-team", "admin"), listed(BOB, "alice-team", "view")]
        for client in (alice, bob):
            assert sorted(client.get(f"{KFAM}/bindings").json()["bindings"], key=str) == sorted(
                mine, key=str
            )
        assert carol.get(f"{KFAM}/bindings").json() == {"bindings": []}
        everything = admin.get(f"{KFAM}/bindings").json()["bindings"]
        assert listed(ADMIN, "admin-team", "admin") in everything
        assert_error(
            carol.get(f"{KFAM}/bindings", params={"namespace": "alice-team"}), 403, "alice-team"
        )

        # a contributor cannot remove bindings; the owner can
        assert_error(
            bob.request("DELETE", f"{KFAM}/bindings", json=kfam_binding("alice-team", BOB, "view")),
            403,
            "rolebindings",
        )
        removed = alice.request(
            "DELETE", f"{KFAM}/bindings", json=kfam_binding("alice-team", BOB, "view")
        )
        assert removed.status_code == 200, removed.text
        assert bob.get(f"{KFAM}/bindings").json() == {"bindings": []}

        # who is a cluster admin: anyone signed in may ask
        assert carol.get(f"{KFAM}/role/clusteradmin", params={"user": ADMIN}).json() is True
        assert carol.get(f"{KFAM}/role/clusteradmin", params={"user": ALICE}).json() is False
        with as_user(server, None) as anonymous:
            assert (
                anonymous.get(f"{KFAM}/role/clusteradmin", params={"user": ADMIN}).status_code
                == 401
            )

        # a profile is deleted by its owner, not by others
        assert_error(bob.delete(f"{KFAM}/profiles/alice-team"), 403, "alice-team")
        assert alice.delete(f"{KFAM}/profiles/alice-team").status_code == 200
        assert admin.get("/api/v1/namespaces/alice-team").status_code == 404
        assert admin.delete(f"{KFAM}/profiles/admin-team").status_code == 200
