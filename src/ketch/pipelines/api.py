"""The KFP REST API v2beta1, so ``kfp.Client(host=KETCH_URL)`` works unchanged.

Routes (all under ``/apis/v2beta1``): healthz; pipelines (upload, upload_version,
create, create with a version, get, get by name, list, delete) and their
versions; experiments (create, get, list, delete, archive, unarchive); runs
(create, get, list, terminate, retry, archive, unarchive, delete, read an
output artifact); recurring runs (create, get, list, delete, enable, disable).

Runs are created and executed through ``app.state.runs`` (a
:class:`~ketch.pipelines.service.RunService`). ``start(app)`` starts the
recurring-run scheduler and ``stop(app)`` stops it.

Differences from KFP worth knowing:

- An empty or missing ``namespace`` means the ``default`` namespace.
- List pages omit ``run_details`` (``GET /runs/{id}`` has them); list items
  keep ``pipeline_spec``, as KFP's do.
- ``…/artifacts/{name}:read`` answers ``{"data": base64}`` where the bytes are a
  gzipped tar holding the artifact (its file, or its directory's files), as
  KFP's ReadArtifact does; ``node_id`` is the task id from ``run_details``
  (a task's path or name is accepted too).
- Deleting a pipeline that has versions without ``cascade=true`` answers 409
  (gRPC code FAILED_PRECONDITION).
"""

from __future__ import annotations

import base64
import io
import logging
import os
import tarfile
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Body, Depends, FastAPI, File, Query, Request, UploadFile
from fastapi.responses import Response

from ketch.core.errors import InvalidSpec, KetchError, NotFound
from ketch.core.store.db import init_db
from ketch.pipelines import filters
from ketch.pipelines import kfp_models as shape
from ketch.pipelines import spec as ir_loader
from ketch.pipelines.catalog import (
    EXPERIMENT_FIELDS,
    MAX_PACKAGE_BYTES,
    PIPELINE_FIELDS,
    RECURRING_FIELDS,
    RUN_FIELDS,
    VERSION_FIELDS,
    Catalog,
    FailedPrecondition,
    Page,
    dumps,
    namespace_or_default,
    new_id,
    normalize_spec,
    now,
    parse_package,
)
from ketch.pipelines.filters import get_field
from ketch.pipelines.scheduler import MAX_CONCURRENCY, Scheduler, check_trigger
from ketch.pipelines.tables import MIGRATIONS, KfpExperimentRow, KfpRecurringRunRow

log = logging.getLogger(__name__)

PREFIX = "/apis/v2beta1"
MAX_ARTIFACT_BYTES = 64 * 1024 * 1024
ACTIVE_STATES = ("PENDING", "RUNNING", "CANCELING")

router = APIRouter(tags=["kfp v2beta1"])


class ArtifactTooLarge(KetchError):
    http_status = 413
    exit_code = 2


class RunServiceUnavailable(KetchError):
    """The server serves stored objects but runs nothing (started without a run service)."""

    http_status = 503


# ---------------------------------------------------------------- plumbing


def _json(obj: Any, status_code: int = 200) -> Response:
    return Response(content=dumps(obj), status_code=status_code, media_type="application/json")


def _empty() -> Response:
    return _json({})


def _runs(request: Request) -> Any:
    runs = getattr(request.app.state, "runs", None)
    if runs is None:
        raise RunServiceUnavailable(
            "this server does not execute runs (it has no run service)",
            hint="start the server with 'ketch up'",
        )
    return runs


def _database_url(app: Any) -> str | None:
    url = getattr(app.state, "database_url", None)
    if url:
        return str(url)
    runs = getattr(app.state, "runs", None)
    return getattr(runs, "url", None)


def _catalog(request: Request) -> Catalog:
    catalog = getattr(request.app.state, "kfp_catalog", None)
    if catalog is None:
        url = _database_url(request.app)
        init_db(url, [MIGRATIONS])
        catalog = Catalog(url)
        request.app.state.kfp_catalog = catalog
    return catalog


def _scheduler(request: Request) -> Scheduler | None:
    return getattr(request.app.state, "kfp_scheduler", None)


def _wake(request: Request) -> None:
    scheduler = _scheduler(request)
    if scheduler is not None:
        scheduler.wake()


