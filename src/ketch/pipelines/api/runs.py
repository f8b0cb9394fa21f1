"""KFP runs: create, get, list, terminate, retry, archive, unarchive and delete, under
``/apis/v2beta1/runs``; and what a run is made from (a spec or a pipeline version,
the runtime config, the experiment), which recurring runs share.

Runs are created and executed by the app's
:class:`~ketch.pipelines.service.RunService`. An empty or missing ``namespace``
means the ``default`` namespace. List pages omit ``run_details`` (``GET
/runs/{id}`` has them); list items keep ``pipeline_spec``, as KFP's do.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.responses import Response

from ketch.core.access import Verb, rule
from ketch.core.errors import InvalidSpec, NotFound
from ketch.pipelines import kfp_models as shape
from ketch.pipelines.api.access import (
    ARCHIVE,
    RETRY,
    RUNS,
    TERMINATE,
    UNARCHIVE,
    VERSIONS,
    attributes,
    by_id,
    check,
    checked_in_handler,
    list_scope,
    listing,
    pipeline_scope,
)
from ketch.pipelines.api.common import (
    Paging,
    body_object,
    catalog_of,
    empty,
    json_response,
    page_json,
    runs_of,
    text_field,
)
from ketch.pipelines.api.paths import PREFIX
from ketch.pipelines.catalog import Catalog
from ketch.pipelines.catalog.packages import normalize_spec
from ketch.pipelines.catalog.runs import RUN_FIELDS
from ketch.pipelines.catalog.store import DEFAULT_NAMESPACE, FailedPrecondition
from ketch.pipelines.filters import get_field
from ketch.pipelines.owners import ACTIVE_STATES
from ketch.pipelines.tables import KfpExperimentRow

router = APIRouter(tags=["kfp v2beta1"])


def experiment_for(
    request: Request, catalog: Catalog, experiment_id: str | None, resource: str
) -> KfpExperimentRow:
    """The experiment a run (``resource``: runs or recurring runs) goes into: the
    given one (not archived), else the default; the caller must be allowed to create
    ``resource`` in its namespace (checked before the default experiment is made)."""
    if not experiment_id:
        check(request, attributes(Verb.CREATE, resource, DEFAULT_NAMESPACE))
        return catalog.default_experiment()
    try:
        row = catalog.get_experiment(experiment_id)
    except NotFound as exc:
        raise NotFound(str(exc), field="experiment_id") from None
    check(request, attributes(Verb.CREATE, resource, row.namespace))
    if row.storage_state == "ARCHIVED":
        raise FailedPrecondition(
            f"experiment {experiment_id!r} is archived; unarchive it to add runs",
            field="experiment_id",
        )
    return row


def pipeline_source(
    request: Request, catalog: Catalog, body: dict[str, Any]
) -> tuple[dict[str, Any], str | None, str | None]:
    """The spec to run and the pipeline/version it came from, from a Run or RecurringRun
    body (a stored version the caller must be allowed to read)."""
    spec_doc = get_field(body, "pipeline_spec")
    reference = get_field(body, "pipeline_version_reference") or {}
    if not isinstance(reference, dict):
        raise InvalidSpec("must be an object", field="pipeline_version_reference")
    version_id = get_field(reference, "pipeline_version_id") or get_field(
        body, "pipeline_version_id"
    )
    pipeline_id = get_field(reference, "pipeline_id")
    if spec_doc and (version_id or pipeline_id):
        raise InvalidSpec(
            "give pipeline_spec or pipeline_version_reference, not both",
            field="pipeline_version_reference",
        )
    if spec_doc:
        spec, _platform = normalize_spec(spec_doc, check=False)
        return spec, None, None
    if version_id:
        version = catalog.get_version(pipeline_id or None, str(version_id))
    elif pipeline_id:
        check_pipeline(request, catalog, str(pipeline_id), VERSIONS)
        version = catalog.latest_version(str(pipeline_id))
    else:
        raise InvalidSpec(
            "a run needs pipeline_spec or pipeline_version_reference", field="pipeline_spec"
        )
    check_pipeline(request, catalog, version.pipeline_id, VERSIONS, version.id)
    return version.pipeline_spec, version.pipeline_id, version.id


def check_pipeline(
    request: Request, catalog: Catalog, pipeline_id: str, resource: str, name: str | None = None
) -> None:
    """Refuse unless the caller may read ``resource`` (pipelines or their versions) of
    the pipeline ``pipeline_id`` (shared ones: anyone signed in)."""
    namespace = pipeline_scope(catalog.get_pipeline(pipeline_id).namespace)
    check(request, attributes(Verb.GET, resource, namespace, name or pipeline_id))


def runtime_config(body: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """The parameters and pipeline root of a Run or RecurringRun body."""
    config = get_field(body, "runtime_config") or {}
    if not isinstance(config, dict):
        raise InvalidSpec("must be an object", field="runtime_config")
    parameters = get_field(config, "parameters") or {}
    if not isinstance(parameters, dict):
        raise InvalidSpec(
            "must be an object of parameter values", field="runtime_config.parameters"
        )
    root = get_field(config, "pipeline_root") or None
    if root is not None and not isinstance(root, str):
        raise InvalidSpec("must be a string", field="runtime_config.pipeline_root")
    return parameters, root


def _run_json(catalog: Catalog, run_id: str) -> dict[str, Any]:
    row, meta = catalog.get_run(run_id)
    return shape.run(row, meta, catalog.task_details(run_id))


@router.post(f"{PREFIX}/runs")
@rule(checked_in_handler)
def create_run(
    request: Request, body: Any = Body(...), experiment_id: str | None = Query(None)
) -> Response:
    body = body_object(body, "Run")
    catalog = catalog_of(request)
    experiment = experiment_for(
        request, catalog, text_field(body, "experiment_id") or experiment_id, RUNS
    )
    spec, pipeline_id, version_id = pipeline_source(request, catalog, body)
    parameters, root = runtime_config(body)
    recurring_run_id = text_field(body, "recurring_run_id") or None
    run_id = runs_of(request).submit(
        spec,
        parameters=parameters,
        display_name=text_field(body, "display_name") or None,
        namespace=experiment.namespace,
        experiment_id=experiment.id,
        pipeline_id=pipeline_id,
        pipeline_version_id=version_id,
        recurring_run_id=recurring_run_id,
        pipeline_root=root,
    )
    catalog.set_run_meta(
        run_id,
        description=text_field(body, "description"),
        service_account=text_field(body, "service_account"),
    )
    return json_response(_run_json(catalog, run_id))


@router.get(f"{PREFIX}/runs/{{run_id}}")
@rule(by_id(Verb.GET, RUNS, "run_id"))
def get_run(request: Request, run_id: str) -> Response:
    return json_response(_run_json(catalog_of(request), run_id))


@router.get(f"{PREFIX}/runs")
@rule(listing(RUNS))
def list_runs(
    request: Request,
    namespace: str | None = Query(None),
    experiment_id: str | None = Query(None),
    view: str | None = Query(None),
    paging: Paging = Depends(),
) -> Response:
    light = _light_view(view)
    opts = paging.options(RUN_FIELDS, "runs")
    page, metas = catalog_of(request).list_runs(
        opts, namespace=list_scope(request, namespace), experiment_id=experiment_id, light=light
    )
    items = [shape.run(r, metas.get(r.id), spec=not light) for r in page.items]
    return page_json("runs", items, page)


def _light_view(view: str | None) -> bool:
    """Whether a list asks for the light view (``BASIC``; ``FULL``, the default, is
    KFP's)."""
    chosen = (view or "FULL").strip().upper()
    if chosen not in ("FULL", "BASIC"):
        raise InvalidSpec(f"view {view!r} is not FULL or BASIC", field="view")
    return chosen == "BASIC"


@router.post(f"{PREFIX}/runs/{{run_id}}:terminate")
@rule(by_id(TERMINATE, RUNS, "run_id"))
def terminate_run(request: Request, run_id: str) -> Response:
    if runs_of(request).cancel(run_id) is False:
        # as the KFP backend answers for a run that is no longer pending or running
        raise InvalidSpec(
            f"Failed to terminate a run {run_id}. Row not found",
            hint="the run had already finished; nothing was terminated",
        )
    return empty()


@router.post(f"{PREFIX}/runs/{{run_id}}:retry")
@rule(by_id(RETRY, RUNS, "run_id"))
def retry_run(request: Request, run_id: str) -> Response:
    runs_of(request).retry(run_id)
    return empty()


@router.post(f"{PREFIX}/runs/{{run_id}}:archive")
@rule(by_id(ARCHIVE, RUNS, "run_id"))
def archive_run(request: Request, run_id: str) -> Response:
    catalog_of(request).set_run_storage(run_id, "ARCHIVED")
    return empty()


@router.post(f"{PREFIX}/runs/{{run_id}}:unarchive")
@rule(by_id(UNARCHIVE, RUNS, "run_id"))
def unarchive_run(request: Request, run_id: str) -> Response:
    catalog_of(request).set_run_storage(run_id, "AVAILABLE")
    return empty()


@router.delete(f"{PREFIX}/runs/{{run_id}}")
@rule(by_id(Verb.DELETE, RUNS, "run_id"))
def delete_run(request: Request, run_id: str) -> Response:
    catalog = catalog_of(request)
    row, _ = catalog.get_run(run_id)
    if row.state in ACTIVE_STATES:  # stop it first, so nothing writes to a deleted run
        runs = runs_of(request)
        runs.cancel(run_id)
        runs.wait(run_id, timeout=30)
    catalog.delete_run(run_id)
    return empty()
