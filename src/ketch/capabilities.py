"""The composition root: every capability Ketch assembles, in one explicit tuple,
and the one place that picks the compute backend.

The API server (``ketch up``, :func:`create_app`) and the embedded control plane
(``ketch.tune`` with no server, :data:`ASSEMBLY`) serve exactly these; nothing
registers itself on import.
"""

from __future__ import annotations

import atexit
import functools
import os
import threading
from typing import TYPE_CHECKING, Any

from ketch.core.backend import Backend
from ketch.core.capability import Capability
from ketch.core.embedded import Assembly
from ketch.core.errors import InvalidSpec
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
    from ketch.core.backend.ray import RayBackend
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


#: which compute backend runs the workloads: ``local`` (the default) or ``ray``
BACKEND_ENV = "KETCH_BACKEND"
#: the Ray cluster the ``ray`` backend joins (``host:port`` of its head), as Ray reads it
RAY_ADDRESS_ENV = "RAY_ADDRESS"
BACKENDS = ("local", "ray")

_BACKEND_LOCK = threading.Lock()
_backends: list[LocalBackend | RayBackend] = []  # the process's backend, once made


def backend() -> Backend:
    """The compute backend controllers start processes through, made on first use,
    shared by everything in this process and shut down when the process exits (a new
    one is made if it was shut down before): the local one (its warm fork server and
    process groups), or with ``KETCH_BACKEND=ray`` the Ray cluster at ``RAY_ADDRESS``
    (:mod:`ketch.core.backend.ray`)."""
    with _BACKEND_LOCK:
        if not _backends:
            atexit.register(_shutdown_backend)
        if not _backends or _backends[-1].closed:
            _backends[:] = [_make_backend()]
        return _backends[-1]


def backend_name() -> str:
    """The backend ``KETCH_BACKEND`` names (``local`` when unset); :class:`InvalidSpec`
    naming the variable for any other value."""
    chosen = os.environ.get(BACKEND_ENV, "").strip().lower() or "local"
    if chosen not in BACKENDS:
        raise InvalidSpec(
            f"unknown compute backend {chosen!r}: use {' or '.join(BACKENDS)}", field=BACKEND_ENV
        )
    return chosen


def _make_backend() -> LocalBackend | RayBackend:
    if backend_name() == "ray":
        from ketch.core.backend.ray import RayBackend

        return RayBackend(os.environ.get(RAY_ADDRESS_ENV) or None)
    from ketch.core.backend import LocalBackend

    return LocalBackend()


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
