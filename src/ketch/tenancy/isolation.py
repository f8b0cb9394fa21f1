"""Multi-user mode on the host: once the store has users, the backend runs each
profile's workloads as an OS user of its own (see :mod:`ketch.core.backend.hostusers`).

The composition root wraps the access factory with :func:`isolating`: when the
server makes its access implementation over its store, the backend learns when
multi-user mode is on (the store has users; a user added to a running server turns
it on within a second) and the server warns at its start when workloads could not
run isolated here (not root, or ``KETCH_HOME`` closed to other users).
``KETCH_HOST_ISOLATION=off`` leaves the backend alone: workloads run as the server's
user, and the server says so at its start.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy.exc import SQLAlchemyError

from ketch.core.access import Access
from ketch.core.backend import Backend
from ketch.core.backend.hostusers import OFF, NamespaceUsers, switched_off
from ketch.core.store.db import Database
from ketch.core.store.resources import ResourceStore
from ketch.tenancy.users import Directory

log = logging.getLogger("ketch.tenancy")

Factory = Callable[[Database, ResourceStore], Access]


def isolating(factory: Factory, backend: Backend) -> Factory:
    """``factory``, also setting ``backend.isolation`` to the users of the store's
    namespaces, on while the store has users."""

    def make(database: Database, store: ResourceStore) -> Access:
        made = factory(database, store)
        if switched_off():
            backend.isolation = None
            log.warning(
                "WARNING: %s: in multi-user mode every profile's workloads run as this "
                "server's OS user; profiles are kept apart over HTTP only",
                OFF,
            )
            return made
        users = NamespaceUsers(Directory(database).has_users)
        backend.isolation = users
        try:  # warns now when multi-user mode is on and cannot be isolated here
            users.active()
        except SQLAlchemyError:  # a store not migrated yet: it has no users
            log.debug("multi-user mode: the store has no users table yet")
        return made

    return make
