"""KFP pipeline versions: upload (a package file), create (a spec or a package URL),
get, list and delete, under ``/apis/v2beta1/pipelines/{pipeline_id}/versions``."""

from __future__ import annotations

import os
from typing import Any

from fastapi import APIRouter, Body, Depends, File, Query, Request, UploadFile
from fastapi.responses import Response

from ketch.core.access import Verb, rule
from ketch.core.errors import InvalidSpec
from ketch.pipelines import kfp_models as shape
from ketch.pipelines.api.access import PIPELINES, VERSIONS, by_id
from ketch.pipelines.api.common import (
    Paging,
    body_object,
    catalog_of,
    empty,
    json_response,
    page_json,
    text_field,
)
from ketch.pipelines.api.paths import PREFIX, UPLOAD_VERSION
from ketch.pipelines.catalog.packages import fetch_package, normalize_spec, parse_package
from ketch.pipelines.catalog.pipelines import VERSION_FIELDS
from ketch.pipelines.filters import get_field

router = APIRouter(tags=["kfp v2beta1"])


def version_fields(body: dict[str, Any], where: str) -> dict[str, Any]:
    """The spec and descriptive fields of a PipelineVersion body."""
    spec_doc = get_field(body, "pipeline_spec")
    package = get_field(body, "package_url")
    url = get_field(package, "pipeline_url") if isinstance(package, dict) else None
    if spec_doc:
        spec, platform = normalize_spec(spec_doc, where=f"{where}.pipeline_spec")
    elif url:
        spec, platform = parse_package(fetch_package(str(url)))
    else:
        raise InvalidSpec(
            "a pipeline version needs pipeline_spec or package_url.pipeline_url", field=where
        )
    return {
        "spec": spec,
        "platform_spec": platform,
        "display_name": text_field(body, "display_name") or None,
        "description": text_field(body, "description"),
        "package_url": str(url) if url else None,
        "code_source_url": text_field(body, "code_source_url") or None,
    }


def stem(filename: str | None) -> str:
    """An uploaded file's name without its folder and package suffix."""
    name = os.path.basename(filename or "")
    for suffix in (".tar.gz", ".tgz", ".zip", ".yaml", ".yml", ".json"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


@router.post(UPLOAD_VERSION)
@rule(by_id(Verb.CREATE, VERSIONS, "pipelineid", of=PIPELINES, query=True))
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
    catalog = catalog_of(request)
    catalog.get_pipeline(pipelineid)
    spec, platform = parse_package(uploadfile.file.read())
    row = catalog.create_version(
        pipelineid,
        name=name or display_name or stem(uploadfile.filename),
        spec=spec,
        platform_spec=platform,
        display_name=display_name,
        description=description,
    )
    return json_response(shape.pipeline_version(row))


@router.post(f"{PREFIX}/pipelines/{{pipeline_id}}/versions")
@rule(by_id(Verb.CREATE, VERSIONS, "pipeline_id", of=PIPELINES))
def create_pipeline_version(request: Request, pipeline_id: str, body: Any = Body(...)) -> Response:
    body = body_object(body, "PipelineVersion")
    other = text_field(body, "pipeline_id")
    if other and other != pipeline_id:
        raise InvalidSpec(
            f"the body names pipeline {other!r} but the path {pipeline_id!r}", field="pipeline_id"
        )
    catalog = catalog_of(request)
    catalog.get_pipeline(pipeline_id)
    fields = version_fields(body, "pipeline_version")
    row = catalog.create_version(pipeline_id, name=text_field(body, "name"), **fields)
    return json_response(shape.pipeline_version(row))


@router.get(f"{PREFIX}/pipelines/{{pipeline_id}}/versions/{{pipeline_version_id}}")
@rule(by_id(Verb.GET, VERSIONS, "pipeline_id", of=PIPELINES, named="pipeline_version_id"))
def get_pipeline_version(request: Request, pipeline_id: str, pipeline_version_id: str) -> Response:
    return json_response(
        shape.pipeline_version(catalog_of(request).get_version(pipeline_id, pipeline_version_id))
    )


@router.get(f"{PREFIX}/pipelines/{{pipeline_id}}/versions")
@rule(by_id(Verb.LIST, VERSIONS, "pipeline_id", of=PIPELINES))
def list_pipeline_versions(
    request: Request,
    pipeline_id: str,
    paging: Paging = Depends(),
) -> Response:
    opts = paging.options(VERSION_FIELDS, "pipeline versions")
    page = catalog_of(request).list_versions(pipeline_id, opts)
    return page_json("pipeline_versions", [shape.pipeline_version(r) for r in page.items], page)


@router.delete(f"{PREFIX}/pipelines/{{pipeline_id}}/versions/{{pipeline_version_id}}")
@rule(by_id(Verb.DELETE, VERSIONS, "pipeline_id", of=PIPELINES, named="pipeline_version_id"))
def delete_pipeline_version(
    request: Request, pipeline_id: str, pipeline_version_id: str
) -> Response:
    catalog_of(request).delete_version(pipeline_id, pipeline_version_id)
    return empty()
