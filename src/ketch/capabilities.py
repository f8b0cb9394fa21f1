"""The composition root: every capability Ketch assembles, in one explicit tuple,
and the one place that picks the compute backend.

The API server (``ketch up``, :func:`create_app`) and the embedded control plane
(``ketch.tune`` with no server, :data:`ASSEMBLY`) serve exactly these; nothing
registers itself on import.
"""

from __future__ import annotations

import atexit
import functools
import threading
from typing import TYPE_CHECKING, Any

from ketch.core.backend import Backend
from ketch.core.capability import Capability
from ketch.core.embedded import Assembly
from ketch.core.store.db import Database
from ketch.jobs.capability import CAPABILITY as JOBS
from ketch.notebooks.capability import CAPABILITY as NOTEBOOKS
from ketch.pipelines.capability import CAPABILITY as PIPELINES
from ketch.registry.capability import CAPABILITY as REGISTRY
from ketch.serving.capability import CAPABILITY as SERVING
from ketch.tenancy.capability import CAPABILITY as TENANCY
from ketch.trainer.capability import CAPABILITY as TRAINER
from ketch.tuning.capability import CAPABILITY as TUNING

if TYPE_CHECKING:
    from fastapi import FastAPI

    from ketch.core.backend import LocalBackend
    from ketch.pipelines.lightweight import Packages
    from ketch.tenancy.authn import ProxySettings

CAPABILITIES: tuple[Capability, ...] = (
    PIPELINES,
    JOBS,
    TRAINER,
    TUNING,
    SERVING,
    TENANCY,
    REGISTRY,
    NOTEBOOKS,
)


_BACKEND_LOCK = threading.Lock()
_backends: list[LocalBackend] = []  # the process's backend, once made


def backend() -> Backend:
    """The compute backend controllers start processes through: the local one (its
    warm fork server and process groups), made on first use, shared by everything in
    this process and shut down when the process exits (a new one is made if it was
    shut down before)."""
    from ketch.core.backend import LocalBackend

    with _BACKEND_LOCK:
        if not _backends:
            atexit.register(_shutdown_backend)
        if not _backends or _backends[-1].closed:
            _backends[:] = [LocalBackend()]
        return _backends[-1]


def _shutdown_backend() -> None:
    with _BACKEND_LOCK:
        for made in _backends:
            made.shutdown(grace=2.0)


@functools.cache
def packages() -> Packages:
    """What this interpreter has installed (read once: the distributions and the
    modules they provide), shared by every pipeline run in this process."""
    from ketch.pipelines.lightweight import Packages

    return Packages()


@functools.cache
def database(url: str) -> Database:
    """The store at ``url`` as this process's in-process runs use it (``ketch.run``):
    one per URL, kept for the process, so later runs reuse its connections and
    compiled statements (opening the store anew costs a run several times its own
    orchestration)."""
    return Database(url)


ASSEMBLY = Assembly(CAPABILITIES, backend)


def create_app(
    *, proxy: ProxySettings | None = None, registration: bool = False, **options: Any
) -> FastAPI:
    """The API server app for every capability, on the chosen backend, with users,
    profiles and roles (:mod:`ketch.tenancy`: on once the store has a user or
    ``proxy`` names trusted proxies); ``options`` as for
    :func:`ketch.server.app.create_app`."""
    from ketch.server.app import create_app as assemble
    from ketch.tenancy.access import access_factory
    from ketch.tenancy.isolation import isolating

    made = backend()
    options.setdefault("access", isolating(access_factory(proxy, registration=registration), made))
    return assemble(CAPABILITIES, backend=made, **options)
