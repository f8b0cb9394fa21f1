"""What tests of a server with users share: the server's users directory, users with
tokens, profiles written as the store keeps them, and clients that send a token."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import httpx

from ketch.core.resource import Resource
from ketch.core.store.db import Database
from ketch.tenancy.tables import MIGRATIONS
from ketch.tenancy.users import Directory
from tests.server.helpers import Server, wait_until

PROFILES = "/apis/kubeflow.org/v1/profiles"

ADMIN, ALICE, BOB, CAROL = (
    "admin@example.com",
    "alice@example.com",
    "bob@example.com",
    "carol@example.com",
)


def directory_of(server: Server) -> Iterator[Directory]:
    """The users of ``server``'s store, written from the test process as the CLI does
    (a generator for a fixture: its connections close after the fixture)."""
    database = Database(server.db_url)
    database.migrate([MIGRATIONS])
    try:
        yield Directory(database)
    finally:
        database.dispose()


def add_users(directory: Directory, emails: Iterable[str], *, admin: str = "") -> dict[str, str]:
    """Each of ``emails`` made a user (``admin`` a cluster admin), with a token."""
    made = {}
    for email in emails:
        directory.add(email, admin=email == admin)
        made[email] = directory.create_token(email, name="test")[1]
    return made


def profile(name: str, owner: str) -> Resource:
    """A Profile as the store keeps one: its owner is admin of its namespace."""
    return Resource.from_manifest(
        {
            "apiVersion": "kubeflow.org/v1",
            "kind": "Profile",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"owner": {"kind": "User", "name": owner}},
        }
    )


def as_user(server: Server, token: str | None) -> httpx.Client:
    """A client of ``server`` sending ``token`` (none: anonymous)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return server.client(headers=headers)


def view_binding(namespace: str, user: str) -> Resource:
    """A RoleBinding giving ``user`` Kubeflow's view role in ``namespace``."""
    return Resource.from_manifest(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": f"user-{user.split('@')[0]}-view", "namespace": namespace},
            "spec": {
                "roleRef": {"kind": "ClusterRole", "name": "kubeflow-view"},
                "subjects": [{"kind": "User", "name": user}],
            },
        }
    )


def two_owners_and_a_viewer(
    server: Server,
    directory: Directory,
    namespaces: tuple[str, str],
    reads: Callable[[httpx.Client, str], bool],
) -> dict[str, str]:
    """The users ADMIN (a cluster admin), ALICE and BOB, who own the profiles
    ``namespaces``, and CAROL, who views Alice's, with their tokens, once ``reads(http,
    namespace)`` says each can read where their role says (roles take effect from a
    snapshot)."""
    made = add_users(directory, (ADMIN, ALICE, BOB, CAROL), admin=ADMIN)
    alice_ns, bob_ns = namespaces
    # the profiles through the API, so the server's controller makes their namespaces at
    # once; Carol's binding only then: a namespace that already holds objects and has
    # no owner is not taken over by a profile (its owner would lose it at its next pass)
    with as_user(server, made[ADMIN]) as admin:
        for name, owner in ((alice_ns, ALICE), (bob_ns, BOB)):
            created = admin.post(PROFILES, json=profile(name, owner).to_manifest())
            assert created.status_code == 201, created.text

        def profiles_ready() -> bool:
            for name in namespaces:
                conditions = (admin.get(f"{PROFILES}/{name}").json().get("status") or {}).get(
                    "conditions"
                ) or ()
                if not any(
                    c.get("type") == "Ready" and c.get("status") == "True" for c in conditions
                ):
                    return False
            return True

        assert wait_until(profiles_ready, timeout=30), "the profiles did not become Ready"
    server.store().apply(view_binding(alice_ns, CAROL))

    def ready() -> bool:
        for email, namespace in ((ALICE, alice_ns), (BOB, bob_ns), (CAROL, alice_ns)):
            with as_user(server, made[email]) as http:
                if not reads(http, namespace):
                    return False
        return True

    assert wait_until(ready, timeout=20), "the profiles' roles did not take effect"
    return made
