"""Kubeflow's ``Profile`` (``kubeflow.org/v1``, cluster-scoped): a namespace with an owner.

A profile makes, as Kubeflow's profile controller does:

- its **namespace** (named after it, stored as :func:`ketch.core.rbac.stored_namespace`
  keeps one), with Kubeflow's labels (:data:`NAMESPACE_LABELS`), the annotation
  ``owner: <owner>`` and an ``ownerReference`` naming the profile;
- the **RoleBinding** ``namespaceAdmin`` there, giving the owner the ClusterRole
  ``kubeflow-admin`` (annotated ``user: <owner>``, ``role: admin``, which KFAM reads).

It never takes over a namespace that exists already unless that namespace's ``owner``
annotation names the profile's owner (or the namespace is this profile's own): it
is then Ready=False, with a Warning event saying why and what to do.

This is done when the profile is written, before the write is answered (by
:class:`ProfileSource`, the source the API server writes Profiles through), so the
namespace is usable as soon as the create returns; the controller
(:mod:`ketch.tenancy.controller`) does it again on every resync, puts back what was
removed, and writes the ``Ready`` condition.

Deleting a profile deletes what its namespace holds and the namespace (the objects of
the ``resources`` table: jobs, services, bindings, secrets, ...; their controllers
stop what runs for them), RoleBindings first so that access ends before the rest goes,
then what the capabilities keep for the namespace in their own tables (pipeline runs,
experiments, recurring runs, namespaced pipelines: the store's namespace finalizers,
:meth:`~ketch.core.store.resources.ResourceStore.finalize_namespace`). The namespace's
own object goes last, once every finalizer is done: until then the controller tries
again, and after a restart it finds the namespace whose profile is gone and finishes.
Kubernetes' garbage collector does this for Kubeflow, following the namespace's
``ownerReference``; a namespace the profile only adopted keeps what it holds and loses
the bindings the profile made.
"""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from ketch.core.errors import AlreadyExists, Conflict, KetchError, NotFound
from ketch.core.kinds import Column, Kind
from ketch.core.rbac import (
    NAMESPACE,
    NAMESPACES_STORED_IN,
    ROLE_BINDING,
    role_binding,
    role_ref,
    stored_namespace,
    subject,
)
from ketch.core.resource import DEFAULT_NAMESPACE, Resource, get_condition, set_condition
from ketch.core.sources import ApplyResult, Manifest, StoreSource
from ketch.core.spec import model_schema
from ketch.core.store.resources import EventType, ResourceStore
from ketch.tenancy.spec import PROFILE, ProfileSpec

log = logging.getLogger(__name__)

GROUP = "kubeflow.org"
#: where the store keeps Profiles (cluster-scoped objects)
PROFILES_STORED_IN = DEFAULT_NAMESPACE
#: the annotation naming a namespace's owner
OWNER = "owner"
#: the labels Kubeflow gives a profile's namespace (its namespace-labels.yaml)
NAMESPACE_LABELS = {
    "app.kubernetes.io/part-of": "kubeflow-profile",
    "katib.kubeflow.org/metrics-collector-injection": "enabled",
    "pipelines.kubeflow.org/enabled": "true",
    "serving.kubeflow.org/inferenceservice": "enabled",
}
#: the RoleBinding giving the owner the admin role in the namespace
OWNER_BINDING = "namespaceAdmin"
ADMIN_ROLE = "kubeflow-admin"
#: the annotations KFAM reads a binding's user and role from
USER_ANNOTATION, ROLE_ANNOTATION = "user", "role"
READY = "Ready"

PROFILE_KIND = Kind(
    kind=PROFILE,
    group=GROUP,
    versions=("v1", "v1beta1"),
    plural="profiles",
    namespaced=False,
    columns=(
        Column("Owner", ".spec.owner.name", description="Who owns the profile's namespace"),
        Column(
            "Ready",
            ".status.conditions[?(@.type=='Ready')].status",
            description="Whether the namespace is the profile's",
        ),
    ),
    categories=("kubeflow",),
    spec_schema=model_schema(ProfileSpec),
)

Events = list[tuple[str, str, EventType]]


