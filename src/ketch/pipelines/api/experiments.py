"""KFP experiments: create, get, list (the namespace's ``Default`` experiment is made
on the first list, as KFP always has one), delete, archive (with their runs, and
disabling their recurring runs) and unarchive, under ``/apis/v2beta1/experiments``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.responses import Response

from ketch.core.access import Verb, rule
from ketch.pipelines import kfp_models as shape
from ketch.pipelines.api.access import (
    ARCHIVE,
    EXPERIMENTS,
    UNARCHIVE,
    attributes,
    by_id,
    check,
    checked_in_handler,
    in_namespace,
    list_scope,
)
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
from ketch.pipelines.catalog.store import Namespaces, namespace_or_default
from ketch.pipelines.tables import KfpExperimentRow

router = APIRouter(tags=["kfp v2beta1"])


def _experiment_json(catalog: Catalog, rows: list[KfpExperimentRow]) -> list[dict[str, Any]]:
    last = catalog.last_run_times([r.id for r in rows])
    return [shape.experiment(r, last.get(r.id)) for r in rows]


@router.post(f"{PREFIX}/experiments")
@rule(checked_in_handler)
def create_experiment(request: Request, body: Any = Body(...)) -> Response:
    body = body_object(body, "Experiment")
    namespace = namespace_or_default(text_field(body, "namespace"))
    check(request, attributes(Verb.CREATE, EXPERIMENTS, namespace))
    catalog = catalog_of(request)
    row = catalog.create_experiment(
        text_field(body, "display_name") or text_field(body, "name"),
        text_field(body, "description"),
        namespace,
    )
    return json_response(_experiment_json(catalog, [row])[0])


@router.get(f"{PREFIX}/experiments/{{experiment_id}}")
@rule(by_id(Verb.GET, EXPERIMENTS, "experiment_id"))
def get_experiment(request: Request, experiment_id: str) -> Response:
    catalog = catalog_of(request)
    return json_response(_experiment_json(catalog, [catalog.get_experiment(experiment_id)])[0])


@router.get(f"{PREFIX}/experiments")
@rule(in_namespace(Verb.LIST, EXPERIMENTS))
def list_experiments(
    request: Request,
    namespace: str | None = Query(None),
    paging: Paging = Depends(),
) -> Response:
    opts = paging.options(EXPERIMENT_FIELDS, "experiments")
    catalog = catalog_of(request)
    scope = list_scope(request, namespace)
    if not paging.page_token and not isinstance(scope, Namespaces):
        catalog.default_experiment(scope)  # KFP always has one
    page = catalog.list_experiments(opts, scope)
    return page_json("experiments", _experiment_json(catalog, page.items), page)


@router.delete(f"{PREFIX}/experiments/{{experiment_id}}")
@rule(by_id(Verb.DELETE, EXPERIMENTS, "experiment_id"))
def delete_experiment(request: Request, experiment_id: str) -> Response:
    catalog_of(request).delete_experiment(experiment_id)
    return empty()


@router.post(f"{PREFIX}/experiments/{{experiment_id}}:archive")
@rule(by_id(ARCHIVE, EXPERIMENTS, "experiment_id"))
def archive_experiment(request: Request, experiment_id: str) -> Response:
    catalog_of(request).set_experiment_storage(experiment_id, "ARCHIVED")
    return empty()


@router.post(f"{PREFIX}/experiments/{{experiment_id}}:unarchive")
@rule(by_id(UNARCHIVE, EXPERIMENTS, "experiment_id"))
def unarchive_experiment(request: Request, experiment_id: str) -> Response:
    catalog_of(request).set_experiment_storage(experiment_id, "AVAILABLE")
    return empty()
