"""KFP pipelines on the dashboard: the list (the namespace's and the shared ones) with an
upload of a compiled pipeline, a pipeline's versions with an upload of a new one, and a
version's page: its graph (:mod:`ketch.ui.dag`), its parameters and a button to run it.

An upload is a compiled pipeline, YAML or JSON (KFP's IR, as ``kfp dsl compile
--py pipeline.py --output pipeline.yaml`` writes it, or a PipelineJob), or a ``.py``
pipeline: the browser reads the file and sends its text, and the page creates the
pipeline through ``POST /apis/v2beta1/pipelines/create`` (a version through
``.../versions``), which checks the spec. A ``.py`` file is first compiled through
``POST /apis/v2beta1/pipelines:compile``, which runs the code in a process of the
namespace's own (never in the server); its refusal shows at the ``file`` field.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Body, Request
from fastapi.responses import Response

from ketch.core.access import Verb, rule
from ketch.core.documents import load_yaml_all
from ketch.core.errors import InvalidSpec
from ketch.pipelines.api.access import (
    PIPELINES,
    VERSIONS,
    attributes,
    by_id,
    pipeline_scope,
)
from ketch.ui.access import in_namespace
from ketch.ui.dag import spec_graph
from ketch.ui.page import Page, render_html, send_to
from ketch.ui.runforms import parameters_of

router = APIRouter(include_in_schema=False)
KFP = "/apis/v2beta1"
RECENT = "created_at desc"
#: the most text an upload may carry (the API's own limit for a package is larger)
MAX_UPLOAD = 8 * 1024 * 1024
COMPILE_HINT = (
    "it is compiled (kfp's compiler) in a process of the namespace's own, never in "
    "the server; a file with several pipelines must be compiled first with kfp dsl compile"
)


def _list_rule(namespace: str) -> Any:
    return attributes(Verb.LIST, PIPELINES, pipeline_scope(namespace))


def _create_rule(namespace: str) -> Any:
    return attributes(Verb.CREATE, PIPELINES, pipeline_scope(namespace))


def is_python(text: str, filename: str = "") -> bool:
    """Whether an uploaded file is a ``.py`` pipeline rather than a compiled one."""
    return filename.endswith(".py") or text.lstrip().startswith(("from kfp", "import kfp"))


def spec_from_text(text: str, filename: str = "") -> dict[str, Any]:
    """The pipeline an uploaded compiled file's text holds (its platform spec kept
    beside it), ``InvalidSpec`` naming the ``file`` field when it is none; a ``.py``
    file goes through :func:`spec_of` instead."""
    if is_python(text, filename):
        raise InvalidSpec("this is Python, not a compiled pipeline", field="file")
    if len(text.encode()) > MAX_UPLOAD:
        raise InvalidSpec("the pipeline file is larger than 8 MiB", field="file")
    if not text.strip():
        raise InvalidSpec("choose a compiled pipeline file (YAML or JSON)", field="file")
    docs = load_yaml_all(text, field="file")
    if not docs or not isinstance(docs[0], dict):
        raise InvalidSpec("the file holds no pipeline spec (a YAML mapping)", field="file")
    platform: dict[str, Any] = {}
    for extra in docs[1:]:
        if isinstance(extra, dict):
            platform.update(extra)
    if platform:
        return {"pipeline_spec": docs[0], "platform_spec": platform}
    return docs[0]


async def spec_of(page: Page, text: str, filename: str, namespace: str) -> dict[str, Any]:
    """The pipeline an uploaded file holds: a compiled one read as it is, a ``.py``
    one compiled through the API (``InvalidSpec`` naming ``file`` with its refusal)."""
    if not is_python(text, filename):
        return spec_from_text(text, filename)
    if len(text.encode()) > MAX_UPLOAD:
        raise InvalidSpec("the pipeline file is larger than 8 MiB", field="file")
    name = filename.rsplit("/", 1)[-1]
    answer = await page.api.call(
        "POST",
        f"{KFP}/pipelines:compile",
        json={
            "namespace": namespace,
            "filename": name if name.endswith(".py") else "pipeline.py",
            "source": text,
        },
    )
    if not answer.ok or not isinstance(answer.body, dict):
        raise InvalidSpec(answer.message, field="file")
    spec = answer.body.get("pipeline_spec")
    if not isinstance(spec, dict):
        raise InvalidSpec("the compiler answered no pipeline spec", field="file")
    platform = answer.body.get("platform_spec")
    if isinstance(platform, dict) and platform:
        return {"pipeline_spec": spec, "platform_spec": platform}
    return spec


async def _pipelines(page: Page) -> list[dict[str, Any]]:
    own, shared = await asyncio.gather(
        page.api.get(f"{KFP}/pipelines", namespace=page.namespace, page_size="200"),
        page.api.call("GET", f"{KFP}/pipelines", params={"page_size": "200"}),
    )
    pipelines = list(own.get("pipelines") or [])
    seen = {p.get("pipeline_id") for p in pipelines}
    if shared.ok and isinstance(shared.body, dict):
        pipelines += [
            p for p in shared.body.get("pipelines") or [] if p.get("pipeline_id") not in seen
        ]
    pipelines.sort(key=lambda p: p.get("created_at") or "", reverse=True)
    return pipelines


@router.get("/ui/pipelines")
@rule(in_namespace(_list_rule))
async def pipelines_page(request: Request) -> Response:
    """The namespace's pipelines and the shared ones, and the upload form."""
    async with Page(request, section="Pipelines") as page:
        if (moved := page.needs_namespace()) is not None:
            return moved
        return page.render(
            "pipelines.html",
            title="Pipelines",
            pipelines=await _pipelines(page),
            upload_url=page.link("/ui/pipelines"),
            hint=COMPILE_HINT,
            errors=[],
            values={},
        )


