"""Kubeflow's roles, decided: :class:`RoleAuthorizer` implements
:class:`ketch.core.access.Authorizer` over the store's Profiles and RoleBindings.

- A cluster admin (a user marked admin) may do everything.
- In a namespace, a caller's role is the highest one given to them, or to one of their
  groups, by a RoleBinding there (``roleRef.name`` ``kubeflow-admin``/``admin``,
  ``kubeflow-edit``/``edit``, ``kubeflow-view``/``view``; ``cluster-admin`` counts as
  admin), or ``admin`` when they own the Profile of that name. As Kubeflow's
  ClusterRoles have it (a ServiceAccount subject is the user
  ``system:serviceaccount:<namespace>:<name>``, and Kubeflow's ``default-editor``
  service account of a namespace holds ``edit`` there, and nowhere else, as the
  profile controller binds it): ``view`` reads everything but Secrets; ``edit`` also writes
  everything but RoleBindings; ``admin`` also manages RoleBindings (contributors).
- Across namespaces (``namespace`` is ``None``): a list or watch is allowed and
  filtered to the namespaces where the caller may read (:meth:`namespaces`); a
  Profile is read by its owner and contributors, deleted by its owner; other
  cluster-scoped kinds (ClusterTrainingRuntimes, ...) are read by anyone signed in
  and written by cluster admins only.

What the store holds is read once into a snapshot, made again after a Profile,
RoleBinding or Namespace changes through the store (a listener), and at most
:data:`REFRESH_SECONDS` old otherwise (for writes made by another process).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ketch.core.access import READ_VERBS, Attributes, Decision, Identity, Verb, service_account
from ketch.core.resource import Resource
from ketch.core.store.resources import ResourceStore

PROFILE = "Profile"
ROLE_BINDING = "RoleBinding"
#: the namespace cluster-scoped objects (Profiles) are stored in
CLUSTER_NAMESPACE = "default"
REFRESH_SECONDS = 2.0

VIEW, EDIT, ADMIN = 1, 2, 3
#: a RoleBinding's ``roleRef.name`` → the level it gives
ROLES: Mapping[str, int] = {
    "kubeflow-view": VIEW,
    "view": VIEW,
    "kubeflow-edit": EDIT,
    "edit": EDIT,
    "kubeflow-admin": ADMIN,
    "admin": ADMIN,
    "cluster-admin": ADMIN,
}
_WATCHED = frozenset({PROFILE, ROLE_BINDING, "Namespace"})
#: cluster-scoped resources only cluster admins read: (group, resource)
ADMIN_ONLY = frozenset({("ketch.dev", "audit")})


@dataclass(frozen=True)
class Snapshot:
    """Who holds which level in each namespace: ``{namespace: {(kind, name): level}}``
    (``kind`` ``User`` or ``Group``), and each profile's owner."""

    levels: dict[str, dict[tuple[str, str], int]] = field(default_factory=dict)
    owners: dict[str, str] = field(default_factory=dict)


def level_for(verb: str, resource: str) -> int:
    """The level a verb on a resource in a namespace needs."""
    if verb in READ_VERBS:
        return EDIT if resource == "secrets" else VIEW
    if resource == "rolebindings":
        return ADMIN
    return EDIT


def read_snapshot(store: ResourceStore) -> Snapshot:
    snapshot = Snapshot()

    def give(namespace: str, kind: str, name: str, level: int) -> None:
        held = snapshot.levels.setdefault(namespace, {})
        key = (kind, name.lower() if kind == "User" else name)
        held[key] = max(held.get(key, 0), level)

    # a namespace someone else owns (its "owner" annotation) is not a profile owner's,
    # even when their profile names it: the profile refused to take it over
    namespace_owners = {
        ns.metadata.name: str((ns.metadata.annotations or {}).get("owner", "")).lower()
        for ns in store.list("Namespace", CLUSTER_NAMESPACE)
    }
    for profile in store.list(PROFILE, CLUSTER_NAMESPACE):
        owner = _owner(profile)
        if owner and _holds(profile, owner, namespace_owners):
            snapshot.owners[profile.metadata.name] = owner
            give(profile.metadata.name, "User", owner, ADMIN)
    for binding in store.list(ROLE_BINDING, None):
        level = ROLES.get(str((binding.spec.get("roleRef") or {}).get("name", "")), 0)
        if not level:
            continue
        for subject in binding.spec.get("subjects") or ():
            if isinstance(subject, dict) and subject.get("kind") in ("User", "Group"):
                give(binding.metadata.namespace, subject["kind"], str(subject.get("name")), level)
            elif isinstance(subject, dict) and subject.get("kind") == "ServiceAccount":
                account_namespace = str(subject.get("namespace") or binding.metadata.namespace)
                account = service_account(account_namespace, str(subject.get("name")))
                give(binding.metadata.namespace, "User", account, level)
    return snapshot


