"""Logs over HTTP, as plain text; ``follow=true`` tails until the work ends.

::

    GET /apis/pipelines.ketch.dev/v1/namespaces/{ns}/pipelineruns/{run}/logs?task=PATH&follow=true
    GET /apis/{group}/{version}/namespaces/{ns}/{plural}/{name}/log?replica=R&follow=true

A pipeline run's task logs come from ``pipeline_tasks.log_path``; without ``task``
every task's log is written in turn, each after a ``==> PATH <==`` header. Other
kinds publish their log files in ``status.logPaths`` (replica name -> path), which
their controllers write; following stops once a ``Succeeded``, ``Failed``,
``Complete`` or ``Canceled`` condition is True, ``status.completionTime`` is set,
or the object is deleted.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from ketch.core import config
from ketch.core.conditions import is_finished
from ketch.core.errors import NotFound
from ketch.core.resource import validate_name, validate_namespace
from ketch.core.routes import ERROR_RESPONSES
from ketch.core.store.db import session_scope
from ketch.pipelines.tables import PipelineRunRow, PipelineTaskRow
from ketch.server.kinds import PIPELINE_RUN, Kind
from ketch.server.pipelineruns import TERMINAL_RUN_STATES, TERMINAL_TASK_STATES, PipelineRunSource
from ketch.server.state import ApiState, api_state

log = logging.getLogger(__name__)
router = APIRouter(tags=["logs"], responses=ERROR_RESPONSES)

State = Annotated[ApiState, Depends(api_state)]
FollowQ = Annotated[bool, Query(description="Keep streaming until the work ends")]
TaskQ = Annotated[str | None, Query(description="Task path, e.g. 'train' or 'for-loop-2[0]/inc'")]
ReplicaQ = Annotated[str | None, Query(description="Replica name, a key of status.logPaths")]

_CHUNK = 64 * 1024
_POLL = 0.2


def log_roots() -> tuple[Path, ...]:
    """The folders Ketch writes logs into: the only places a log is read from."""
    home = config.ketch_home()
    return (config.logs_dir(home).resolve(), (home / "runs").resolve())


def _resolve(path: str) -> Path | None:
    """``path`` with symlinks and ``..`` resolved, if it lies inside :func:`log_roots`;
    ``None`` for anything else: a path read back from the store is never trusted."""
    candidate = Path(path)
    if not candidate.is_absolute():
        candidate = config.ketch_home() / candidate
    real = Path(os.path.realpath(candidate))
    if any(real.is_relative_to(root) for root in log_roots()):
        return real
    log.warning("refused to serve log %r: it is outside Ketch's log folders", path)
    return None


def _read(path: Path, offset: int) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return b""
    except OSError:  # a symlink swapped in after the check, a folder, no permission
        return b""
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            return b""
        handle.seek(offset)
        return handle.read(_CHUNK)


_REFUSED = b"(this log is not served: its path lies outside Ketch's log folders)\n"


async def tail(
    stored: str,
    *,
    follow: bool,
    finished: Callable[[], Awaitable[bool]],
    stopping: threading.Event,
) -> AsyncIterator[bytes]:
    """The bytes of the log stored as ``stored``; with ``follow``, new bytes too until
    ``finished()``. A path outside Ketch's log folders yields a notice, never its bytes."""
    path = _resolve(stored)
    if path is None:
        yield _REFUSED
        return
    offset = 0
    while True:
        chunk = await run_in_threadpool(_read, path, offset)
        if chunk:
            offset += len(chunk)
            yield chunk
            continue
        if not follow or stopping.is_set():
            return
        if await finished():
            while chunk := await run_in_threadpool(_read, path, offset):
                offset += len(chunk)
                yield chunk
            return
        await asyncio.sleep(_POLL)


def _text(body: AsyncIterator[bytes]) -> StreamingResponse:
    return StreamingResponse(
        body, media_type="text/plain; charset=utf-8", headers={"Cache-Control": "no-cache"}
    )


# -- pipeline runs -------------------------------------------------------------


def _run_state(url: str | None, run_id: str) -> str | None:
    with session_scope(url, readonly=True) as session:
        return session.scalar(select(PipelineRunRow.state).where(PipelineRunRow.id == run_id))


def _task_rows(url: str | None, run_id: str) -> list[PipelineTaskRow]:
    with session_scope(url, readonly=True) as session:
        query = (
            select(PipelineTaskRow)
            .where(PipelineTaskRow.run_id == run_id)
            .order_by(PipelineTaskRow.created_at, PipelineTaskRow.path)
        )
        return list(session.scalars(query).all())