def _upload_form(page: Page, code: int, errors: list[dict[str, str]], **values: Any) -> Response:
    return render_html(
        "upload_form.html",
        code,
        **page.context(
            upload_url=values.pop("upload_url"), hint=COMPILE_HINT, errors=errors, values=values
        ),
    )


@router.post("/ui/pipelines")
@rule(in_namespace(_create_rule))
async def upload_pipeline(request: Request, body: dict[str, Any] = Body(...)) -> Response:
    """A new pipeline (in the page's namespace) with a first version, from a compiled
    pipeline's text (``{"name", "description", "file", "filename"}``)."""
    async with Page(request, section="Pipelines") as page:
        if (moved := page.needs_namespace()) is not None:
            return moved
        name = str(body.get("name") or "").strip()
        filename = str(body.get("filename") or "")
        values = {"name": name, "description": str(body.get("description") or "")}
        url = page.link("/ui/pipelines")
        try:
            spec = await spec_of(page, str(body.get("file") or ""), filename, page.namespace)
            if not name:
                name = filename.rsplit("/", 1)[-1].rsplit(".", 1)[0]
            if not name:
                raise InvalidSpec("give the pipeline a name", field="name")
        except InvalidSpec as exc:
            error = {"field": exc.field or "", "message": str(exc)}
            return _upload_form(page, 422, [error], upload_url=url, **values)
        answer = await page.api.call(
            "POST",
            f"{KFP}/pipelines/create",
            json={
                "pipeline": {
                    "name": name,
                    "display_name": name,
                    "description": values["description"],
                    "namespace": page.namespace,
                },
                "pipeline_version": {"name": name, "display_name": name, "pipeline_spec": spec},
            },
        )
        if not answer.ok:
            error = {"field": "file", "message": answer.message}
            return _upload_form(page, answer.status, [error], upload_url=url, **values)
        return send_to(request, page.link(f"/ui/pipelines/{answer.body.get('pipeline_id')}"))


