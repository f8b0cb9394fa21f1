"""RBAC's ``RoleBinding`` (``/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings``):
who holds which role in a namespace, served by the generic resource routes.

A RoleBinding has two top-level fields instead of ``spec`` and ``status``: ``roleRef``
(``{apiGroup, kind: ClusterRole|Role, name}``, which cannot change once stored, as in
Kubernetes) and ``subjects`` (``[{kind: User|Group|ServiceAccount, name, apiGroup?,
namespace?}]``). It is stored as :mod:`ketch.core.rbac` says (the authorizer of
:mod:`ketch.tenancy` reads it there): the two fields, defaulted as Kubernetes defaults
them, are the stored ``spec``; :class:`~ketch.server.configdata.DataSource` turns the
stored object into the served one and back, as it does for Secrets and ConfigMaps.

Kubeflow names the ClusterRoles ``kubeflow-admin``, ``kubeflow-edit`` and
``kubeflow-view``; the profile controller binds a profile's owner as
``namespaceAdmin`` (RBAC names are path segments, so capitals are allowed) and KFAM
binds contributors (:mod:`ketch.tenancy.kfam`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ketch.core.errors import InvalidSpec
from ketch.core.kinds import Column, Kind
from ketch.core.rbac import (
    RBAC_GROUP,
    ROLE_BINDING,
    ROLE_KINDS,
    SUBJECT_KINDS,
    role_ref,
    subject,
)
from ketch.core.resource import Resource, validate_object_name
from ketch.core.services import SourceFactory
from ketch.core.sources import Manifest
from ketch.server.configdata import DataSource, Layout

FIELDS = ("roleRef", "subjects")


def _text(description: str) -> dict[str, Any]:
    return {"type": "string", "description": description}


def role_binding_schema() -> dict[str, Any]:
    """A RoleBinding's top-level fields, as Kubernetes publishes them."""
    return {
        "roleRef": {
            "type": "object",
            "description": "The role granted: a Role of the namespace or a ClusterRole. "
            "It cannot be changed once stored: delete and create the binding again.",
            "required": ["kind", "name"],
            "properties": {
                "apiGroup": _text(f"The role's API group ({RBAC_GROUP})."),
                "kind": _text("ClusterRole or Role."),
                "name": _text("The role's name (kubeflow-admin, kubeflow-edit, ...)."),
            },
        },
        "subjects": {
            "type": "array",
            "description": "Who is granted the role.",
            "items": {
                "type": "object",
                "required": ["kind", "name"],
                "properties": {
                    "kind": _text("User, Group or ServiceAccount."),
                    "apiGroup": _text(
                        f"{RBAC_GROUP} for a User or a Group; empty for a ServiceAccount."
                    ),
                    "name": _text("The user's name (an email), the group's or the account's."),
                    "namespace": _text("A ServiceAccount's namespace."),
                },
            },
        },
    }


def _joined(values: list[str]) -> str | None:
    return ", ".join(values) if values else None


def role_binding_view(obj: dict[str, Any]) -> dict[str, Any]:
    """What a RoleBinding's Table row reads: ``Kind/name`` of its role, and its users,
    groups and service accounts, as ``kubectl get rolebindings -o wide`` shows them."""
    found = obj.get("roleRef")
    ref: dict[str, Any] = found if isinstance(found, dict) else {}
    subjects = [s for s in obj.get("subjects") or () if isinstance(s, dict)]

    def named(kind: str) -> list[str]:
        found = []
        for item in subjects:
            if item.get("kind") != kind:
                continue
            name = str(item.get("name", ""))
            if kind == "ServiceAccount":
                name = f"{item.get('namespace', '')}/{name}"
            found.append(name)
        return found

    return {
        "metadata": obj.get("metadata") or {},
        "role": f"{ref.get('kind', '')}/{ref.get('name', '')}",
        "users": _joined(named("User")),
        "groups": _joined(named("Group")),
        "serviceAccounts": _joined(named("ServiceAccount")),
    }


ROLE_BINDING_KIND = Kind(
    kind=ROLE_BINDING,
    group=RBAC_GROUP,
    versions=("v1",),
    plural="rolebindings",
    columns=(
        Column("Role", ".role", description="The role granted (Kind/name)"),
        Column("Users", ".users", priority=1, description="The users granted it"),
        Column("Groups", ".groups", priority=1, description="The groups granted it"),
        Column(
            "ServiceAccounts",
            ".serviceAccounts",
            priority=1,
            description="The service accounts granted it (namespace/name)",
        ),
    ),
    subresources=(),
    object_schema=role_binding_schema,
    table_view=role_binding_view,
)


# -- validation ---------------------------------------------------------------------------


