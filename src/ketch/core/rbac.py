"""Kubernetes' ``RoleBinding`` and ``Namespace`` as the store keeps them, for every layer
that writes or reads them: the server serves them (:mod:`ketch.server.rbac`,
:mod:`ketch.server.namespaces`), the tenancy capability makes them for its Profiles and
KFAM, and its authorizer reads the bindings.

A RoleBinding is a row of kind ``RoleBinding`` in its namespace whose ``spec`` is
``{"roleRef": {"apiGroup", "kind", "name"}, "subjects": [{"kind", "name", ...}]}``:
its two top-level fields, defaulted as Kubernetes defaults them (``roleRef.apiGroup``
and a User's or Group's ``apiGroup`` are ``rbac.authorization.k8s.io``; a
ServiceAccount has none). ``subjects`` is always there, maybe empty.

A namespace created explicitly (by ``kubectl create namespace``, or by a Profile) is
a row of kind ``Namespace`` named after it, in :data:`NAMESPACES_STORED_IN`, with its
labels, annotations and ``ownerReferences`` (a Profile's namespace names its Profile,
as Kubeflow's controller sets it) and an empty spec and status.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ketch.core.resource import DEFAULT_NAMESPACE, Resource

RBAC_GROUP = "rbac.authorization.k8s.io"
ROLE_BINDING = "RoleBinding"
ROLE_BINDING_API_VERSION = f"{RBAC_GROUP}/v1"
#: what a RoleBinding's ``roleRef.kind`` may be
ROLE_KINDS = ("ClusterRole", "Role")
#: what a subject's ``kind`` may be
SUBJECT_KINDS = ("User", "Group", "ServiceAccount")

NAMESPACE = "Namespace"
#: where explicitly created namespaces are kept (as cluster-scoped objects are)
NAMESPACES_STORED_IN = DEFAULT_NAMESPACE


def role_ref(kind: str, name: str, api_group: str | None = None) -> dict[str, str]:
    """A ``roleRef`` as stored: ``apiGroup`` defaulted."""
    return {"apiGroup": api_group or RBAC_GROUP, "kind": kind, "name": name}


def subject(
    kind: str, name: str, *, api_group: str | None = None, namespace: str | None = None
) -> dict[str, str]:
    """A subject as stored: a User's or Group's ``apiGroup`` defaulted, a
    ServiceAccount's left out (Kubernetes serves none), ``namespace`` when given."""
    made: dict[str, str] = {"kind": kind}
    group = api_group if api_group is not None else (RBAC_GROUP if kind != "ServiceAccount" else "")
    if group:
        made["apiGroup"] = group
    made["name"] = name
    if namespace:
        made["namespace"] = namespace
    return made


def role_binding(
    namespace: str,
    name: str,
    ref: Mapping[str, str],
    subjects: Iterable[Mapping[str, str]],
    *,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
) -> Resource:
    """RoleBinding ``namespace/name`` as the store keeps it."""
    return Resource(
        apiVersion=ROLE_BINDING_API_VERSION,
        kind=ROLE_BINDING,
        metadata={  # type: ignore[arg-type]
            "name": name,
            "namespace": namespace,
            "labels": dict(labels or {}),
            "annotations": dict(annotations or {}),
        },
        spec={"roleRef": dict(ref), "subjects": [dict(s) for s in subjects]},
    )


@dataclass(frozen=True)
class Binding:
    """A stored RoleBinding, read."""

    namespace: str
    name: str
    role_ref: dict[str, Any]
    subjects: list[dict[str, Any]]
    annotations: dict[str, str] = field(default_factory=dict)


def binding_of(resource: Resource) -> Binding:
    """What a stored RoleBinding says (malformed parts read as empty)."""
    ref = resource.spec.get("roleRef")
    subjects = resource.spec.get("subjects")
    return Binding(
        resource.metadata.namespace,
        resource.metadata.name,
        dict(ref) if isinstance(ref, dict) else {},
        [dict(s) for s in subjects if isinstance(s, dict)] if isinstance(subjects, list) else [],
        dict(resource.metadata.annotations),
    )


def stored_namespace(
    name: str,
    labels: Mapping[str, str],
    annotations: Mapping[str, str],
    owners: Iterable[Mapping[str, Any]] | None = None,
) -> Resource:
    """Namespace ``name`` as the ``resources`` table keeps one created explicitly;
    ``owners`` are its ``ownerReferences`` (a Profile's namespace is its Profile's)."""
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": NAMESPACES_STORED_IN,
        "labels": dict(labels),
        "annotations": dict(annotations),
    }
    if owners:
        metadata["ownerReferences"] = [dict(owner) for owner in owners]
    return Resource(apiVersion="v1", kind=NAMESPACE, metadata=metadata)  # type: ignore[arg-type]
