"""The API server: one FastAPI app assembling every capability's routers and controllers.

Capabilities plug in with :func:`register_controller` (a factory called with the
server's ``ResourceStore``), :func:`register_kind` and :func:`register_router`,
called before :func:`create_app`. The KFP v2beta1 facade
(``ketch.pipelines.api``) is included when present; its optional ``start(app)`` and
``stop(app)`` run with the server.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool

from ketch.core import config
from ketch.core.controller import Controller, Manager
from ketch.core.resource import Resource
from ketch.core.store.db import get_engine, init_db
from ketch.core.store.resources import ResourceStore
from ketch.server import errors, guard
from ketch.server.guard import RequestGuardMiddleware
from ketch.server.kinds import PIPELINE_RUN, Kind, default_kinds
from ketch.server.pipelineruns import PipelineRunSource
from ketch.server.state import ApiState

log = logging.getLogger(__name__)

ControllerFactory = Callable[[ResourceStore], Controller]
Validator = Callable[[Resource], None]

_controller_factories: list[ControllerFactory] = []
_extra_kinds: list[Kind] = []
_routers: list[APIRouter] = []
_validators: dict[str, Validator] = {}


def register_controller(factory: ControllerFactory) -> ControllerFactory:
    """Run a controller in every server created from now on (usable as a decorator)."""
    if factory not in _controller_factories:
        _controller_factories.append(factory)
    return factory


def register_kind(kind: Kind) -> Kind:
    """Serve ``kind`` through the resource API in every server created from now on."""
    if kind not in _extra_kinds:
        _extra_kinds.append(kind)
    return kind


def register_validator(kind: str, validator: Validator) -> Validator:
    """Check every ``kind`` object created or applied through the API before it is
    stored; the validator raises ``InvalidSpec`` (answered as 400) to refuse it."""
    _validators[kind] = validator
    return validator


def register_router(router: APIRouter) -> APIRouter:
    """Include ``router`` (before the generic resource routes) in servers created from now on."""
    if router not in _routers:
        _routers.append(router)
    return router


def _optional_module(name: str) -> ModuleType | None:
    """``name`` imported, or ``None`` when that module does not exist (yet)."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name in (name, name.rsplit(".", 1)[0]):
            return None
        raise


def _run_service(url: str, sole_server: bool) -> Any:
    module = _optional_module("ketch.pipelines.service")
    factory = getattr(module, "RunService", None) if module is not None else None
    if factory is None:
        log.warning("ketch.pipelines.service.RunService is not available; runs cannot be submitted")
        return None
    return factory(url=url, sole_server=sole_server)


def register_capabilities() -> None:
    """Register every capability's kinds, controllers, validators and routes."""
    from ketch.serving.controller import register as register_serving
    from ketch.training.controller import register as register_training
    from ketch.tuning.controller import register as register_tuning

    register_serving()
    register_training()
    register_tuning()


def controller_factories() -> list[ControllerFactory]:
    """The registered controller factories (after :func:`register_capabilities`)."""
    return list(_controller_factories)


def create_app(
    *,
    database_url: str | None = None,
    home: Path | None = None,
    background: bool = True,
    bind: str = "127.0.0.1",
    sole_server: bool = False,
) -> FastAPI:
    """The API server app.

    ``database_url`` defaults to ``KETCH_DATABASE_URL`` or the SQLite file in ``home``
    (default ``KETCH_HOME``). ``home`` also becomes ``KETCH_HOME`` for the process
    when the server starts (logs and artifacts go there). ``background=False``
    starts no run service, controllers or schedulers (the routes still serve
    what is stored). ``bind`` is the address the server listens on: it
    decides the ``Host`` names it answers to (see :mod:`ketch.server.guard`).
    ``sole_server``: the caller holds the store's control-plane lock
    (:class:`ketch.core.locks.ControlPlaneLock`), so every run another server left in
    flight is this one's to resume.
    """
    register_capabilities()
    url = database_url or config.database_url(home)
    kinds = default_kinds(_extra_kinds)
    state = ApiState(
        url=url, kinds=kinds, store=ResourceStore(url, migrate=False), validators=dict(_validators)
    )
    state.store.add_listener(lambda _resource, _deleted: state.notifier.notify())
    state.sources[PIPELINE_RUN.kind] = PipelineRunSource(url, lambda: state.runs)
    kfp_api = _optional_module("ketch.pipelines.api")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if home is not None:
            os.environ["KETCH_HOME"] = str(Path(home).expanduser().resolve())
        await run_in_threadpool(init_db, url)
        state.stopping.clear()
        started: list[Callable[[], Any]] = []
        try:
            if background:
                state.runs = _run_service(url, sole_server)
                app.state.runs = state.runs
                if state.runs is not None:
                    listeners = getattr(state.runs, "listeners", None)
                    if isinstance(listeners, list):  # runs made anywhere wake the watchers
                        listeners.append(lambda _run_id: state.notifier.notify())
                    await run_in_threadpool(state.runs.start)
                    started.append(state.runs.stop)
                manager = Manager()
                for factory in _controller_factories:
                    manager.add(factory(state.store))
                manager.watch(state.store)  # what controllers write wakes the others
                manager.start()
                started.append(manager.stop)
                state.controllers = manager
                app.state.controllers = manager
                start_kfp = getattr(kfp_api, "start", None)
                if callable(start_kfp) and state.runs is not None:
                    await run_in_threadpool(start_kfp, app)
                    stop_kfp = getattr(kfp_api, "stop", None)
                    if callable(stop_kfp):
                        started.append(lambda: stop_kfp(app))
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
        version=_version(),
        description=(
            "Kubeflow's APIs served by Ketch: Kubernetes-style resources "
            "(/apis/{group}/{version}/...), logs, events and the KFP v2beta1 API."
        ),
        lifespan=lifespan,
    )
    app.state.api = state
    app.state.database_url = url
    app.state.runs = None
    app.state.controllers = None
    errors.install(app)
    app.add_middleware(
        RequestGuardMiddleware, hosts=guard.allowed_hosts(bind)
    )
    app.add_api_route("/healthz", healthz, methods=["GET"], tags=["health"], summary="Liveness")
    app.add_api_route(
        "/readyz",
        readyz,
        methods=["GET"],
        tags=["health"],
        summary="Readiness: the database answers",
        responses={503: {"model": errors.ErrorBody, "description": "Not ready"}},
    )
    if kfp_api is not None and hasattr(kfp_api, "router"):
        app.include_router(kfp_api.router)
    for router in _routers:
        app.include_router(router)
    from ketch.server import events_api, logs_api, resources_api, runs_api

    app.include_router(events_api.router)
    app.include_router(runs_api.router)
    app.include_router(logs_api.router)
    app.include_router(resources_api.router)
    return app


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("ketch")
    except Exception:  # not installed as a distribution
        return "0"


async def healthz() -> dict[str, str]:
    return {"status": "ok"}


async def readyz(request: Request) -> JSONResponse:
    state: ApiState = request.app.state.api
    if state.stopping.is_set():
        return errors.error_response(503, "the server is shutting down")

    def ping() -> None:
        with get_engine(state.url).connect() as connection:
            connection.execute(text("SELECT 1"))

    try:
        await run_in_threadpool(ping)
    except Exception as exc:
        log.warning("readiness check failed: %s", exc)
        return errors.error_response(503, f"the database is not reachable: {type(exc).__name__}")
    return JSONResponse({"status": "ok"})
