"""KFAM's API (``/kfam/v1``) on a real ``ketch up`` (SQLite and PostgreSQL), single-user:
profiles made and deleted, contributors added, listed and removed exactly as KFAM
answers, the RoleBindings they are."""

from __future__ import annotations

from typing import Any

import httpx

from tests.server.helpers import assert_error, assert_status
from tests.tenancy.profiles import (
    ALICE,
    NAMESPACES,
    PROFILES,
    profile,
    ready,
    rolebindings_path,
)

KFAM = "/kfam/v1"


def kfam_binding(ns: str, user: str, role: str) -> dict[str, Any]:
    return {
        "user": {"kind": "User", "name": user},
        "referredNamespace": ns,
        "RoleRef": {"kind": "ClusterRole", "name": role},
    }


def listed(user: str, ns: str, role: str) -> dict[str, Any]:
    """A binding as KFAM lists it."""
    return {
        "user": {"kind": "User", "name": user},
        "referredNamespace": ns,
        "RoleRef": {"apiGroup": "", "kind": "ClusterRole", "name": role},
    }


def test_kfam_adds_lists_and_removes_contributors(client: httpx.Client, ns: str) -> None:
    bob, carol = f"bob-{ns}@example.com", f"Carol.{ns}@Example.com"
    # KFAM's body is a Profile; apiVersion and kind may be left out
    made = client.post(
        f"{KFAM}/profiles", json={"metadata": {"name": ns}, "spec": profile(ns)["spec"]}
    )
    assert (made.status_code, made.content) == (200, b"")
    # the profile's namespace is there when KFAM answers
    assert client.get(f"{NAMESPACES}/{ns}").status_code == 200
    assert ready(client.get(f"{PROFILES}/{ns}").json())["status"] == "True"

    for user, role in ((bob, "edit"), (carol, "view")):
        added = client.post(f"{KFAM}/bindings", json=kfam_binding(ns, user, role))
        assert (added.status_code, added.content) == (200, b""), added.text
    name = f"user-bob-{ns}-example-com-clusterrole-edit"
    stored = client.get(rolebindings_path(ns, name))
    assert stored.status_code == 200, stored.text
    assert stored.json()["metadata"]["annotations"] == {"user": bob, "role": "edit"}
    assert stored.json()["roleRef"]["name"] == "kubeflow-edit"
    # KFAM's name keeps lower-case letters and digits only (capitals too become '-')
    assert (
        client.get(rolebindings_path(ns, f"user-arol-{ns}-xample-com-clusterrole-view")).status_code
        == 200
    )

    everyone = client.get(f"{KFAM}/bindings", params={"namespace": ns}).json()
    assert list(everyone) == ["bindings"]
    assert sorted(everyone["bindings"], key=str) == sorted(
        [
            listed(ALICE, ns, "admin"),  # the owner's namespaceAdmin
            listed(bob, ns, "edit"),
            listed(carol, ns, "view"),
        ],
        key=str,
    )
    by_role = client.get(f"{KFAM}/bindings", params={"namespace": ns, "role": "view"}).json()
    assert by_role == {"bindings": [listed(carol, ns, "view")]}
    # without a namespace: every profile's namespace
    by_user = client.get(f"{KFAM}/bindings", params={"user": bob}).json()
    assert by_user == {"bindings": [listed(bob, ns, "edit")]}

    again = client.post(f"{KFAM}/bindings", json=kfam_binding(ns, bob, "edit"))
    assert_error(again, 409, "already exists")
    removed = client.request("DELETE", f"{KFAM}/bindings", json=kfam_binding(ns, bob, "edit"))
    assert (removed.status_code, removed.content) == (200, b"")
    assert client.get(f"{KFAM}/bindings", params={"user": bob}).json() == {"bindings": []}
    gone = client.request("DELETE", f"{KFAM}/bindings", json=kfam_binding(ns, bob, "edit"))
    assert_error(gone, 404, "not found")

    deleted = client.delete(f"{KFAM}/profiles/{ns}")
    assert (deleted.status_code, deleted.content) == (200, b"")
    assert_status(client.get(f"{NAMESPACES}/{ns}"), 404, "NotFound")
    assert client.get(f"{KFAM}/bindings", params={"user": carol}).json() == {"bindings": []}
    assert_error(client.delete(f"{KFAM}/profiles/{ns}"), 404, ns)


def test_kfam_refuses_bad_bindings_and_profiles_naming_the_field(
    client: httpx.Client, ns: str
) -> None:
    assert_error(
        client.post(f"{KFAM}/bindings", json=kfam_binding(ns, "bob@example.com", "edit")),
        404,
        f'no profile "{ns}"',
    )
    good = kfam_binding(ns, "bob@example.com", "edit")
    cases: list[tuple[Any, str]] = [
        ({**good, "RoleRef": {"kind": "ClusterRole", "name": "owner"}}, "RoleRef.name"),
        ({**good, "RoleRef": {"kind": "Role", "name": "edit"}}, "RoleRef.kind"),
        ({k: v for k, v in good.items() if k != "RoleRef"}, "RoleRef"),
        ({k: v for k, v in good.items() if k != "referredNamespace"}, "referredNamespace"),
        ({**good, "user": {"kind": "User"}}, "user.name"),
        ({**good, "user": {"kind": "Robot", "name": "r2"}}, "user.kind"),
        ([good], "body"),
    ]
    for body, field in cases:
        assert_error(client.post(f"{KFAM}/bindings", json=body), 400, field)
    for body, field in (
        ({"metadata": {"name": ns}, "spec": {}}, "spec.owner"),
        ({"metadata": {"name": "Not_A_Namespace"}, "spec": profile(ns)["spec"]}, "metadata.name"),
        ({"kind": "Notebook", "metadata": {"name": ns}}, "kind"),
    ):
        assert_error(client.post(f"{KFAM}/profiles", json=body), 400, field)
    assert client.get(f"{PROFILES}/{ns}").status_code == 404
    assert (
        client.get(f"{KFAM}/role/clusteradmin", params={"user": "nobody@example.com"}).json()
        is False
    )
    assert client.get(f"{KFAM}/role/clusteradmin").json() is False