def _object(body: Any, what: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise InvalidSpec(f"the body must be a JSON object ({what})", field="body")
    return body


def _text(obj: dict[str, Any], name: str) -> str:
    value = get_field(obj, name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidSpec("must be a string", field=name)
    return value


class _Paging:
    """The query parameters every list route takes (a FastAPI dependency)."""

    def __init__(
        self,
        page_token: str | None = Query(None),
        page_size: int | None = Query(None),
        sort_by: str | None = Query(None),
        filter: str | None = Query(None),
    ) -> None:
        self.page_token = page_token
        self.page_size = page_size
        self.sort_by = sort_by
        self.filter = filter

    def options(self, fields: dict[str, filters.Field], resource: str) -> filters.ListOptions:
        return filters.list_options(
            page_token=self.page_token,
            page_size=self.page_size,
            sort_by=self.sort_by,
            filter=self.filter,
            fields=fields,
            resource=resource,
        )


def _page_json(key: str, items: list[Any], page: Page) -> Response:
    return _json(
        {key: items, "total_size": page.total_size, "next_page_token": page.next_page_token}
    )


def start(app: FastAPI) -> None:
    """Start the recurring-run scheduler (after ``app.state.runs`` is started)."""
    runs = getattr(app.state, "runs", None)
    if runs is None:
        raise KetchError("start the KFP API after setting app.state.runs")
    url = _database_url(app)
    init_db(url, [MIGRATIONS])
    catalog = Catalog(url)
    app.state.kfp_catalog = catalog
    catalog.default_experiment()
    scheduler = Scheduler(runs, url)
    app.state.kfp_scheduler = scheduler
    scheduler.start()


def stop(app: FastAPI) -> None:
    """Stop the scheduler (before ``app.state.runs`` stops)."""
    scheduler = getattr(app.state, "kfp_scheduler", None)
    if scheduler is not None:
        scheduler.stop()
        app.state.kfp_scheduler = None


# ---------------------------------------------------------------- healthz


@router.get(f"{PREFIX}/healthz")
def healthz() -> Response:
    return _json({"multi_user": False, "pipeline_store": "database"})


# ---------------------------------------------------------------- pipelines


def _version_fields(body: dict[str, Any], where: str) -> dict[str, Any]:
    """The spec and descriptive fields of a PipelineVersion body."""
    spec_doc = get_field(body, "pipeline_spec")
    package = get_field(body, "package_url")
    url = get_field(package, "pipeline_url") if isinstance(package, dict) else None
    if spec_doc:
        spec, platform = normalize_spec(spec_doc, where=f"{where}.pipeline_spec")
    elif url:
        spec, platform = parse_package(_fetch_package(str(url)))
    else:
        raise InvalidSpec(
            "a pipeline version needs pipeline_spec or package_url.pipeline_url", field=where
        )
    return {
        "spec": spec,
        "platform_spec": platform,
        "display_name": _text(body, "display_name") or None,
        "description": _text(body, "description"),
        "package_url": str(url) if url else None,
        "code_source_url": _text(body, "code_source_url") or None,
    }


def _fetch_package(url: str) -> bytes:
    if not url.startswith(("http://", "https://")):
        raise InvalidSpec("package_url.pipeline_url must be an http(s) URL", field="package_url")
    import httpx

    try:
        with httpx.stream("GET", url, timeout=30, follow_redirects=True) as response:
            response.raise_for_status()
            chunks: list[bytes] = []
            size = 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > MAX_PACKAGE_BYTES:
                    raise InvalidSpec("the pipeline package is too large", field="package_url")
                chunks.append(chunk)
    except httpx.HTTPError as exc:
        raise InvalidSpec(f"cannot download {url}: {exc}", field="package_url") from exc
    return b"".join(chunks)


def _stem(filename: str | None) -> str:
    name = os.path.basename(filename or "")
    for suffix in (".tar.gz", ".tgz", ".zip", ".yaml", ".yml", ".json"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


@router.post(f"{PREFIX}/pipelines/upload")
def upload_pipeline(
    request: Request,
    uploadfile: UploadFile = File(...),
    name: str | None = Query(None),
    display_name: str | None = Query(None),
    description: str | None = Query(None),
    namespace: str | None = Query(None),
) -> Response:
    spec, platform = parse_package(uploadfile.file.read())
    pipeline_name = (
        name
        or display_name
        or _stem(uploadfile.filename)
        or ir_loader.PipelineIR(spec=spec, source="upload").name
    )
    row, _ = _catalog(request).create_pipeline(
        pipeline_name,
        display_name,
        description,
        namespace,
        version={
            "spec": spec,
            "platform_spec": platform,
            "display_name": display_name,
            "description": description,
        },
    )
    return _json(shape.pipeline(row))


@router.post(f"{PREFIX}/pipelines/upload_version")
def upload_pipeline_version(
    request: Request,
    uploadfile: UploadFile = File(...),
    pipelineid: str | None = Query(None),
    name: str | None = Query(None),
    display_name: str | None = Query(None),
    description: str | None = Query(None),
) -> Response:
    if not pipelineid:
        raise InvalidSpec("the pipelineid query parameter is required", field="pipelineid")
    catalog = _catalog(request)
    catalog.get_pipeline(pipelineid)
    spec, platform = parse_package(uploadfile.file.read())
    row = catalog.create_version(
        pipelineid,
        name=name or display_name or _stem(uploadfile.filename),
        spec=spec,
        platform_spec=platform,
        display_name=display_name,
        description=description,
    )
    return _json(shape.pipeline_version(row))


@router.post(f"{PREFIX}/pipelines/create")
def create_pipeline_and_version(request: Request, body: Any = Body(...)) -> Response:
    body = _object(body, "CreatePipelineAndVersionRequest")
    pipeline = _object(get_field(body, "pipeline") or {}, "pipeline")
    version = _object(get_field(body, "pipeline_version") or {}, "pipeline_version")
    fields = _version_fields(version, "pipeline_version")
    if _text(version, "name"):
        fields["name"] = _text(version, "name")
    row, _ = _catalog(request).create_pipeline(
        _text(pipeline, "name"),
        _text(pipeline, "display_name") or None,
        _text(pipeline, "description"),
        _text(pipeline, "namespace"),
        version=fields,
    )
    return _json(shape.pipeline(row))


@router.post(f"{PREFIX}/pipelines")
def create_pipeline(request: Request, body: Any = Body(...)) -> Response:
    body = _object(body, "Pipeline")
    row, _ = _catalog(request).create_pipeline(
        _text(body, "name"),
        _text(body, "display_name") or None,
        _text(body, "description"),
        _text(body, "namespace"),
    )
    return _json(shape.pipeline(row))


@router.get(f"{PREFIX}/pipelines/names/{{name}}")
def get_pipeline_by_name(
    request: Request, name: str, namespace: str | None = Query(None)
) -> Response:
    return _json(shape.pipeline(_catalog(request).get_pipeline_by_name(name, namespace)))


@router.get(f"{PREFIX}/pipelines/{{pipeline_id}}")
def get_pipeline(request: Request, pipeline_id: str) -> Response:
    return _json(shape.pipeline(_catalog(request).get_pipeline(pipeline_id)))


@router.get(f"{PREFIX}/pipelines")
def list_pipelines(
    request: Request,
    namespace: str | None = Query(None),
    paging: _Paging = Depends(),
) -> Response:
    opts = paging.options(PIPELINE_FIELDS, "pipelines")
    page = _catalog(request).list_pipelines(opts, namespace)
    return _page_json("pipelines", [shape.pipeline(r) for r in page.items], page)


@router.delete(f"{PREFIX}/pipelines/{{pipeline_id}}")
def delete_pipeline(request: Request, pipeline_id: str, cascade: bool = Query(False)) -> Response:
    _catalog(request).delete_pipeline(pipeline_id, cascade)
    return _empty()


@router.post(f"{PREFIX}/pipelines/{{pipeline_id}}/versions")
def create_pipeline_version(request: Request, pipeline_id: str, body: Any = Body(...)) -> Response:
    body = _object(body, "PipelineVersion")
    other = _text(body, "pipeline_id")
    if other and other != pipeline_id:
        raise InvalidSpec(
            f"the body names pipeline {other!r} but the path {pipeline_id!r}", field="pipeline_id"
        )
    catalog = _catalog(request)
    catalog.get_pipeline(pipeline_id)
    fields = _version_fields(body, "pipeline_version")
    row = catalog.create_version(pipeline_id, name=_text(body, "name"), **fields)
    return _json(shape.pipeline_version(row))


@router.get(f"{PREFIX}/pipelines/{{pipeline_id}}/versions/{{pipeline_version_id}}")
def get_pipeline_version(request: Request, pipeline_id: str, pipeline_version_id: str) -> Response:
    return _json(
        shape.pipeline_version(_catalog(request).get_version(pipeline_id, pipeline_version_id))
    )


@router.get(f"{PREFIX}/pipelines/{{pipeline_id}}/versions")
def list_pipeline_versions(
    request: Request,
    pipeline_id: str,
    paging: _Paging = Depends(),
) -> Response:
    opts = paging.options(VERSION_FIELDS, "pipeline versions")
    page = _catalog(request).list_versions(pipeline_id, opts)
    return _page_json("pipeline_versions", [shape.pipeline_version(r) for r in page.items], page)


@router.delete(f"{PREFIX}/pipelines/{{pipeline_id}}/versions/{{pipeline_version_id}}")
def delete_pipeline_version(
    request: Request, pipeline_id: str, pipeline_version_id: str
) -> Response:
    _catalog(request).delete_version(pipeline_id, pipeline_version_id)
    return _empty()


# ---------------------------------------------------------------- experiments


def _experiment_json(catalog: Catalog, rows: list[KfpExperimentRow]) -> list[dict[str, Any]]:
    last = catalog.last_run_times([r.id for r in rows])
    return [shape.experiment(r, last.get(r.id)) for r in rows]


@router.post(f"{PREFIX}/experiments")
def create_experiment(request: Request, body: Any = Body(...)) -> Response:
    body = _object(body, "Experiment")
    catalog = _catalog(request)
    row = catalog.create_experiment(
        _text(body, "display_name") or _text(body, "name"),
        _text(body, "description"),
        _text(body, "namespace"),
    )
    return _json(_experiment_json(catalog, [row])[0])


@router.get(f"{PREFIX}/experiments/{{experiment_id}}")
def get_experiment(request: Request, experiment_id: str) -> Response:
    catalog = _catalog(request)
    return _json(_experiment_json(catalog, [catalog.get_experiment(experiment_id)])[0])


@router.get(f"{PREFIX}/experiments")
def list_experiments(
    request: Request,
    namespace: str | None = Query(None),
    paging: _Paging = Depends(),
) -> Response:
    opts = paging.options(EXPERIMENT_FIELDS, "experiments")
    catalog = _catalog(request)
    if not paging.page_token:
        catalog.default_experiment(namespace)  # KFP always has one
    page = catalog.list_experiments(opts, namespace)
    return _page_json("experiments", _experiment_json(catalog, page.items), page)


@router.delete(f"{PREFIX}/experiments/{{experiment_id}}")
def delete_experiment(request: Request, experiment_id: str) -> Response:
    _catalog(request).delete_experiment(experiment_id)
    return _empty()


@router.post(f"{PREFIX}/experiments/{{experiment_id}}:archive")
def archive_experiment(request: Request, experiment_id: str) -> Response:
    _catalog(request).set_experiment_storage(experiment_id, "ARCHIVED")
    return _empty()


@router.post(f"{PREFIX}/experiments/{{experiment_id}}:unarchive")
def unarchive_experiment(request: Request, experiment_id: str) -> Response:
    _catalog(request).set_experiment_storage(experiment_id, "AVAILABLE")
    return _empty()


# ---------------------------------------------------------------- runs


def _experiment_for(catalog: Catalog, experiment_id: str | None) -> KfpExperimentRow:
    if not experiment_id:
        return catalog.default_experiment()
    try:
        row = catalog.get_experiment(experiment_id)
    except NotFound as exc:
        raise NotFound(str(exc), field="experiment_id") from None
    if row.storage_state == "ARCHIVED":
        raise FailedPrecondition(
            f"experiment {experiment_id!r} is archived; unarchive it to add runs",
            field="experiment_id",
        )
    return row


def _pipeline_source(
    catalog: Catalog, body: dict[str, Any]
) -> tuple[dict[str, Any], str | None, str | None]:
    """The spec to run and the pipeline/version it came from, from a Run or RecurringRun body."""
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
        version = catalog.latest_version(str(pipeline_id))
    else:
        raise InvalidSpec(
            "a run needs pipeline_spec or pipeline_version_reference", field="pipeline_spec"
        )
    return version.pipeline_spec, version.pipeline_id, version.id


def _runtime_config(body: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
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


def _run_json(request: Request, run_id: str) -> dict[str, Any]:
    catalog = _catalog(request)
    row, meta = catalog.get_run(run_id)
    return shape.run(row, meta, catalog.task_details(run_id))


@router.post(f"{PREFIX}/runs")
def create_run(
    request: Request, body: Any = Body(...), experiment_id: str | None = Query(None)
) -> Response:
    body = _object(body, "Run")
    catalog = _catalog(request)
    experiment = _experiment_for(catalog, _text(body, "experiment_id") or experiment_id)
    spec, pipeline_id, version_id = _pipeline_source(catalog, body)
    parameters, root = _runtime_config(body)
    recurring_run_id = _text(body, "recurring_run_id") or None
    run_id = _runs(request).submit(
        spec,
        parameters=parameters,
        display_name=_text(body, "display_name") or None,
        namespace=experiment.namespace,
        experiment_id=experiment.id,
        pipeline_id=pipeline_id,
        pipeline_version_id=version_id,
        recurring_run_id=recurring_run_id,
        pipeline_root=root,
    )
    catalog.set_run_meta(
        run_id,
        description=_text(body, "description"),
        service_account=_text(body, "service_account"),
    )
    return _json(_run_json(request, run_id))


@router.get(f"{PREFIX}/runs/{{run_id}}/nodes/{{node_id}}/artifacts/{{artifact_name}}:read")
def read_artifact(request: Request, run_id: str, node_id: str, artifact_name: str) -> Response:
    catalog = _catalog(request)
    catalog.get_run(run_id)
    tasks = catalog.task_rows(run_id)
    task = next((t for t in tasks if t.id == node_id), None)
    task = task or next((t for t in tasks if t.path == node_id), None)
    task = task or next((t for t in tasks if t.name == node_id or t.display_name == node_id), None)
    if task is None:
        raise NotFound(f"run {run_id!r} has no task {node_id!r}", field="node_id")
    artifacts = (task.outputs or {}).get("artifacts", {}).get(artifact_name)
    if not artifacts:
        names = ", ".join(sorted((task.outputs or {}).get("artifacts", {}))) or "none"
        raise NotFound(
            f"task {task.display_name!r} has no output artifact {artifact_name!r} "
            f"(its output artifacts: {names})",
            field="artifact_name",
        )
    uri = str(artifacts[0].get("uri", ""))
    return _json({"data": base64.b64encode(_tar_artifact(uri)).decode("ascii")})


def _tar_artifact(uri: str) -> bytes:
    """A gzipped tar of the artifact at ``uri`` (a file, or a directory's files)."""
    buffer = io.BytesIO()
    if "://" not in uri or uri.startswith("file://"):
        path = Path(uri.removeprefix("file://"))
        if not path.exists():
            raise NotFound(f"the artifact file {str(path)!r} does not exist (it was removed?)")
        size = (
            path.stat().st_size
            if path.is_file()
            else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        )
        if size > MAX_ARTIFACT_BYTES:
            raise ArtifactTooLarge(
                f"the artifact is {size} bytes; read it from {uri} directly "
                f"(the API returns at most {MAX_ARTIFACT_BYTES} bytes)"
            )
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            tar.add(str(path), arcname=path.name)
        return buffer.getvalue()
    import fsspec

    try:
        with fsspec.open(uri, "rb") as f:
            data = f.read(MAX_ARTIFACT_BYTES + 1)
    except (OSError, ValueError, ImportError) as exc:
        raise NotFound(f"cannot read the artifact at {uri}: {exc}") from exc
    if len(data) > MAX_ARTIFACT_BYTES:
        raise ArtifactTooLarge(
            f"the artifact is larger than {MAX_ARTIFACT_BYTES} bytes; read it from {uri}"
        )
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo(uri.rstrip("/").rsplit("/", 1)[-1] or "artifact")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@router.get(f"{PREFIX}/runs/{{run_id}}")
def get_run(request: Request, run_id: str) -> Response:
    return _json(_run_json(request, run_id))


@router.get(f"{PREFIX}/runs")
def list_runs(
    request: Request,
    namespace: str | None = Query(None),
    experiment_id: str | None = Query(None),
    paging: _Paging = Depends(),
) -> Response:
    opts = paging.options(RUN_FIELDS, "runs")
    page, metas = _catalog(request).list_runs(
        opts, namespace=namespace, experiment_id=experiment_id
    )
    return _page_json("runs", [shape.run(r, metas.get(r.id)) for r in page.items], page)


@router.post(f"{PREFIX}/runs/{{run_id}}:terminate")
def terminate_run(request: Request, run_id: str) -> Response:
    if _runs(request).cancel(run_id) is False:
        # as the KFP backend answers for a run that is no longer pending or running
        raise InvalidSpec(
            f"Failed to terminate a run {run_id}. Row not found",
            hint="the run had already finished; nothing was terminated",
        )
    return _empty()


@router.post(f"{PREFIX}/runs/{{run_id}}:retry")
def retry_run(request: Request, run_id: str) -> Response:
    _runs(request).retry(run_id)
    return _empty()


@router.post(f"{PREFIX}/runs/{{run_id}}:archive")
def archive_run(request: Request, run_id: str) -> Response:
    _catalog(request).set_run_storage(run_id, "ARCHIVED")
    return _empty()


@router.post(f"{PREFIX}/runs/{{run_id}}:unarchive")
def unarchive_run(request: Request, run_id: str) -> Response:
    _catalog(request).set_run_storage(run_id, "AVAILABLE")
    return _empty()


@router.delete(f"{PREFIX}/runs/{{run_id}}")
def delete_run(request: Request, run_id: str) -> Response:
    catalog = _catalog(request)
    row, _ = catalog.get_run(run_id)
    if row.state in ACTIVE_STATES:  # stop it first, so nothing writes to a deleted run
        runs = _runs(request)
        runs.cancel(run_id)
        runs.wait(run_id, timeout=30)
    catalog.delete_run(run_id)
    return _empty()


# ---------------------------------------------------------------- recurring runs


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
def create_recurring_run(request: Request, body: Any = Body(...)) -> Response:
    body = _object(body, "RecurringRun")
    catalog = _catalog(request)
    display_name = _text(body, "display_name").strip()
    if not display_name:
        raise InvalidSpec("a recurring run needs a display_name", field="display_name")
    trigger = check_trigger(get_field(body, "trigger"))
    mode = (_text(body, "mode") or "ENABLE").upper()
    if mode not in ("ENABLE", "DISABLE", "MODE_UNSPECIFIED"):
        raise InvalidSpec(f"mode {mode!r} must be ENABLE or DISABLE", field="mode")
    experiment = _experiment_for(catalog, _text(body, "experiment_id"))
    spec, pipeline_id, version_id = _pipeline_source(catalog, body)
    parameters, root = _runtime_config(body)
    ir = ir_loader.load(spec)  # check the spec and the arguments now, not at the first fire
    from ketch.pipelines.engine import root_inputs

    root_inputs(ir, parameters)
    created = now()
    row = KfpRecurringRunRow(
        id=new_id(),
        display_name=display_name,
        description=_text(body, "description"),
        namespace=namespace_or_default(experiment.namespace),
        experiment_id=experiment.id,
        pipeline_id=pipeline_id,
        pipeline_version_id=version_id,
        pipeline_spec=spec,
        parameters=parameters,
        pipeline_root=root,
        service_account=_text(body, "service_account"),
        max_concurrency=_max_concurrency(body),
        mode="DISABLE" if mode == "DISABLE" else "ENABLE",
        no_catchup=bool(get_field(body, "no_catchup") or False),
        created_at=created,
        updated_at=created,
        **trigger,
    )
    catalog.create_recurring(row)
    _wake(request)
    return _json(shape.recurring_run(row))


@router.get(f"{PREFIX}/recurringruns/{{recurring_run_id}}")
def get_recurring_run(request: Request, recurring_run_id: str) -> Response:
    return _json(shape.recurring_run(_catalog(request).get_recurring(recurring_run_id)))


@router.get(f"{PREFIX}/recurringruns")
def list_recurring_runs(
    request: Request,
    namespace: str | None = Query(None),
    experiment_id: str | None = Query(None),
    paging: _Paging = Depends(),
) -> Response:
    opts = paging.options(RECURRING_FIELDS, "recurring runs")
    page = _catalog(request).list_recurring(opts, namespace=namespace, experiment_id=experiment_id)
    # KFP writes this one list name in camelCase.
    return _page_json("recurringRuns", [shape.recurring_run(r) for r in page.items], page)


@router.delete(f"{PREFIX}/recurringruns/{{recurring_run_id}}")
def delete_recurring_run(request: Request, recurring_run_id: str) -> Response:
    _catalog(request).delete_recurring(recurring_run_id)
    return _empty()


@router.post(f"{PREFIX}/recurringruns/{{recurring_run_id}}:enable")
def enable_recurring_run(request: Request, recurring_run_id: str) -> Response:
    _catalog(request).set_recurring_mode(recurring_run_id, "ENABLE")
    _wake(request)
    return _empty()


@router.post(f"{PREFIX}/recurringruns/{{recurring_run_id}}:disable")
def disable_recurring_run(request: Request, recurring_run_id: str) -> Response:
    _catalog(request).set_recurring_mode(recurring_run_id, "DISABLE")
    return _empty()
