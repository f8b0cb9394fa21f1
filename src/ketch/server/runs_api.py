"""Actions on pipeline runs, as sub-resources of ``PipelineRun``::

    POST /apis/pipelines.ketch.dev/v1/namespaces/{ns}/pipelineruns/{name}/cancel
    POST /apis/pipelines.ketch.dev/v1/namespaces/{ns}/pipelineruns/{name}/retry

Both go to the server's run service (the same one the KFP v2beta1 ``:terminate``
and ``:retry`` endpoints use) and answer the run as a PipelineRun. Canceling a run that has already finished
is refused (409): nothing was canceled.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from starlette.concurrency import run_in_threadpool

from ketch.core.errors import Conflict
from ketch.core.resource import validate_name, validate_namespace
from ketch.core.routes import ERROR_RESPONSES
from ketch.server.errors import ServiceUnavailable
from ketch.server.kinds import PIPELINE_RUN
from ketch.server.state import ApiState, api_state

router = APIRouter(tags=["pipeline runs"], responses=ERROR_RESPONSES)

State = Annotated[ApiState, Depends(api_state)]
_BASE = "/apis/pipelines.ketch.dev/v1/namespaces/{namespace}/pipelineruns/{name}"


async def _act(state: ApiState, namespace: str, name: str, action: str) -> dict[str, Any]:
    namespace = validate_namespace(namespace, field="namespace")
    name = validate_name(name, field="name")
    source = state.source(PIPELINE_RUN)
    await run_in_threadpool(source.get, PIPELINE_RUN, namespace, name)
    if state.runs is None:
        raise ServiceUnavailable(
            f"this server cannot {action} runs: its run service is not running",
            hint="start the server with 'ketch up'",
        )
    acted = await run_in_threadpool(getattr(state.runs, action), name)
    state.notifier.notify()
    item = await run_in_threadpool(source.get, PIPELINE_RUN, namespace, name)
    if action == "cancel" and acted is False:
        finished = (item.get("status") or {}).get("state", "finished")
        raise Conflict(
            f"run {name!r} had already finished ({finished}); nothing was canceled",
            hint=f"retry it with: ketch runs retry {name}"
            if finished in ("FAILED", "CANCELED")
            else None,
        )
    return item


@router.post(f"{_BASE}/cancel", summary="Cancel a run: running tasks are stopped")
async def cancel_run(namespace: str, name: str, state: State) -> dict[str, Any]:
    return await _act(state, namespace, name, "cancel")


@router.post(f"{_BASE}/retry", summary="Retry a failed or canceled run")
async def retry_run(namespace: str, name: str, state: State) -> dict[str, Any]:
    return await _act(state, namespace, name, "retry")
