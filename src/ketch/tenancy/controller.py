"""The Profile controller: each pass makes (or puts right) a profile's namespace and its
owner's ``namespaceAdmin`` RoleBinding and writes the ``Ready`` condition, with an
event when it changes (:func:`ketch.tenancy.profiles.settle`).

The API server already does this as a profile is written (its namespace is usable
when the write is answered); the controller brings about what changed otherwise: a
profile written to the store directly, a namespace or a binding removed or changed
(it watches both), a refused namespace given to the owner later. When a profile is
gone, what it owned goes too (:func:`ketch.tenancy.profiles.collect`), as Kubernetes'
garbage collector removes it for Kubeflow: again every :data:`RETRY` seconds while a
namespace finalizer is not done (runs still stopping), and, after a restart, for each
namespace whose profile is gone (:func:`ketch.tenancy.profiles.orphaned_namespaces`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ketch.core.backend import Backend
from ketch.core.controller import Events, Key, Result, StatusController
from ketch.core.errors import NotFound
from ketch.core.rbac import NAMESPACE, NAMESPACES_STORED_IN, ROLE_BINDING
from ketch.core.resource import Resource
from ketch.core.store.resources import ResourceStore
from ketch.tenancy.profiles import (
    OWNER_BINDING,
    PROFILES_STORED_IN,
    collect,
    orphaned_namespaces,
    settle,
)
from ketch.tenancy.spec import PROFILE

#: seconds between tries to finish a deleted profile's removal
RETRY = 1.0


class ProfileController(StatusController):
    kind = PROFILE
    watches = (NAMESPACE, ROLE_BINDING)

    def related(self, resource: Resource) -> Iterable[Key]:
        meta = resource.metadata
        if resource.kind == NAMESPACE and meta.namespace == NAMESPACES_STORED_IN:
            yield (PROFILES_STORED_IN, meta.name)
        elif resource.kind == ROLE_BINDING and meta.name == OWNER_BINDING:
            yield (PROFILES_STORED_IN, meta.namespace)

    def tracked_keys(self) -> Iterable[Key]:
        # profiles deleted before their namespace was removed (see collect)
        return [(PROFILES_STORED_IN, name) for name in orphaned_namespaces(self.store)]

    def reconcile(self, key: Key) -> Result | None:
        try:
            self.store.get(PROFILE, *key)
        except NotFound:  # gone: what it owned goes, again later while runs stop
            return None if collect(self.store, key[1], None) else Result(requeue_after=RETRY)
        return super().reconcile(key)

    def sync(
        self, key: Key, resource: Resource, status: dict[str, Any], events: Events
    ) -> Result | None:
        events.extend(settle(self.store, resource, status))
        return None

    def gone(self, key: Key) -> None:
        try:
            self.store.get(PROFILE, *key)
        except NotFound:  # deleted while this pass ran: the deletion's pass finishes
            collect(self.store, key[1], None)
        # else made again since: its own pass takes over what the former one owned


def make_controller(store: ResourceStore, _backend: Backend) -> ProfileController:
    return ProfileController(store)