def _own_namespace(identity: Identity) -> str:
    """The namespace whose default-editor service account ``identity`` is ("" when none)."""
    prefix = service_account("", "")[:-2]  # "system:serviceaccount"
    parts = identity.name.split(":")
    if len(parts) == 4 and ":".join(parts[:2]) == prefix and parts[3] == "default-editor":
        return parts[2]
    return ""


#: the reasons a Profile gives for not taking its namespace over
_REFUSED = frozenset({"NamespaceOwnedByAnother", "NamespaceExists"})


def _holds(profile: Resource, owner: str, namespace_owners: Mapping[str, str]) -> bool:
    """Whether the profile's owner holds its namespace: the Namespace names them as its
    owner, or names no owner and the profile has not refused to take it over."""
    name = profile.metadata.name
    if namespace_owners.get(name):
        return namespace_owners[name] == owner
    return not any(
        isinstance(c, dict) and c.get("reason") in _REFUSED
        for c in profile.status.get("conditions") or ()
    )


def _owner(profile: Resource) -> str:
    owner = profile.spec.get("owner")
    return str(owner.get("name", "")).lower() if isinstance(owner, dict) else ""


class RoleAuthorizer:
    """:class:`ketch.core.access.Authorizer` for Kubeflow's roles (see the module)."""

    def __init__(self, store: ResourceStore) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._snapshot: Snapshot | None = None
        self._read_at = 0.0
        store.add_listener(self._changed)

    def _changed(self, resource: Resource, _deleted: bool) -> None:
        if resource.kind in _WATCHED:
            self._snapshot = None

    def snapshot(self) -> Snapshot:
        found = self._snapshot
        if found is not None and time.monotonic() - self._read_at < REFRESH_SECONDS:
            return found
        with self._lock:
            if self._snapshot is None or time.monotonic() - self._read_at >= REFRESH_SECONDS:
                self._read_at = time.monotonic()
                self._snapshot = read_snapshot(self.store)
            return self._snapshot

    def level(self, identity: Identity, namespace: str) -> int:
        # Kubeflow's default-editor service account edits its own namespace: the
        # identity of the workloads Ketch starts there
        own = EDIT if identity.name == service_account(namespace) else 0
        held = self.snapshot().levels.get(namespace)
        if not held:
            return own
        best = max(own, held.get(("User", identity.name.lower()), 0))
        for group in identity.groups:
            best = max(best, held.get(("Group", group), 0))
        return best

    def authorize(self, identity: Identity, attributes: Attributes) -> Decision:
        if identity.admin:
            return Decision(True, "cluster admin")
        verb, resource = attributes.verb, attributes.resource
        if attributes.namespace is not None:
            needed = level_for(verb, resource)
            if resource == "namespaces" and verb not in READ_VERBS:
                needed = ADMIN + 1  # a namespace is made and removed by its Profile
            held = self.level(identity, attributes.namespace)
            return Decision(held >= needed, f"holds level {held}, needs {needed}")
        if (attributes.group, resource) in ADMIN_ONLY:
            return Decision(False, "only a cluster admin may")
        if resource == "profiles" and attributes.group == "kubeflow.org":
            return self._profile(identity, attributes)
        if verb in (Verb.LIST, Verb.WATCH):
            return Decision(True, "filtered to the namespaces the caller may read")
        if verb in READ_VERBS:
            return Decision(True, "cluster-scoped objects are read by anyone signed in")
        return Decision(False, "only a cluster admin writes cluster-scoped objects")

    def _profile(self, identity: Identity, attributes: Attributes) -> Decision:
        name = attributes.name
        if attributes.verb in (Verb.LIST, Verb.WATCH) or name is None:
            return Decision(attributes.verb in READ_VERBS, "filtered to the caller's profiles")
        owner = self.snapshot().owners.get(name)
        if attributes.verb in READ_VERBS:
            return Decision(
                owner == identity.name.lower() or self.level(identity, name) >= VIEW,
                "a profile is read by its owner and contributors",
            )
        return Decision(owner == identity.name.lower(), "a profile is changed by its owner")

    def namespaces(self, identity: Identity, verb: str) -> frozenset[str] | None:
        if identity.admin:
            return None
        needed = VIEW if verb in READ_VERBS else EDIT
        found = {
            namespace
            for namespace in self.snapshot().levels
            if self.level(identity, namespace) >= needed
        }
        own = _own_namespace(identity)
        if own:
            found.add(own)
        return frozenset(found)

    def home(self, identity: Identity) -> str | None:
        own = _own_namespace(identity)
        if own:
            return own
        name = identity.name.lower()
        owned = sorted(ns for ns, owner in self.snapshot().owners.items() if owner == name)
        return owned[0] if owned else None

    def profiles_of(self, identity: Identity) -> dict[str, Any]:
        """The profiles the caller works in, with their role there (for ``whoami``)."""
        names = {0: "", VIEW: "view", EDIT: "edit", ADMIN: "admin"}
        snapshot = self.snapshot()
        return {
            namespace: names[self.level(identity, namespace)]
            for namespace in snapshot.owners
            if identity.admin or self.level(identity, namespace)
        }
