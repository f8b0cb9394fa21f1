"""Actions on pipeline runs, as sub-resources of ``PipelineRun``::

    POST /apis/pipelines.ketch.dev/v1/namespaces/{ns}/pipelineruns/{name}/cancel
    POST /apis/pipelines.ketch.dev/v1/namespaces/{ns}/pipelineruns/{name}/retry

Both go to the app's run service (the same one the KFP v2beta1 ``:terminate`` and
``:retry`` endpoints use) and answer the run as a PipelineRun. Canceling a run that
has already finished is refused (409): nothing was canceled.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from starlette.concurrency import run_in_threadpool

from ketch.core.access import KUBERNETES, rule
from ketch.core.errors import Conflict
from ketch.core.resource import validate_name, validate_namespace
from ketch.core.routes import ERROR_RESPONSES
from ketch.core.services import ServiceContext
from ketch.pipelines.api.common import service_context
from ketch.pipelines.kinds import PIPELINE_RUN
from ketch.pipelines.runs import PipelineRunSource, RunServiceUnavailable
from ketch.pipelines.service import RunService

router = APIRouter(tags=["pipeline runs"], responses=ERROR_RESPONSES)

Context = Annotated[ServiceContext, Depends(service_context)]
BASE = "/apis/pipelines.ketch.dev/v1/namespaces/{namespace}/pipelineruns/{name}"


def pipeline_runs(context: ServiceContext) -> PipelineRunSource:
    """The app's runs as PipelineRuns (submitting to its run service, if any)."""
    runs = context.services.find(RunService)
    return PipelineRunSource(
        context.database,
        lambda: context.services.find(RunService),
        runs.reaper if runs is not None else None,
    )


async def _act(context: ServiceContext, namespace: str, name: str, action: str) -> dict[str, Any]:
    namespace = validate_namespace(namespace, field="namespace")
    name = validate_name(name, field="name")
    source = pipeline_runs(context)
    await run_in_threadpool(source.get, PIPELINE_RUN, namespace, name)
    runs = source.runs()
    if runs is None:
        raise RunServiceUnavailable(
            f"this server cannot {action} runs: its run service is not running",
            hint="start the server with 'ketch up'",
        )
    acted: bool | None = None
    if action == "cancel":
        acted = await run_in_threadpool(runs.cancel, name)
    else:
        await run_in_threadpool(runs.retry, name)
    context.changed()
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


@router.post(f"{BASE}/cancel", summary="Cancel a run: running tasks are stopped")
@rule(KUBERNETES)
async def cancel_run(namespace: str, name: str, context: Context) -> dict[str, Any]:
    return await _act(context, namespace, name, "cancel")


@router.post(f"{BASE}/retry", summary="Retry a failed or canceled run")
@rule(KUBERNETES)
async def retry_run(namespace: str, name: str, context: Context) -> dict[str, Any]:
    return await _act(context, namespace, name, "retry")
