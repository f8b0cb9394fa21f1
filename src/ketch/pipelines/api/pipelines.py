"""KFP pipelines: upload (a package file), create (alone or with a first version),
get (by id or by name), list and delete, under ``/apis/v2beta1/pipelines``.

Deleting a pipeline that has versions without ``cascade=true`` answers 409 (gRPC
code FAILED_PRECONDITION).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, File, Query, Request, UploadFile
from fastapi.responses import Response

from ketch.core.access import Verb, rule
from ketch.pipelines import kfp_models as shape
from ketch.pipelines import spec as ir_loader
from ketch.pipelines.api.access import (
    PIPELINES,
    attributes,
    by_id,
    check,
    checked_in_handler,
    in_namespace,
    pipeline_scope,
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
from ketch.pipelines.api.paths import PREFIX, UPLOAD_PIPELINE
from ketch.pipelines.api.versions import stem, version_fields
from ketch.pipelines.catalog.packages import parse_package
from ketch.pipelines.catalog.pipelines import PIPELINE_FIELDS
from ketch.pipelines.filters import get_field

router = APIRouter(tags=["kfp v2beta1"])


@router.post(UPLOAD_PIPELINE)
@rule(in_namespace(Verb.CREATE, PIPELINES))
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
        or stem(uploadfile.filename)
        or ir_loader.PipelineIR(spec=spec, source="upload").name
    )
    row, _ = catalog_of(request).create_pipeline(
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
    return json_response(shape.pipeline(row))


@router.post(f"{PREFIX}/pipelines/create")
@rule(checked_in_handler)
def create_pipeline_and_version(request: Request, body: Any = Body(...)) -> Response:
    body = body_object(body, "CreatePipelineAndVersionRequest")
    pipeline = body_object(get_field(body, "pipeline") or {}, "pipeline")
    version = body_object(get_field(body, "pipeline_version") or {}, "pipeline_version")
    namespace = text_field(pipeline, "namespace")
    check(request, attributes(Verb.CREATE, PIPELINES, pipeline_scope(namespace)))
    fields = version_fields(version, "pipeline_version")
    if text_field(version, "name"):
        fields["name"] = text_field(version, "name")
    row, _ = catalog_of(request).create_pipeline(
        text_field(pipeline, "name"),
        text_field(pipeline, "display_name") or None,
        text_field(pipeline, "description"),
        namespace,
        version=fields,
    )
    return json_response(shape.pipeline(row))


@router.post(f"{PREFIX}/pipelines")
@rule(checked_in_handler)
def create_pipeline(request: Request, body: Any = Body(...)) -> Response:
    body = body_object(body, "Pipeline")
    namespace = text_field(body, "namespace")
    check(request, attributes(Verb.CREATE, PIPELINES, pipeline_scope(namespace)))
    row, _ = catalog_of(request).create_pipeline(
        text_field(body, "name"),
        text_field(body, "display_name") or None,
        text_field(body, "description"),
        namespace,
    )
    return json_response(shape.pipeline(row))


@router.get(f"{PREFIX}/pipelines/names/{{name}}")
@rule(in_namespace(Verb.GET, PIPELINES))
def get_pipeline_by_name(
    request: Request, name: str, namespace: str | None = Query(None)
) -> Response:
    return json_response(shape.pipeline(catalog_of(request).get_pipeline_by_name(name, namespace)))


@router.get(f"{PREFIX}/pipelines/{{pipeline_id}}")
@rule(by_id(Verb.GET, PIPELINES, "pipeline_id"))
def get_pipeline(request: Request, pipeline_id: str) -> Response:
    return json_response(shape.pipeline(catalog_of(request).get_pipeline(pipeline_id)))


@router.get(f"{PREFIX}/pipelines")
@rule(in_namespace(Verb.LIST, PIPELINES))
def list_pipelines(
    request: Request,
    namespace: str | None = Query(None),
    paging: Paging = Depends(),
) -> Response:
    opts = paging.options(PIPELINE_FIELDS, "pipelines")
    page = catalog_of(request).list_pipelines(opts, namespace)
    return page_json("pipelines", [shape.pipeline(r) for r in page.items], page)


@router.delete(f"{PREFIX}/pipelines/{{pipeline_id}}")
@rule(by_id(Verb.DELETE, PIPELINES, "pipeline_id"))
def delete_pipeline(request: Request, pipeline_id: str, cascade: bool = Query(False)) -> Response:
    catalog_of(request).delete_pipeline(pipeline_id, cascade)
    return empty()