def _task(url: str | None, run_id: str, path: str) -> PipelineTaskRow | None:
    return next((t for t in _task_rows(url, run_id) if t.path == path), None)


async def run_logs(
    state: ApiState, namespace: str, run_id: str, task: str | None, follow: bool
) -> StreamingResponse:
    source = state.source(PIPELINE_RUN)
    assert isinstance(source, PipelineRunSource)
    run = await run_in_threadpool(source.row, namespace, run_id)
    url = source.url
    if task is not None:
        row = await run_in_threadpool(_task, url, run.id, task)
        if row is None and (not follow or run.state in TERMINAL_RUN_STATES):
            tasks = await run_in_threadpool(_task_rows, url, run.id)
            paths = ", ".join(t.path for t in tasks if t.log_path) or "none yet"
            raise NotFound(
                f"run {run.id} has no task {task!r}; tasks with logs: {paths}",
                hint=f"ketch runs get {run.id} lists its tasks",
            )
        return _text(_one_task(state, url, run.id, task, follow))
    return _text(_all_tasks(state, url, run.id, follow))


async def _one_task(
    state: ApiState, url: str | None, run_id: str, path: str, follow: bool
) -> AsyncIterator[bytes]:
    row = await run_in_threadpool(_task, url, run_id, path)
    while row is None or (row.log_path is None and row.state not in TERMINAL_TASK_STATES):
        run_state = await run_in_threadpool(_run_state, url, run_id)
        if run_state is None or run_state in TERMINAL_RUN_STATES or state.stopping.is_set():
            if row is None:
                yield f"task {path!r} did not run\n".encode()
                return
            break
        await asyncio.sleep(_POLL)
        row = await run_in_threadpool(_task, url, run_id, path)
    if row.log_path is None:
        return
    async for chunk in tail(
        row.log_path,
        follow=follow,
        finished=_task_finished(url, run_id, path),
        stopping=state.stopping,
    ):
        yield chunk


def _task_finished(url: str | None, run_id: str, path: str) -> Callable[[], Awaitable[bool]]:
    async def finished() -> bool:
        row = await run_in_threadpool(_task, url, run_id, path)
        if row is None:
            return True
        if row.state in TERMINAL_TASK_STATES:
            return True
        run_state = await run_in_threadpool(_run_state, url, run_id)
        return run_state is None or run_state in TERMINAL_RUN_STATES

    return finished


async def _all_tasks(
    state: ApiState, url: str | None, run_id: str, follow: bool
) -> AsyncIterator[bytes]:
    done: set[str] = set()
    while True:
        run_state = await run_in_threadpool(_run_state, url, run_id)
        tasks = [t for t in await run_in_threadpool(_task_rows, url, run_id) if t.log_path]
        pending = [t for t in tasks if t.path not in done]
        if not pending:
            if not follow or run_state is None or run_state in TERMINAL_RUN_STATES:
                return
            if state.stopping.is_set():
                return
            await asyncio.sleep(_POLL)
            continue
        for task in pending:
            done.add(task.path)
            yield f"==> {task.path} <==\n".encode()
            last = b"\n"
            assert task.log_path is not None
            async for chunk in tail(
                task.log_path,
                follow=follow,
                finished=_task_finished(url, run_id, task.path),
                stopping=state.stopping,
            ):
                last = chunk
                yield chunk
            if not last.endswith(b"\n"):
                yield b"\n"


@router.get(
    "/apis/pipelines.ketch.dev/v1/namespaces/{namespace}/pipelineruns/{name}/logs",
    summary="A pipeline run's task logs (plain text)",
    response_class=StreamingResponse,
)
async def pipeline_run_logs(
    namespace: str,
    name: str,
    state: State,
    task: TaskQ = None,
    follow: FollowQ = False,
) -> StreamingResponse:
    return await run_logs(
        state,
        validate_namespace(namespace, field="namespace"),
        validate_name(name, "name"),
        task,
        follow,
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
                await asyncio.sleep(_POLL)
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
async def logs(
    group: str,
    version: str,
    namespace: str,
    plural: str,
    name: str,
    state: State,
    replica: ReplicaQ = None,
    task: TaskQ = None,
    follow: FollowQ = False,
) -> StreamingResponse:
    kind = state.kinds.for_path(group, version, plural)
    namespace = validate_namespace(namespace, field="namespace")
    name = validate_name(name, field="name")
    if kind.kind == PIPELINE_RUN.kind:
        return await run_logs(state, namespace, name, task, follow)
    return await object_logs(state, kind, namespace, name, replica, follow)
