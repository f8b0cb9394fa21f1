"""Services: what a capability runs beside its controllers while the API server runs
(the pipelines capability's run service and recurring-run scheduler, for instance).

A capability declares factories (``Capability.services``); when the server starts
(and runs work in the background), it calls each with the :class:`ServiceContext` of
its app, starts what they made in order, and stops them in reverse order when it
stops. Routes find a service of their capability, by its type, in the context the
server publishes on its app (:func:`context_of`): none is found on a server that
runs no background work.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, TypeVar

from ketch.core.backend import Backend
from ketch.core.sources import Source
from ketch.core.store.db import Database
from ketch.core.store.resources import ResourceStore

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.requests import HTTPConnection


class Service(Protocol):
    """Something that runs while the server runs."""

    def start(self) -> object:
        """Start working (called once, in a worker thread, when the server starts;
        what it returns is not used)."""
        ...

    def stop(self) -> object:
        """Stop working (called once when the server stops, if it was started)."""
        ...


S = TypeVar("S")


class Services:
    """The services an app's capabilities made, found by their type."""

    def __init__(self, services: Iterable[Service] = ()) -> None:
        self._services: list[Service] = list(services)

    def replace(self, services: Iterable[Service]) -> None:
        """Make ``services`` the app's (those of its latest start)."""
        self._services = list(services)

    def __iter__(self) -> Iterator[Service]:
        return iter(list(self._services))

    def find(self, kind: type[S]) -> S | None:
        """The first service that is a ``kind``, or ``None`` when there is none."""
        for service in self._services:
            if isinstance(service, kind):
                return service
        return None


@dataclass(frozen=True)
class ServiceContext:
    """What services and sources are made with: the app's store and database, the
    compute backend, and the app's own signals."""

    store: ResourceStore
    backend: Backend
    #: the app's connections to the store (``database.url`` where a URL is needed)
    database: Database
    #: the server holds the store's control-plane lock: no other server is running
    sole_server: bool = False
    #: wakes the app's watchers after a change they cannot see in the store's feed
    changed: Callable[[], None] = lambda: None
    #: set while the server shuts down: long responses (followed logs) end
    stopping: threading.Event = field(default_factory=threading.Event)
    #: the services of the app's latest start (none before, or without background work)
    services: Services = field(default_factory=Services)


ServiceFactory = Callable[[ServiceContext], Service | Sequence[Service]]
SourceFactory = Callable[[ServiceContext], Source]


def publish(app: Starlette, context: ServiceContext) -> None:
    """Make ``context`` the one :func:`context_of` finds for ``app``."""
    app.state.services = context


def context_of(request: HTTPConnection) -> ServiceContext:
    """The :class:`ServiceContext` of the app serving ``request``."""
    context = request.app.state.services
    if not isinstance(context, ServiceContext):
        raise RuntimeError("this app was not built with a service context")
    return context