@dataclass(frozen=True)
class Outcome:
    """What a provisioning pass came to: the ``Ready`` condition it sets."""

    ready: bool
    reason: str
    message: str


def owner_of(profile: Resource) -> str:
    owner = profile.spec.get("owner")
    return str(owner.get("name") or "") if isinstance(owner, dict) else ""


def owner_reference(profile: Resource) -> dict[str, Any]:
    """The ``ownerReference`` naming ``profile``, as Kubeflow's controller sets it."""
    reference: dict[str, Any] = {
        "apiVersion": profile.apiVersion,
        "kind": PROFILE,
        "name": profile.metadata.name,
        "controller": True,
        "blockOwnerDeletion": True,
    }
    if profile.metadata.uid:
        reference["uid"] = profile.metadata.uid
    return reference


def owned_by(resource: Resource, name: str, uid: str | None) -> bool:
    """Whether ``resource`` names Profile ``name`` (of ``uid``, when known) as its owner."""
    for reference in resource.metadata.ownerReferences or ():
        if reference.get("kind") != PROFILE or reference.get("name") != name:
            continue
        if uid is None or reference.get("uid") in (None, uid):
            return True
    return False


def _get(store: ResourceStore, kind: str, namespace: str, name: str) -> Resource | None:
    try:
        return store.get(kind, namespace, name)
    except NotFound:
        return None


# -- provisioning -------------------------------------------------------------------------


def _refused(name: str, owner: str, have: str | None, holder: str) -> Outcome:
    if have:
        return Outcome(
            False,
            "NamespaceOwnedByAnother",
            f'namespace "{name}" already exists and is owned by {have} (its "owner" '
            f"annotation), not by {owner}: the profile does not take it over. Delete the "
            "profile, or ask a cluster admin to give the namespace to the profile's owner",
        )
    return Outcome(
        False,
        "NamespaceExists",
        f'namespace "{name}" already exists{holder} and has no owner: the profile does '
        f"not take it over. To give it to {owner}, a cluster admin annotates it: "
        f"kubectl annotate namespace {name} owner={owner}",
    )


def _take_namespace(store: ResourceStore, profile: Resource, owner: str) -> Outcome | None:
    """Make the profile's namespace, or update the one it owns; ``None`` when done, the
    refusal when the namespace is someone else's."""
    name = profile.metadata.name
    for _attempt in range(3):
        current = _get(store, NAMESPACE, NAMESPACES_STORED_IN, name)
        if current is None:
            if store.names_in(name, limit=1):  # objects made it: it is someone's
                return _refused(name, owner, None, " (it holds objects)")
            made = stored_namespace(
                name, NAMESPACE_LABELS, {OWNER: owner}, [owner_reference(profile)]
            )
            try:
                store.create(made)
            except AlreadyExists:
                continue  # made in between: read it again
            return None
        meta = current.metadata
        have = meta.annotations.get(OWNER)
        if have != owner and not owned_by(current, name, profile.metadata.uid):
            return _refused(name, owner, have, "")
        labels = dict(meta.labels)
        for key, value in NAMESPACE_LABELS.items():
            labels.setdefault(key, value)  # as Kubeflow: a label set already is kept
        annotations = {**meta.annotations, OWNER: owner}
        owners = list(meta.ownerReferences or ())
        if owned_by(current, name, None):  # made by a profile of this name: now this one's
            owners = [r for r in owners if r.get("kind") != PROFILE or r.get("name") != name]
            owners.append(owner_reference(profile))
        if (
            labels != meta.labels
            or annotations != meta.annotations
            or owners != list(meta.ownerReferences or ())
        ):
            store.apply(stored_namespace(name, labels, annotations, owners))
        return None
    raise Conflict(f'namespace "{name}" kept changing while the profile took it', hint="retry")


