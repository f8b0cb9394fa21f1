"""What the resource routes share: kinds, where each kind is stored, the change feed."""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TypeVar

from fastapi import Request

from ketch.core import quota
from ketch.core.capability import Admission
from ketch.core.controller import Manager
from ketch.core.kinds import Kind, KindRegistry
from ketch.core.resource import Resource
from ketch.core.sources import JournaledSource, Source, StoreSource
from ketch.core.store.db import Database
from ketch.core.store.resources import ResourceStore
from ketch.server.fieldvalidation import PublishedSchemas
from ketch.server.watch import ChangeNotifier

T = TypeVar("T")


@dataclass
class ApiState:
    #: the app's connections to the store (made by ``create_app``, closed when it stops)
    database: Database
    kinds: KindRegistry
    store: ResourceStore
    sources: dict[str, Source] = field(default_factory=dict)
    notifier: ChangeNotifier = field(default_factory=ChangeNotifier)
    stopping: threading.Event = field(default_factory=threading.Event)
    controllers: Manager | None = None
    admission: Admission = field(default_factory=lambda: Admission(()))
    #: each kind's published schema, what writes drop unknown fields by
    schemas: PublishedSchemas = field(default_factory=PublishedSchemas)

    def validate(self, kind: Kind, resource: Resource) -> Resource:
        """Run ``kind``'s validator (if it has one) on ``resource``."""
        check = self.admission.validator(kind.kind)
        if check is not None:
            check(resource)
        return resource

    def admit_create(self, kind: Kind, resource: Resource) -> AbstractContextManager[None]:
        """Held while ``resource``, a new object of ``kind``, is stored: a count quota
        of its namespace's profile that it would exceed refuses it (403,
        :func:`ketch.core.quota.admit_create`)."""

        def count() -> int:
            page = self.source(kind).list(
                kind,
                resource.metadata.namespace,
                label_selector=None,
                limit=None,
                continue_token=None,
            )
            return len(page.items)

        # one at a time with every other counted create of the store (controllers' too)
        lock = quota.count_lock(self.store)
        return quota.admit_create(self.store, lock, kind, resource, count)

    def source(self, kind: Kind) -> Source:
        """The source serving ``kind`` (the ``resources`` table unless one is set)."""
        found = self.sources.get(kind.kind)
        if found is None:
            found = StoreSource(self.store)
            self.sources[kind.kind] = found
        return found

    def changed(self, kind: Kind, namespace: str, name: str) -> None:
        """Tell the kind's controllers that an object changed, and its watchers when
        its source has no journal (a journaled write wakes them as it commits)."""
        if not isinstance(self.source(kind), JournaledSource):
            self.notifier.notify()
        if self.controllers is not None:
            self.controllers.enqueue(kind.kind, namespace, name)


def api_state(request: Request) -> ApiState:
    state: ApiState = request.app.state.api
    return state


def per_app(request: Request, attribute: str, make: Callable[[KindRegistry], T]) -> T:
    """What ``make`` makes of the app's kinds (its discovery or OpenAPI documents):
    made on first use and kept on the app as ``attribute``."""
    found: T | None = getattr(request.app.state, attribute, None)
    if found is None:
        found = make(api_state(request).kinds)
        setattr(request.app.state, attribute, found)
    return found
