"""The routers the pipelines capability brings, each made of its resources' modules
in the order their paths must be matched."""

from __future__ import annotations

from fastapi import APIRouter

from ketch.pipelines.api import (
    artifacts,
    compiling,
    experiments,
    healthz,
    logs,
    pipelineruns,
    pipelines,
    recurring,
    runs,
    tasks,
    versions,
)


def kfp() -> APIRouter:
    """The KFP v2beta1 API under ``/apis/v2beta1``: ``kfp.Client`` works unchanged."""
    router = APIRouter()
    # pipelines before versions: /pipelines/names/{name} is not a pipeline's versions
    for module in (
        healthz,
        compiling,
        pipelines,
        versions,
        experiments,
        runs,
        artifacts,
        tasks,
        recurring,
    ):
        router.include_router(module.router)
    return router


def pipeline_runs() -> APIRouter:
    """What ``PipelineRun`` has beside the resource routes: cancel, retry, logs."""
    router = APIRouter()
    router.include_router(pipelineruns.router)
    router.include_router(logs.router)
    return router