def _bind_owner(store: ResourceStore, profile: Resource, owner: str) -> None:
    """The owner's ``namespaceAdmin`` RoleBinding, made or put right."""
    namespace = profile.metadata.name
    current = _get(store, ROLE_BINDING, namespace, OWNER_BINDING)
    annotations = dict(current.metadata.annotations) if current is not None else {}
    annotations.update({USER_ANNOTATION: owner, ROLE_ANNOTATION: "admin"})
    wanted = role_binding(
        namespace,
        OWNER_BINDING,
        role_ref("ClusterRole", ADMIN_ROLE),
        [subject("User", owner)],
        labels=current.metadata.labels if current is not None else None,
        annotations=annotations,
    )
    wanted.metadata.ownerReferences = [owner_reference(profile)]
    if (
        current is None
        or current.spec != wanted.spec
        or current.metadata.annotations != annotations
        or not owned_by(current, namespace, profile.metadata.uid)
    ):
        store.apply(wanted)


def provision(store: ResourceStore, profile: Resource) -> Outcome:
    """Make (or put right) the profile's namespace and its owner's binding."""
    name, owner = profile.metadata.name, owner_of(profile)
    if not owner:
        return Outcome(False, "InvalidSpec", "spec.owner.name is empty: the profile has no owner")
    refused = _take_namespace(store, profile, owner)
    if refused is not None:
        return refused
    _bind_owner(store, profile, owner)
    return Outcome(
        True,
        "NamespaceReady",
        f'namespace "{name}" is ready; {owner} is its admin (RoleBinding {OWNER_BINDING})',
    )


def settle(store: ResourceStore, profile: Resource, status: dict[str, Any]) -> Events:
    """Provision ``profile`` and set its ``Ready`` condition in ``status``; the events
    to record (when the condition's state or reason changed)."""
    outcome = provision(store, profile)
    before = get_condition(status, READY) or {}
    set_condition(
        status,
        READY,
        "True" if outcome.ready else "False",
        outcome.reason,
        outcome.message,
        observed_generation=profile.metadata.generation,
    )
    if (before.get("status"), before.get("reason")) == (
        "True" if outcome.ready else "False",
        outcome.reason,
    ):
        return []
    return [(outcome.reason, outcome.message, "Normal" if outcome.ready else "Warning")]


# -- removal ------------------------------------------------------------------------------


def _delete_all(store: ResourceStore, namespace: str, kinds: Iterable[str] | None) -> int:
    """Delete the objects of ``kinds`` (``None``: every kind) in ``namespace``."""
    removed = 0
    for _round in range(10_000):  # each round deletes what it found, or stops
        if kinds is None:
            batch = store.names_in(namespace, limit=200)
        else:
            batch = [(k, r.metadata.name) for k in kinds for r in store.list(k, namespace)]
        if not batch:
            break
        for kind, name in batch:
            try:
                store.delete(kind, namespace, name)
                removed += 1
            except NotFound:
                continue
    return removed


def collect(store: ResourceStore, name: str, uid: str | None) -> bool:
    """Remove what Profile ``name`` (of ``uid``, when known), now gone, owned: its
    namespace with everything in it, or, in a namespace it adopted, the RoleBindings it
    made. True when it is all gone; False while a namespace finalizer is not done yet
    (call it again later: the namespace's object is kept until then)."""
    if name == DEFAULT_NAMESPACE:
        return True
    namespace = _get(store, NAMESPACE, NAMESPACES_STORED_IN, name)
    if uid is None and _get(store, PROFILE, PROFILES_STORED_IN, name) is not None:
        return True  # made again since (read after its namespace): the new one's now
    if namespace is None or not owned_by(namespace, name, uid):
        bindings = [b for b in store.list(ROLE_BINDING, name) if owned_by(b, name, uid)]
        for binding in bindings:
            try:
                store.delete(ROLE_BINDING, name, binding.metadata.name)
            except NotFound:
                continue
        return True
    # the bindings first: access ends before the rest goes
    removed = _delete_all(store, name, (ROLE_BINDING,))
    removed += _delete_all(store, name, None)
    if not store.finalize_namespace(name):
        log.info("profile %s deleted: its namespace goes once what runs in it has stopped", name)
        return False
    try:
        store.delete(NAMESPACE, NAMESPACES_STORED_IN, name)
    except NotFound:
        return True
    log.info("profile %s deleted: removed its namespace and %d objects", name, removed)
    return True


