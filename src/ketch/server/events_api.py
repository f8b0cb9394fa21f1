"""Events about resources, where Kubernetes serves them (the core ``v1`` API)::

    GET /api/v1/namespaces/{ns}/events?fieldSelector=involvedObject.kind=PyTorchJob,involvedObject.name=mnist
    GET /api/v1/events

``fieldSelector`` understands ``involvedObject.kind``, ``involvedObject.name`` and
``involvedObject.namespace`` (kinds in any case or plural); ``limit`` keeps the
newest events. Events come oldest first, as an ``EventList``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from starlette.concurrency import run_in_threadpool

from ketch.core.errors import InvalidSpec
from ketch.core.resource import format_time, validate_namespace
from ketch.core.store.resources import Event
from ketch.server.errors import STATUS_RESPONSES
from ketch.server.state import ApiState, api_state

router = APIRouter(tags=["events"], responses=STATUS_RESPONSES)

State = Annotated[ApiState, Depends(api_state)]
FieldSelectorQ = Annotated[
    str | None,
    Query(alias="fieldSelector", description="involvedObject.kind=K,involvedObject.name=N"),
]
LimitQ = Annotated[int | None, Query(ge=1, le=10_000, description="Newest events to return")]

_FIELDS = ("involvedObject.kind", "involvedObject.name", "involvedObject.namespace")


def parse_field_selector(text: str | None) -> dict[str, str]:
    selected: dict[str, str] = {}
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        key, sep, value = part.partition("=")
        key = key.rstrip("=").strip()
        value = value.lstrip("=").strip()
        if not sep or key not in _FIELDS:
            raise InvalidSpec(
                f"cannot use {part!r}; select events by {', '.join(f + '=VALUE' for f in _FIELDS)}",
                field="fieldSelector",
            )
        selected[key] = value
    return selected


def event_json(event: Event, index: int) -> dict[str, Any]:
    stamp = format_time(event.eventTime)
    last = format_time(event.lastTimestamp or event.eventTime)
    involved = event.involvedObject
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": f"{involved.name}.{event.id or index}",
            "namespace": involved.namespace,
            "creationTimestamp": stamp,
        },
        "involvedObject": involved.model_dump(),
        "type": event.type,
        "reason": event.reason,
        "message": event.message,
        "eventTime": stamp,
        "firstTimestamp": stamp,
        "lastTimestamp": last,
        "count": event.count,
    }


async def _events(
    state: ApiState, namespace: str | None, field_selector: str | None, limit: int | None
) -> dict[str, Any]:
    fields = parse_field_selector(field_selector)
    kind_name = fields.get("involvedObject.kind")
    kind = state.kinds.lookup(kind_name).kind if kind_name else None
    selected_ns = fields.get("involvedObject.namespace")
    if namespace is not None and selected_ns not in (None, namespace):
        return {"apiVersion": "v1", "kind": "EventList", "metadata": {}, "items": []}
    events = await run_in_threadpool(
        state.store.list_events,
        kind,
        namespace or selected_ns,
        fields.get("involvedObject.name"),
        limit=limit,
    )
    return {
        "apiVersion": "v1",
        "kind": "EventList",
        "metadata": {},
        "items": [event_json(e, i) for i, e in enumerate(events)],
    }


@router.get("/api/v1/namespaces/{namespace}/events", summary="Events in a namespace")
async def namespaced_events(
    namespace: str,
    state: State,
    field_selector: FieldSelectorQ = None,
    limit: LimitQ = None,
) -> dict[str, Any]:
    return await _events(
        state, validate_namespace(namespace, field="namespace"), field_selector, limit
    )


@router.get("/api/v1/events", summary="Events in all namespaces")
async def all_events(
    state: State, field_selector: FieldSelectorQ = None, limit: LimitQ = None
) -> dict[str, Any]:
    return await _events(state, None, field_selector, limit)
