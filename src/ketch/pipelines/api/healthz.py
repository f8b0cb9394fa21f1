"""KFP's health check: ``GET /apis/v2beta1/healthz`` (what ``kfp.Client`` asks first),
answered to anyone, signed in or not, as KFP's is."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ketch.core.access import PUBLIC, rule
from ketch.pipelines.api.access import multi_user
from ketch.pipelines.api.common import json_response
from ketch.pipelines.api.paths import PREFIX

router = APIRouter(tags=["kfp v2beta1"])


@router.get(f"{PREFIX}/healthz")
@rule(PUBLIC)
def healthz(request: Request) -> Response:
    # multi-user once the server authenticates its callers, as KFP with Kubeflow's profiles
    return json_response({"multi_user": multi_user(request), "pipeline_store": "database"})
