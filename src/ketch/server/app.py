"""The API server: one FastAPI app assembling the capabilities it is given.

:func:`create_app` serves the union of the capabilities' kinds (from the
``resources`` table, or from the source a capability names for a kind), checks
manifests with their validators, runs their controllers and services and includes
their routes (see :mod:`ketch.core.capability`; the tuple is
:data:`ketch.capabilities.CAPABILITIES`).
"""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from ketch.core import config
from ketch.core.access import PUBLIC, Access, ServerAddress, bind_access, bind_address, rule
from ketch.core.backend import Backend
from ketch.core.capability import (
    Admission,
    Capability,
    controllers_of,
    finalize_namespaces,
    forms_of,
    kinds_of,
    migrations_of,
    page_writes_of,
    services_of,
    sources_of,
    uploads_of,
)
from ketch.core.controller import Manager
from ketch.core.routes import ErrorBody
from ketch.core.services import ServiceContext, publish
from ketch.core.store.db import Database
from ketch.core.store.resources import ResourceStore
from ketch.server import access as access_check
from ketch.server import errors, guard
from ketch.server.guard import RequestGuardMiddleware
from ketch.server.state import ApiState

log = logging.getLogger(__name__)


def create_app(
    capabilities: Sequence[Capability],
    *,
    backend: Backend,
    database_url: str | None = None,
    home: Path | None = None,
    background: bool = True,
    bind: str = "127.0.0.1",
    sole_server: bool = False,
    access: Callable[[Database, ResourceStore], Access] | None = None,
    address: ServerAddress | None = None,
) -> FastAPI:
    """The API server app for ``capabilities`` (:func:`ketch.capabilities.create_app`
    assembles every capability Ketch has).

    ``database_url`` defaults to ``KETCH_DATABASE_URL`` or the SQLite file in ``home``
    (default ``KETCH_HOME``). ``home`` also becomes ``KETCH_HOME`` for the process
    when the server starts (logs and artifacts go there). ``background=False``
    starts no controllers or services (the routes still serve what is stored). ``bind`` is the address the server listens on: it
    decides the ``Host`` names it answers to (see :mod:`ketch.server.guard`).
    ``backend`` is the compute backend every controller and service starts processes
    through.
    ``sole_server``: the caller holds the store's control-plane lock
    (:class:`ketch.core.locks.ControlPlaneLock`), so every run another server left in
    flight is this one's to resume.
    ``access`` makes the access implementation (who is calling, what they may do; see
    :mod:`ketch.server.access`) over the app's store; without it every caller is the
    one local user.
    ``address``: where the app is served (its URL, once its socket is bound), which
    the workloads its controllers and services start get in ``KETCH_URL`` to call it
    back (see :func:`ketch.core.access.workload_env`).

    The app has one :class:`~ketch.core.store.db.Database` (its connections to the
    store), which everything it serves and runs uses; the store is migrated when the
    app starts and its connections are closed when the app stops.
    """
    from ketch.server.core_api import core_capability
    from ketch.server.pods import pods_capability

    # the core group (/api/v1: namespaces, events, secrets, configmaps, and the pods the
    # capabilities record as they run their processes) is the server's own
    capabilities = (pods_capability(capabilities), core_capability(capabilities), *capabilities)
    database = Database(database_url or config.database_url(home))
    admission = Admission(capabilities)
    state = ApiState(
        database=database,
        kinds=kinds_of(capabilities),
        store=ResourceStore(database, migrate=False),
        admission=admission,
    )
    # every write through the app's Database that journals a change (a request's, a
    # controller's, a service's, in whichever thread) wakes its watches as it commits
    database.commits.subscribe(lambda _revision: state.notifier.notify())
    context = ServiceContext(
        store=state.store,
        backend=backend,
        database=database,
        sole_server=sole_server,
        changed=state.notifier.notify,
        stopping=state.stopping,
    )
    state.sources.update(sources_of(capabilities, context))
    # what deleting a namespace (a profile's) removes besides its objects
    finalize_namespaces(capabilities, context)
    applied = access(database, state.store) if access is not None else None
    bind_access(database, applied)  # what the controllers of this store find
    bind_address(database, address)  # where their workloads call the server back

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if home is not None:
            os.environ["KETCH_HOME"] = str(Path(home).expanduser().resolve())
        state.stopping.clear()
        started: list[Callable[[], Any]] = [database.dispose]  # closed last
        stop_audit = getattr(applied.audit if applied is not None else None, "stop", None)
        if stop_audit is not None:
            started.append(stop_audit)
        if getattr(backend, "isolation", None) is not None:
            # the backend ran workloads as the users of this app's store: not after it
            started.append(lambda: setattr(backend, "isolation", None))
        try:
            await run_in_threadpool(database.migrate, migrations_of(capabilities))
            if background:
                services = services_of(capabilities, context)
                context.services.replace(services)
                for service in services:
                    await run_in_threadpool(service.start)
                    started.append(service.stop)
                manager = Manager()
                for controller in controllers_of(capabilities, state.store, backend):
                    manager.add(controller)
                manager.watch(state.store)  # what controllers write wakes the others
                manager.start()
                started.append(manager.stop)
                state.controllers = manager
                app.state.controllers = manager
            await run_in_threadpool(state.schemas.warm, state.kinds)
            # What is made by now (modules, kinds, routes, controllers) lives as long as
            # the server: frozen out of the collector's way, a full collection scans only
            # what requests made since, instead of pausing a list of a thousand objects
            # for a hundred milliseconds and more
            gc.collect()
            gc.freeze()
            started.append(gc.unfreeze)
            yield
        finally:
            state.stopping.set()
            for stop in reversed(started):
                try:
                    await run_in_threadpool(stop)
                except Exception:
                    log.exception("stopping %r failed", stop)

    app = FastAPI(
        title="Ketch API",
        version=config.version(),
        description=(
            "Kubeflow's APIs served by Ketch: Kubernetes-style resources "
            "(/apis/{group}/{version}/...), logs, events and the KFP v2beta1 API."
        ),
        lifespan=lifespan,
        dependencies=[Depends(access_check.authorize)],
    )
    app.state.api = state
    app.state.access = applied
    app.state.controllers = None
    publish(app, context)
    errors.install(app)
    # the guard runs first (added last): a refused origin or body never reaches sign-in
    app.add_middleware(
        access_check.AccessMiddleware, access=applied, page_writes=page_writes_of(capabilities)
    )
    app.add_middleware(
        RequestGuardMiddleware,
        hosts=guard.allowed_hosts(bind),
        uploads=uploads_of(capabilities),
        forms=forms_of(capabilities),
        page_writes=page_writes_of(capabilities),
    )
    app.add_api_route(
        "/healthz", rule(PUBLIC)(healthz), methods=["GET"], tags=["health"], summary="Liveness"
    )
    app.add_api_route(
        "/readyz",
        rule(PUBLIC)(readyz),
        methods=["GET"],
        tags=["health"],
        summary="Readiness: the database answers",
        responses={503: {"model": ErrorBody, "description": "Not ready"}},
    )
    for capability in capabilities:
        for make_router in capability.routers:
            app.include_router(make_router())
    from ketch.server import discovery, logs_api, openapi, resources_api

    # after the capabilities' routes: /apis/v2beta1/... is KFP's, not an API group
    app.include_router(discovery.router)
    app.include_router(openapi.router)
    app.include_router(logs_api.router)
    app.include_router(resources_api.router)
    return app


async def healthz() -> dict[str, str]:
    return {"status": "ok"}


async def readyz(request: Request) -> JSONResponse:
    state: ApiState = request.app.state.api
    if state.stopping.is_set():
        return errors.error_response(503, "the server is shutting down")

    def ping() -> None:
        with state.database.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    try:
        await run_in_threadpool(ping)
    except (SQLAlchemyError, OSError) as exc:
        log.warning("readiness check failed: %s", exc)
        return errors.error_response(503, f"the database is not reachable: {type(exc).__name__}")
    return JSONResponse({"status": "ok"})
