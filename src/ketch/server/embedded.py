"""An embedded control plane: the server's controllers in the caller's process.

``ketch.tune(...)`` without a server uses one: the same store (``KETCH_HOME`` or
``KETCH_DATABASE_URL``), the same controllers, no HTTP. ``accept`` limits what it
reconciles to the caller's own objects, so other resources in the store (left by
a server that is not running) are not touched.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType

from ketch.core import config
from ketch.core.backend import Backend
from ketch.core.capability import Admission, Capability, controllers_of
from ketch.core.controller import Manager
from ketch.core.resource import Resource
from ketch.core.store.db import init_db
from ketch.core.store.resources import ResourceStore


def default_capabilities() -> Sequence[Capability]:
    """Every capability Ketch assembles (the composition root's tuple)."""
    from ketch.capabilities import CAPABILITIES

    return CAPABILITIES


def default_backend() -> Backend:
    """The compute backend the composition root picks."""
    from ketch.capabilities import backend

    return backend()


def admission(capabilities: Sequence[Capability] | None = None) -> Admission:
    """The validators of ``capabilities`` (default: all), as the API server checks
    manifests: for clients that store objects without a server."""
    return Admission(default_capabilities() if capabilities is None else capabilities)


class ControlPlane:
    """Controllers over the store at ``database_url`` (default: the configured one)."""

    def __init__(
        self,
        capabilities: Sequence[Capability] | None = None,
        *,
        backend: Backend | None = None,
        database_url: str | None = None,
        home: Path | None = None,
        accept: Callable[[Resource], bool] | None = None,
    ) -> None:
        url = database_url or config.database_url(home)
        init_db(url)
        self.store = ResourceStore(url, migrate=False)
        if capabilities is None:
            capabilities = default_capabilities()
        self.manager = Manager(accept=accept)
        for controller in controllers_of(capabilities, self.store, backend or default_backend()):
            self.manager.add(controller)
        self.manager.watch(self.store)

    def start(self) -> ControlPlane:
        self.manager.start()
        return self

    def stop(self) -> None:
        self.manager.stop()

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.stop()
