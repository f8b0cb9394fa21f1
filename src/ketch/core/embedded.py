"""An embedded control plane: the server's controllers in the caller's process.

``ketch.tune(...)`` without a server uses one: the same store (``KETCH_HOME`` or
``KETCH_DATABASE_URL``), the same controllers, no HTTP. ``accept`` limits what it
reconciles to the caller's own objects, so other resources in the store (left by
a server that is not running) are not touched.

An :class:`Assembly` is what the composition root (:mod:`ketch.capabilities`)
hands to code that needs one: the capabilities and the backend to build a control
plane or an admission from, so no capability has to know the others.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from ketch.core import config
from ketch.core.backend import Backend
from ketch.core.capability import (
    Admission,
    Capability,
    controllers_of,
    finalize_namespaces,
    migrations_of,
)
from ketch.core.controller import Manager
from ketch.core.resource import Resource
from ketch.core.services import ServiceContext
from ketch.core.store.db import Database
from ketch.core.store.resources import ResourceStore


class ControlPlane:
    """The controllers of ``capabilities`` over ``database`` (or, when none is given,
    a :class:`Database` of its own on ``database_url``, default the configured one,
    closed when the control plane stops), starting processes through ``backend``."""

    def __init__(
        self,
        capabilities: Sequence[Capability],
        *,
        backend: Backend,
        database: Database | None = None,
        database_url: str | None = None,
        home: Path | None = None,
        accept: Callable[[Resource], bool] | None = None,
    ) -> None:
        self._owns_database = database is None
        self.database = (
            database
            if database is not None
            else Database(database_url or config.database_url(home))
        )
        try:
            self.database.migrate(migrations_of(capabilities))
        except BaseException:
            if self._owns_database:
                self.database.dispose()
            raise
        self.store = ResourceStore(self.database, migrate=False)
        # what deleting a namespace removes besides its objects (no services run here)
        finalize_namespaces(
            capabilities, ServiceContext(store=self.store, backend=backend, database=self.database)
        )
        self.manager = Manager(accept=accept)
        for controller in controllers_of(capabilities, self.store, backend):
            self.manager.add(controller)
        self.manager.watch(self.store)

    def start(self) -> ControlPlane:
        self.manager.start()
        return self

    def stop(self) -> None:
        try:
            self.manager.stop()
        finally:
            if self._owns_database:
                self.database.dispose()

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.stop()


@dataclass(frozen=True)
class Assembly:
    """The capabilities Ketch assembles and how to get its compute backend (called
    only when a control plane is built, so checking a manifest starts nothing)."""

    capabilities: Sequence[Capability]
    backend: Callable[[], Backend]

    def admission(self) -> Admission:
        """The validators of every capability, as the API server checks manifests."""
        return Admission(self.capabilities)

    @property
    def migrations(self) -> tuple[Path, ...]:
        """Every capability's own Alembic version folder, for
        :meth:`ketch.core.store.db.Database.migrate` (which always adds core's)."""
        return migrations_of(self.capabilities)

    def control_plane(
        self,
        *,
        database: Database | None = None,
        database_url: str | None = None,
        home: Path | None = None,
        accept: Callable[[Resource], bool] | None = None,
    ) -> ControlPlane:
        """A control plane running every capability's controllers here (over
        ``database`` when one is given; see :class:`ControlPlane`)."""
        return ControlPlane(
            self.capabilities,
            backend=self.backend(),
            database=database,
            database_url=database_url,
            home=home,
            accept=accept,
        )
