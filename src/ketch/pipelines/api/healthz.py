"""KFP's health check: ``GET /apis/v2beta1/healthz`` (what ``kfp.Client`` asks first)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from ketch.pipelines.api.common import json_response
from ketch.pipelines.api.paths import PREFIX

router = APIRouter(tags=["kfp v2beta1"])


@router.get(f"{PREFIX}/healthz")
def healthz() -> Response:
    return json_response({"multi_user": False, "pipeline_store": "database"})