@router.get("/ui/pipelines/{pipeline_id}")
@rule(by_id(Verb.GET, PIPELINES, "pipeline_id"))
async def pipeline_page(request: Request, pipeline_id: str) -> Response:
    """A pipeline's versions, and the upload of a new one."""
    async with Page(request, section="Pipelines", namespaced=False) as page:
        pipeline, versions = await asyncio.gather(
            page.api.get(f"{KFP}/pipelines/{pipeline_id}"),
            page.api.get(
                f"{KFP}/pipelines/{pipeline_id}/versions", page_size="200", sort_by=RECENT
            ),
        )
        if pipeline.get("namespace"):
            page.show_namespace(str(pipeline["namespace"]))
        return page.render(
            "pipeline.html",
            title=f"Pipeline {pipeline.get('display_name') or pipeline_id}",
            pipeline=pipeline,
            versions=versions.get("pipeline_versions") or [],
            upload_url=f"/ui/pipelines/{pipeline_id}/versions",
            hint=COMPILE_HINT,
            errors=[],
            values={},
        )


@router.post("/ui/pipelines/{pipeline_id}/versions")
@rule(by_id(Verb.CREATE, VERSIONS, "pipeline_id", of=PIPELINES))
async def upload_version(
    request: Request, pipeline_id: str, body: dict[str, Any] = Body(...)
) -> Response:
    """A new version of a pipeline from a compiled pipeline's text."""
    async with Page(request, section="Pipelines", namespaced=False) as page:
        name = str(body.get("name") or "").strip()
        values = {"name": name, "description": str(body.get("description") or "")}
        url = f"/ui/pipelines/{pipeline_id}/versions"
        pipeline = await page.api.get(f"{KFP}/pipelines/{pipeline_id}")
        try:
            spec = await spec_of(
                page,
                str(body.get("file") or ""),
                str(body.get("filename") or ""),
                str(pipeline.get("namespace") or ""),
            )
        except InvalidSpec as exc:
            error = {"field": exc.field or "", "message": str(exc)}
            return _upload_form(page, 422, [error], upload_url=url, **values)
        version: dict[str, Any] = {"pipeline_spec": spec, "description": values["description"]}
        if name:
            version.update(name=name, display_name=name)
        answer = await page.api.call(
            "POST", f"{KFP}/pipelines/{pipeline_id}/versions", json=version
        )
        if not answer.ok:
            error = {"field": "file", "message": answer.message}
            return _upload_form(page, answer.status, [error], upload_url=url, **values)
        made = answer.body.get("pipeline_version_id")
        return send_to(request, f"/ui/pipelines/{pipeline_id}/versions/{made}")


@router.get("/ui/pipelines/{pipeline_id}/versions/{version_id}")
@rule(by_id(Verb.GET, VERSIONS, "pipeline_id", of=PIPELINES, named="version_id"))
async def version_page(request: Request, pipeline_id: str, version_id: str) -> Response:
    """A pipeline version: its graph (the root DAG's tasks), its parameters, Run."""
    async with Page(request, section="Pipelines", namespaced=False) as page:
        pipeline, version = await asyncio.gather(
            page.api.get(f"{KFP}/pipelines/{pipeline_id}"),
            page.api.get(f"{KFP}/pipelines/{pipeline_id}/versions/{version_id}"),
        )
        if pipeline.get("namespace"):
            page.show_namespace(str(pipeline["namespace"]))
        spec = version.get("pipeline_spec") or {}
        if "root" not in spec and isinstance(spec.get("pipeline_spec"), dict):
            spec = spec["pipeline_spec"]
        return page.render(
            "version.html",
            title=f"Pipeline {pipeline.get('display_name')} · {version.get('display_name')}",
            pipeline=pipeline,
            version=version,
            graph=spec_graph(spec),
            params=parameters_of(spec),
            run_href=page.link("/ui/runs/new", pipeline=pipeline_id, version=version_id),
            recurring_href=page.link(
                "/ui/recurringruns/new", pipeline=pipeline_id, version=version_id
            ),
        )
