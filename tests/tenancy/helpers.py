"""What tests of a server with users share: the server's users directory, users with
tokens, profiles written as the store keeps them, and clients that send a token."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import httpx

from ketch.core.resource import Resource
from ketch.core.store.db import Database
from ketch.tenancy.tables import MIGRATIONS
from ketch.tenancy.users import Directory
from tests.server.helpers import Server


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
