"""A pipeline run's task logs over HTTP, as plain text; ``follow=true`` tails until
the run ends::

    GET /apis/pipelines.ketch.dev/v1/namespaces/{ns}/pipelineruns/{run}/logs?task=PATH&follow=true

(``.../log``, the path every other kind's logs have, answers the same.) The logs
are the files ``pipeline_tasks.log_path`` names, read through
:mod:`ketch.core.logfiles` (only inside Ketch's log folders). Without ``task``
every task's log is written in turn, each after a ``==> PATH <==`` header.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from ketch.core.access import KUBERNETES, rule
from ketch.core.conditions import TERMINAL_RUN_STATES
from ketch.core.errors import NotFound
from ketch.core.logfiles import POLL, tail
from ketch.core.resource import validate_name, validate_namespace
from ketch.core.routes import ERROR_RESPONSES
from ketch.core.services import ServiceContext
from ketch.pipelines.api.common import service_context
from ketch.pipelines.api.pipelineruns import pipeline_runs
from ketch.pipelines.runs import PipelineRunSource

router = APIRouter(tags=["logs"], responses=ERROR_RESPONSES)

Context = Annotated[ServiceContext, Depends(service_context)]
FollowQ = Annotated[bool, Query(description="Keep streaming until the work ends")]
TaskQ = Annotated[str | None, Query(description="Task path, e.g. 'train' or 'for-loop-2[0]/inc'")]
BASE = "/apis/pipelines.ketch.dev/v1/namespaces/{namespace}/pipelineruns/{name}"


def _text(body: AsyncIterator[bytes]) -> StreamingResponse:
    return StreamingResponse(
        body, media_type="text/plain; charset=utf-8", headers={"Cache-Control": "no-cache"}
    )


async def run_logs(
    context: ServiceContext, namespace: str, run_id: str, task: str | None, follow: bool
) -> StreamingResponse:
    source = pipeline_runs(context)
    run = await run_in_threadpool(source.row, namespace, run_id)
    if task is not None:
        row = await run_in_threadpool(source.task, run.id, task)
        if row is None and (not follow or run.state in TERMINAL_RUN_STATES):
            tasks = await run_in_threadpool(source.tasks, run.id)
            paths = ", ".join(t.path for t in tasks if t.log_path) or "none yet"
            raise NotFound(
                f"run {run.id} has no task {task!r}; tasks with logs: {paths}",
                hint=f"ketch runs get {run.id} lists its tasks",
            )
        return _text(_one_task(context, source, run.id, task, follow))
    return _text(_all_tasks(context, source, run.id, follow))


async def _one_task(
    context: ServiceContext, source: PipelineRunSource, run_id: str, path: str, follow: bool
) -> AsyncIterator[bytes]:
    row = await run_in_threadpool(source.task, run_id, path)
    while row is None or (row.log_path is None and row.state not in TERMINAL_RUN_STATES):
        run_state = await run_in_threadpool(source.state, run_id)
        if run_state is None or run_state in TERMINAL_RUN_STATES or context.stopping.is_set():
            if row is None:
                yield f"task {path!r} did not run\n".encode()
                return
            break
        await asyncio.sleep(POLL)
        row = await run_in_threadpool(source.task, run_id, path)
    if row.log_path is None:
        return
    async for chunk in tail(
        row.log_path,
        follow=follow,
        finished=_task_finished(source, run_id, path),
        stopping=context.stopping,
    ):
        yield chunk


def _task_finished(
    source: PipelineRunSource, run_id: str, path: str
) -> Callable[[], Awaitable[bool]]:
    async def finished() -> bool:
        row = await run_in_threadpool(source.task, run_id, path)
        if row is None:
            return True
        if row.state in TERMINAL_RUN_STATES:
            return True
        run_state = await run_in_threadpool(source.state, run_id)
        return run_state is None or run_state in TERMINAL_RUN_STATES

    return finished


async def _all_tasks(
    context: ServiceContext, source: PipelineRunSource, run_id: str, follow: bool
) -> AsyncIterator[bytes]:
    done: set[str] = set()
    while True:
        run_state = await run_in_threadpool(source.state, run_id)
        tasks = [t for t in await run_in_threadpool(source.tasks, run_id) if t.log_path]
        pending = [t for t in tasks if t.path not in done]
        if not pending:
            if not follow or run_state is None or run_state in TERMINAL_RUN_STATES:
                return
            if context.stopping.is_set():
                return
            await asyncio.sleep(POLL)
            continue
        for task in pending:
            done.add(task.path)
            yield f"==> {task.path} <==\n".encode()
            last = b"\n"
            assert task.log_path is not None
            async for chunk in tail(
                task.log_path,
                follow=follow,
                finished=_task_finished(source, run_id, task.path),
                stopping=context.stopping,
            ):
                last = chunk
                yield chunk
            if not last.endswith(b"\n"):
                yield b"\n"


async def _logs(
    context: ServiceContext, namespace: str, name: str, task: str | None, follow: bool
) -> StreamingResponse:
    return await run_logs(
        context,
        validate_namespace(namespace, field="namespace"),
        validate_name(name, field="name"),
        task,
        follow,
    )


@router.get(
    f"{BASE}/logs",
    summary="A pipeline run's task logs (plain text)",
    response_class=StreamingResponse,
)
@rule(KUBERNETES)
async def pipeline_run_logs(
    namespace: str, name: str, context: Context, task: TaskQ = None, follow: FollowQ = False
) -> StreamingResponse:
    return await _logs(context, namespace, name, task, follow)


@router.get(
    f"{BASE}/log",
    summary="A pipeline run's task logs (plain text), at the path of every kind's logs",
    response_class=StreamingResponse,
)
@rule(KUBERNETES)
async def pipeline_run_log(
    namespace: str, name: str, context: Context, task: TaskQ = None, follow: FollowQ = False
) -> StreamingResponse:
    return await _logs(context, namespace, name, task, follow)
