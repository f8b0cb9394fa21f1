"""What the KFP v2beta1 routes share: JSON bodies and responses as KFP writes them,
the list query (paging, sorting, filtering), and the catalog, run service and
scheduler of the app serving a request (found in its
:class:`~ketch.core.services.ServiceContext`)."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Query, Request
from fastapi.responses import Response

from ketch.core.errors import InvalidSpec
from ketch.core.services import ServiceContext, context_of
from ketch.pipelines import filters
from ketch.pipelines.catalog import Catalog
from ketch.pipelines.catalog.store import Page
from ketch.pipelines.filters import get_field
from ketch.pipelines.runs import RunServiceUnavailable
from ketch.pipelines.scheduler import Scheduler
from ketch.pipelines.service import RunService
from ketch.pipelines.tables import MIGRATIONS


def dumps(obj: Any) -> bytes:
    """Compact JSON (non-ASCII kept) for responses."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, default=str).encode("utf-8")


def json_response(obj: Any, status_code: int = 200) -> Response:
    return Response(content=dumps(obj), status_code=status_code, media_type="application/json")


def empty() -> Response:
    return json_response({})


def body_object(body: Any, what: str) -> dict[str, Any]:
    """``body`` when it is a JSON object (``InvalidSpec`` naming ``what`` otherwise)."""
    if not isinstance(body, dict):
        raise InvalidSpec(f"the body must be a JSON object ({what})", field="body")
    return body


def text_field(obj: dict[str, Any], name: str) -> str:
    """The string field ``name`` of ``obj`` ("" when it is missing)."""
    value = get_field(obj, name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidSpec("must be a string", field=name)
    return value


class Paging:
    """The query parameters every list route takes (a FastAPI dependency)."""

    def __init__(
        self,
        page_token: str | None = Query(None),
        page_size: int | None = Query(None),
        sort_by: str | None = Query(None),
        filter: str | None = Query(None),
    ) -> None:
        self.page_token = page_token
        self.page_size = page_size
        self.sort_by = sort_by
        self.filter = filter

    def options(self, fields: dict[str, filters.Field], resource: str) -> filters.ListOptions:
        return filters.list_options(
            page_token=self.page_token,
            page_size=self.page_size,
            sort_by=self.sort_by,
            filter=self.filter,
            fields=fields,
            resource=resource,
        )


def page_json(key: str, items: list[Any], page: Page) -> Response:
    return json_response(
        {key: items, "total_size": page.total_size, "next_page_token": page.next_page_token}
    )


# -- the app's parts -------------------------------------------------------------------


def service_context(request: Request) -> ServiceContext:
    """The :class:`ServiceContext` of the app serving ``request`` (a FastAPI
    dependency)."""
    return context_of(request)


def catalog_of(request: Request) -> Catalog:
    """The KFP catalog over the app's store (its reads end dead processes' runs
    through the run service's reaper)."""
    context = context_of(request)
    context.database.migrate([MIGRATIONS])
    runs = context.services.find(RunService)
    return Catalog(context.database, runs.reaper if runs is not None else None)


def runs_of(request: Request) -> RunService:
    """The app's run service; 503 when it executes no runs (started without one)."""
    runs = context_of(request).services.find(RunService)
    if runs is None:
        raise RunServiceUnavailable(
            "this server does not execute runs (it has no run service)",
            hint="start the server with 'ketch up'",
        )
    return runs


def wake_scheduler(request: Request) -> None:
    """Have the recurring-run scheduler look at the schedules now (if it runs)."""
    scheduler = context_of(request).services.find(Scheduler)
    if scheduler is not None:
        scheduler.wake()
