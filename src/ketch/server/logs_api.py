"""Logs over HTTP, as plain text; ``follow=true`` tails until the work ends.

::

    GET /apis/{group}/{version}/namespaces/{ns}/{plural}/{name}/log?replica=R&follow=true

Kinds publish their log files in ``status.logPaths`` (replica name -> path), which
their controllers write; following stops once a ``Succeeded``, ``Failed``,
``Complete`` or ``Canceled`` condition is True, ``status.completionTime`` is set,
or the object is deleted. Files are read through :mod:`ketch.core.logfiles`, which
serves only what lies inside Ketch's log folders. (A capability may serve a kind's
logs itself, with a route of its own included before this one: the pipelines
capability does for ``PipelineRun``.)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from ketch.core.access import KUBERNETES, rule
from ketch.core.conditions import is_finished
from ketch.core.errors import NotFound
from ketch.core.kinds import Kind
from ketch.core.logfiles import POLL, tail
from ketch.core.resource import validate_name, validate_namespace
from ketch.server.errors import STATUS_RESPONSES
from ketch.server.state import ApiState, api_state

log = logging.getLogger(__name__)
router = APIRouter(tags=["logs"], responses=STATUS_RESPONSES)

State = Annotated[ApiState, Depends(api_state)]
FollowQ = Annotated[bool, Query(description="Keep streaming until the work ends")]
ReplicaQ = Annotated[str | None, Query(description="Replica name, a key of status.logPaths")]


def _text(body: AsyncIterator[bytes]) -> StreamingResponse:
    return StreamingResponse(
        body, media_type="text/plain; charset=utf-8", headers={"Cache-Control": "no-cache"}
    )


# -- any kind with status.logPaths ------------------------------------------------


def _log_paths(manifest: dict[str, Any]) -> dict[str, str]:
    paths = manifest.get("status", {}).get("logPaths") or {}
    if not isinstance(paths, dict):
        return {}
    return {str(k): str(v) for k, v in paths.items() if isinstance(v, str) and v}


async def object_logs(
    state: ApiState, kind: Kind, namespace: str, name: str, replica: str | None, follow: bool
) -> StreamingResponse:
    source = state.source(kind)
    manifest = await run_in_threadpool(source.get, kind, namespace, name)
    paths = _log_paths(manifest)
    if replica is not None and replica not in paths and (not follow or is_finished(manifest)):
        known = ", ".join(sorted(paths)) or "none yet"
        raise NotFound(
            f"{kind.kind} {name!r} has no replica {replica!r}; replicas with logs: {known}"
        )

    async def current() -> dict[str, Any] | None:
        try:
            return await run_in_threadpool(source.get, kind, namespace, name)
        except NotFound:
            return None

    async def finished() -> bool:
        latest = await current()
        return latest is None or is_finished(latest)

    async def body() -> AsyncIterator[bytes]:
        done: set[str] = set()
        latest: dict[str, Any] | None = manifest
        while latest is not None:
            available = _log_paths(latest)
            wanted = [replica] if replica is not None else sorted(available)
            pending = [r for r in wanted if r in available and r not in done]
            if not pending:
                if not follow or is_finished(latest) or state.stopping.is_set():
                    return
                await asyncio.sleep(POLL)
                latest = await current()
                continue
            for name_ in pending:
                done.add(name_)
                if replica is None and len(available) > 1:
                    yield f"==> {name_} <==\n".encode()
                async for chunk in tail(
                    available[name_],
                    follow=follow,
                    finished=finished,
                    stopping=state.stopping,
                ):
                    yield chunk
            if replica is not None:
                return
            latest = await current()

    return _text(body())


@router.get(
    "/apis/{group}/{version}/namespaces/{namespace}/{plural}/{name}/log",
    summary="An object's logs (plain text) from status.logPaths",
    response_class=StreamingResponse,
)
@rule(KUBERNETES)
async def logs(
    group: str,
    version: str,
    namespace: str,
    plural: str,
    name: str,
    state: State,
    replica: ReplicaQ = None,
    follow: FollowQ = False,
) -> StreamingResponse:
    kind = state.kinds.for_path(group, version, plural)
    namespace = validate_namespace(namespace, field="namespace")
    name = validate_name(name, field="name")
    return await object_logs(state, kind, namespace, name, replica, follow)