def _string(value: Any, field: str, *, required: bool = True) -> str:
    if value is None or value == "":
        if required:
            raise InvalidSpec("is required", field=field)
        return ""
    if not isinstance(value, str):
        raise InvalidSpec("must be a string", field=field)
    return value


def _one_of(value: str, allowed: tuple[str, ...], field: str) -> str:
    if value not in allowed:
        supported = ", ".join(f'"{a}"' for a in allowed)
        raise InvalidSpec(
            f'Unsupported value: "{value}": supported values: {supported}', field=field
        )
    return value


def _check_role_ref(value: Any) -> dict[str, str]:
    if value is None:
        raise InvalidSpec("is required: the role the binding grants", field="roleRef")
    if not isinstance(value, dict):
        raise InvalidSpec("must be an object with apiGroup, kind and name", field="roleRef")
    for key in value:
        if key not in ("apiGroup", "kind", "name"):
            raise InvalidSpec(
                "unknown field; a roleRef has apiGroup, kind and name", field=f"roleRef.{key}"
            )
    group = _string(value.get("apiGroup"), "roleRef.apiGroup", required=False)
    if group and group != RBAC_GROUP:
        _one_of(group, (RBAC_GROUP,), "roleRef.apiGroup")
    kind = _one_of(_string(value.get("kind"), "roleRef.kind"), ROLE_KINDS, "roleRef.kind")
    name = _string(value.get("name"), "roleRef.name")
    validate_object_name(name, RBAC_GROUP, field="roleRef.name")
    return role_ref(kind, name)


def _check_subject(value: Any, field: str) -> dict[str, str]:
    if not isinstance(value, dict):
        raise InvalidSpec("must be an object with kind and name", field=field)
    for key in value:
        if key not in ("kind", "apiGroup", "name", "namespace"):
            raise InvalidSpec(
                "unknown field; a subject has kind, apiGroup, name and namespace",
                field=f"{field}.{key}",
            )
    kind = _one_of(_string(value.get("kind"), f"{field}.kind"), SUBJECT_KINDS, f"{field}.kind")
    name = _string(value.get("name"), f"{field}.name")
    group = _string(value.get("apiGroup"), f"{field}.apiGroup", required=False)
    expected = "" if kind == "ServiceAccount" else RBAC_GROUP
    if group and group != expected:
        raise InvalidSpec(
            f'Unsupported value: "{group}": a {kind} subject\'s apiGroup is '
            + (f'"{expected}"' if expected else "empty"),
            field=f"{field}.apiGroup",
        )
    namespace = _string(value.get("namespace"), f"{field}.namespace", required=False)
    return subject(kind, name, api_group=expected, namespace=namespace or None)


def _binding_spec(resource: Resource) -> dict[str, Any]:
    """A RoleBinding's fields, checked, defaulted: what it is stored with."""
    extra = dict(resource.model_extra or {})
    subjects = extra.get("subjects")
    if subjects is None:
        subjects = []
    if not isinstance(subjects, list):
        raise InvalidSpec("must be a list of subjects", field="subjects")
    return {
        "roleRef": _check_role_ref(extra.get("roleRef")),
        "subjects": [_check_subject(s, f"subjects[{i}]") for i, s in enumerate(subjects)],
    }


def check_role_binding(resource: Resource) -> None:
    """Refuse a RoleBinding Kubernetes would refuse; messages name the field."""
    if resource.spec:
        raise InvalidSpec("a RoleBinding has no spec: it has roleRef and subjects", field="spec")
    if resource.status:
        raise InvalidSpec("a RoleBinding has no status", field="status")
    for name in resource.model_extra or {}:
        if name not in FIELDS:
            raise InvalidSpec(
                f"unknown field {name!r}; a RoleBinding has roleRef and subjects", field=name
            )
    _binding_spec(resource)


def check_role_ref_kept(before: Manifest, after: dict[str, Any]) -> None:
    """A stored RoleBinding's ``roleRef`` cannot change (Kubernetes refuses it too)."""
    old = before.get("roleRef")
    if isinstance(old, dict) and role_ref(
        str(old.get("kind", "")), str(old.get("name", "")), old.get("apiGroup")
    ) != after.get("roleRef"):
        raise InvalidSpec(
            "cannot change roleRef: delete the RoleBinding and create it again", field="roleRef"
        )


LAYOUT = Layout(ROLE_BINDING, FIELDS, to_spec=_binding_spec, on_change=check_role_ref_kept)


def validators() -> dict[str, Callable[[Resource], None]]:
    return {ROLE_BINDING: check_role_binding}


def sources() -> dict[str, SourceFactory]:
    return {ROLE_BINDING: lambda context: DataSource(context.store, LAYOUT)}
