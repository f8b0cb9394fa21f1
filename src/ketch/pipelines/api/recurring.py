"""KFP recurring runs: create (the spec and its arguments are checked now, not at the
first fire), get, list, delete, enable and disable, under
``/apis/v2beta1/recurringruns``; the scheduler (:mod:`ketch.pipelines.scheduler`)
fires them."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.responses import Response

from ketch.core.access import Verb, rule
from ketch.core.errors import InvalidSpec
from ketch.core.timestamps import utcnow
from ketch.pipelines import kfp_models as shape
from ketch.pipelines import spec as ir_loader
from ketch.pipelines.api.access import (
    DISABLE,
    ENABLE,
    RECURRING_RUNS,
    by_id,
    checked_in_handler,
    list_scope,
    listing,
)
from ketch.pipelines.api.common import (
    Paging,
    body_object,
    catalog_of,
    empty,
    json_response,
    page_json,
    text_field,
    wake_scheduler,
)
from ketch.pipelines.api.paths import PREFIX
from ketch.pipelines.api.runs import experiment_for, pipeline_source, runtime_config
from ketch.pipelines.catalog.recurring import RECURRING_FIELDS
from ketch.pipelines.catalog.store import namespace_or_default, new_id
from ketch.pipelines.filters import get_field
from ketch.pipelines.inputs import root_inputs
from ketch.pipelines.scheduler import MAX_CONCURRENCY, check_trigger
from ketch.pipelines.tables import KfpRecurringRunRow

router = APIRouter(tags=["kfp v2beta1"])


def _max_concurrency(body: dict[str, Any]) -> int:
    raw = get_field(body, "max_concurrency")
    if raw in (None, ""):
        return 1
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise InvalidSpec(f"{raw!r} is not a whole number", field="max_concurrency") from None
    if not 1 <= value <= MAX_CONCURRENCY:
        raise InvalidSpec(f"must be between 1 and {MAX_CONCURRENCY}", field="max_concurrency")
    return value


@router.post(f"{PREFIX}/recurringruns")
@rule(checked_in_handler)
def create_recurring_run(request: Request, body: Any = Body(...)) -> Response:
    body = body_object(body, "RecurringRun")
    catalog = catalog_of(request)
    display_name = text_field(body, "display_name").strip()
    if not display_name:
        raise InvalidSpec("a recurring run needs a display_name", field="display_name")
    trigger = check_trigger(get_field(body, "trigger"))
    mode = (text_field(body, "mode") or "ENABLE").upper()
    if mode not in ("ENABLE", "DISABLE", "MODE_UNSPECIFIED"):
        raise InvalidSpec(f"mode {mode!r} must be ENABLE or DISABLE", field="mode")
    experiment = experiment_for(request, catalog, text_field(body, "experiment_id"), RECURRING_RUNS)
    spec, pipeline_id, version_id = pipeline_source(request, catalog, body)
    parameters, root = runtime_config(body)
    ir = ir_loader.load(spec)  # check the spec and the arguments now, not at the first fire
    root_inputs(ir, parameters)
    created = utcnow()
    row = KfpRecurringRunRow(
        id=new_id(),
        display_name=display_name,
        description=text_field(body, "description"),
        namespace=namespace_or_default(experiment.namespace),
        experiment_id=experiment.id,
        pipeline_id=pipeline_id,
        pipeline_version_id=version_id,
        pipeline_spec=spec,
        parameters=parameters,
        pipeline_root=root,
        service_account=text_field(body, "service_account"),
        max_concurrency=_max_concurrency(body),
        mode="DISABLE" if mode == "DISABLE" else "ENABLE",
        no_catchup=bool(get_field(body, "no_catchup") or False),
        created_at=created,
        updated_at=created,
        **trigger,
    )
    catalog.create_recurring(row)
    wake_scheduler(request)
    return json_response(shape.recurring_run(row))


@router.get(f"{PREFIX}/recurringruns/{{recurring_run_id}}")
@rule(by_id(Verb.GET, RECURRING_RUNS, "recurring_run_id"))
def get_recurring_run(request: Request, recurring_run_id: str) -> Response:
    return json_response(shape.recurring_run(catalog_of(request).get_recurring(recurring_run_id)))


@router.get(f"{PREFIX}/recurringruns")
@rule(listing(RECURRING_RUNS))
def list_recurring_runs(
    request: Request,
    namespace: str | None = Query(None),
    experiment_id: str | None = Query(None),
    paging: Paging = Depends(),
) -> Response:
    opts = paging.options(RECURRING_FIELDS, "recurring runs")
    page = catalog_of(request).list_recurring(
        opts, namespace=list_scope(request, namespace), experiment_id=experiment_id
    )
    # KFP writes this one list name in camelCase.
    return page_json("recurringRuns", [shape.recurring_run(r) for r in page.items], page)


@router.delete(f"{PREFIX}/recurringruns/{{recurring_run_id}}")
@rule(by_id(Verb.DELETE, RECURRING_RUNS, "recurring_run_id"))
def delete_recurring_run(request: Request, recurring_run_id: str) -> Response:
    catalog_of(request).delete_recurring(recurring_run_id)
    return empty()


@router.post(f"{PREFIX}/recurringruns/{{recurring_run_id}}:enable")
@rule(by_id(ENABLE, RECURRING_RUNS, "recurring_run_id"))
def enable_recurring_run(request: Request, recurring_run_id: str) -> Response:
    catalog_of(request).set_recurring_mode(recurring_run_id, "ENABLE")
    wake_scheduler(request)
    return empty()


@router.post(f"{PREFIX}/recurringruns/{{recurring_run_id}}:disable")
@rule(by_id(DISABLE, RECURRING_RUNS, "recurring_run_id"))
def disable_recurring_run(request: Request, recurring_run_id: str) -> Response:
    catalog_of(request).set_recurring_mode(recurring_run_id, "DISABLE")
    return empty()
