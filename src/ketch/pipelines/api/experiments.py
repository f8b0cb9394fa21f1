"""KFP experiments: create, get, list (the namespace's ``Default`` experiment is made
on the first list, as KFP always has one), delete, archive (with their runs, and
disabling their recurring runs) and unarchive, under ``/apis/v2beta1/experiments``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.responses import Response

from ketch.pipelines import kfp_models as shape
from ketch.pipelines.api.common import (
    Paging,
    body_object,
    catalog_of,
    empty,
    json_response,
    page_json,
    text_field,
)
from ketch.pipelines.api.paths import PREFIX
from ketch.pipelines.catalog import Catalog
from ketch.pipelines.catalog.experiments import EXPERIMENT_FIELDS
from ketch.pipelines.tables import KfpExperimentRow

router = APIRouter(tags=["kfp v2beta1"])


def _experiment_json(catalog: Catalog, rows: list[KfpExperimentRow]) -> list[dict[str, Any]]:
    last = catalog.last_run_times([r.id for r in rows])
    return [shape.experiment(r, last.get(r.id)) for r in rows]


@router.post(f"{PREFIX}/experiments")
def create_experiment(request: Request, body: Any = Body(...)) -> Response:
    body = body_object(body, "Experiment")
    catalog = catalog_of(request)
    row = catalog.create_experiment(
        text_field(body, "display_name") or text_field(body, "name"),
        text_field(body, "description"),
        text_field(body, "namespace"),
    )
    return json_response(_experiment_json(catalog, [row])[0])


@router.get(f"{PREFIX}/experiments/{{experiment_id}}")
def get_experiment(request: Request, experiment_id: str) -> Response:
    catalog = catalog_of(request)
    return json_response(_experiment_json(catalog, [catalog.get_experiment(experiment_id)])[0])


@router.get(f"{PREFIX}/experiments")
def list_experiments(
    request: Request,
    namespace: str | None = Query(None),
    paging: Paging = Depends(),
) -> Response:
    opts = paging.options(EXPERIMENT_FIELDS, "experiments")
    catalog = catalog_of(request)
    if not paging.page_token:
        catalog.default_experiment(namespace)  # KFP always has one
    page = catalog.list_experiments(opts, namespace)
    return page_json("experiments", _experiment_json(catalog, page.items), page)


@router.delete(f"{PREFIX}/experiments/{{experiment_id}}")
def delete_experiment(request: Request, experiment_id: str) -> Response:
    catalog_of(request).delete_experiment(experiment_id)
    return empty()


@router.post(f"{PREFIX}/experiments/{{experiment_id}}:archive")
def archive_experiment(request: Request, experiment_id: str) -> Response:
    catalog_of(request).set_experiment_storage(experiment_id, "ARCHIVED")
    return empty()


@router.post(f"{PREFIX}/experiments/{{experiment_id}}:unarchive")
def unarchive_experiment(request: Request, experiment_id: str) -> Response:
    catalog_of(request).set_experiment_storage(experiment_id, "AVAILABLE")
    return empty()