def orphaned_namespaces(store: ResourceStore) -> list[str]:
    """The namespaces a Profile made whose Profile is gone: their removal was not
    finished (a finalizer was not done, or the server stopped meanwhile)."""
    found: list[str] = []
    for namespace in store.list(NAMESPACE, NAMESPACES_STORED_IN):
        name = namespace.metadata.name
        if name != DEFAULT_NAMESPACE and owned_by(namespace, name, None):
            if _get(store, PROFILE, PROFILES_STORED_IN, name) is None:
                found.append(name)
    return found


# -- the source the API writes Profiles through -----------------------------------------------


class ProfileSource(StoreSource):
    """Profiles in the ``resources`` table, provisioned as they are written (so their
    namespace is usable when the write is answered) and collected as they are deleted."""

    def create(self, kind: Kind, resource: Resource) -> Manifest:
        return self._settled(kind, super().create(kind, resource))

    def apply(self, kind: Kind, resource: Resource) -> tuple[Manifest, ApplyResult]:
        applied, outcome = super().apply(kind, resource)
        if outcome == "unchanged":
            return applied, outcome
        return self._settled(kind, applied), outcome

    def delete(self, kind: Kind, namespace: str, name: str) -> Manifest:
        gone = super().delete(kind, namespace, name)
        try:
            collect(self.store, name, (gone.get("metadata") or {}).get("uid"))
        except (KetchError, SQLAlchemyError, OSError) as exc:  # deleted: its controller goes on
            log.warning("profile %s deleted; removing what it owned goes on later: %s", name, exc)
        return gone

    def _settled(self, kind: Kind, manifest: Manifest) -> Manifest:
        profile = Resource.from_manifest(manifest)
        status = copy.deepcopy(profile.status)
        try:
            events = settle(self.store, profile, status)
        except KetchError as exc:  # the controller tries again
            log.warning("profile %s could not be provisioned yet: %s", profile.metadata.name, exc)
            return manifest
        if status == profile.status:
            return manifest
        meta = profile.metadata
        try:
            updated = self.store.update_status(
                kind.kind, meta.namespace, meta.name, status, events=events
            )
        except NotFound:  # deleted meanwhile
            return manifest
        return updated.to_manifest()


_REFUSALS = ("NamespaceOwnedByAnother", "NamespaceExists")


def default_profile_name(email: str) -> str:
    """The namespace Kubeflow's registration flow suggests for ``email``: its local
    part, lower case, other characters as ``-``."""
    local = email.split("@", 1)[0].lower()
    name = re.sub(r"[^a-z0-9-]+", "-", local).strip("-")[:50].strip("-")
    return name or "user"


def ensure_default_profile(store: ResourceStore, email: str) -> str | None:
    """Give ``email`` a profile of their own unless they own one (the registration
    flow): named after the email (``-2``, ``-3``, ... when that namespace is taken).
    The name of the profile they own, or ``None`` when none could be made."""
    email = email.strip().lower()
    for profile in store.list(PROFILE, PROFILES_STORED_IN):
        if owner_of(profile).lower() == email:
            return profile.metadata.name
    base = default_profile_name(email)
    for attempt in range(1, 6):
        name = base if attempt == 1 else f"{base}-{attempt}"
        if _get(store, NAMESPACE, NAMESPACES_STORED_IN, name) is not None or store.names_in(
            name, limit=1
        ):
            continue
        manifest = {
            "apiVersion": PROFILE_KIND.api_version,
            "kind": PROFILE,
            "metadata": {"name": name, "namespace": PROFILES_STORED_IN},
            "spec": {"owner": {"kind": "User", "name": email}},
        }
        try:
            made = ProfileSource(store).create(PROFILE_KIND, Resource.from_manifest(manifest))
        except AlreadyExists:
            continue
        conditions = (made.get("status") or {}).get("conditions") or []
        if not any(c.get("reason") in _REFUSALS for c in conditions):
            return name
        ProfileSource(store).delete(PROFILE_KIND, PROFILES_STORED_IN, name)
    log.warning("no default profile could be made for %s", email)
    return None
