"""The pipelines capability: KFP pipelines run by Ketch's own engine.

It serves ``PipelineRun`` (pipelines.ketch.dev/v1) from its own tables, brings the
KFP v2beta1 API and the PipelineRun actions and logs, and runs two services with the
server: the run service, which executes submitted runs (and resumes those a stopped
server left in flight), and the scheduler of recurring runs. When a namespace is
deleted, its finalizer removes what these tables keep for it
(:mod:`ketch.pipelines.finalizer`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from ketch.core.capability import Admission, Capability, Validator
from ketch.core.services import Service, ServiceContext
from ketch.core.sources import Source
from ketch.pipelines import runs
from ketch.pipelines.api.paths import UPLOADS
from ketch.pipelines.kinds import PIPELINE_RUN
from ketch.pipelines.runs import PipelineRunSource
from ketch.pipelines.tables import MIGRATIONS

if TYPE_CHECKING:
    from fastapi import APIRouter


def _validators(_admission: Admission) -> Mapping[str, Validator]:
    return {PIPELINE_RUN.kind: runs.validate}


def _services(context: ServiceContext) -> tuple[Service, ...]:
    from ketch.pipelines.provenance import PipelineProvenance
    from ketch.pipelines.scheduler import Scheduler
    from ketch.pipelines.service import RunService

    run_service = RunService(
        context.database, backend=context.backend, sole_server=context.sole_server
    )
    # runs made and ended anywhere wake the app's watchers
    run_service.listeners.append(lambda _run_id: context.changed())
    # the scheduler submits through the run service: it starts after it, stops before
    # (and what produced an artifact, for the model registry's lineage)
    return (
        run_service,
        Scheduler(run_service, context.database),
        PipelineProvenance(context.database),
    )


def _run_source(context: ServiceContext) -> Source:
    from ketch.pipelines.service import RunService

    return PipelineRunSource(context.database, lambda: context.services.find(RunService))


def _finalize(context: ServiceContext, namespace: str) -> bool:
    from ketch.pipelines.finalizer import finalize

    return finalize(context, namespace)


def _kfp_router() -> APIRouter:
    from ketch.pipelines.api.routers import kfp

    return kfp()


def _pipeline_run_router() -> APIRouter:
    from ketch.pipelines.api.routers import pipeline_runs

    return pipeline_runs()


CAPABILITY = Capability(
    name="pipelines",
    kinds=(PIPELINE_RUN,),
    validators=_validators,
    routers=(_kfp_router, _pipeline_run_router),
    migrations=MIGRATIONS,
    services=(_services,),
    sources={PIPELINE_RUN.kind: _run_source},
    uploads=UPLOADS,
    # a deleted namespace's runs (stopped first), experiments, recurring runs and pipelines
    namespace_finalizers=(_finalize,),
)
