"""The Model Registry's pages, read and written through the registry's REST API as the
caller (what the ``model-registry`` client calls): a namespace's registered models
(found by name and state), a model's page with its versions, a version's page with its
artifacts (URI, format), custom properties (each with its type), lineage (the run and
task that produced it, and what that task read) and a form that deploys it as an
InferenceService (``storageUri: model-registry://<model>/<version>``, made through the
Kubernetes API). Editors archive and restore models and versions (``state`` by PATCH).

Each route's rule is the registry API's own for the same call
(:mod:`ketch.registry.access`); deploying also asks what creating the InferenceService
asks in the version's namespace.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from fastapi import APIRouter, Body, Request
from fastapi.responses import Response

from ketch.core.access import Attributes, Call, Rule, Verb, kubernetes_attributes, rule
from ketch.core.errors import InvalidSpec
from ketch.registry.access import attributes, by_id
from ketch.server.state import api_state
from ketch.ui.access import NS, in_namespace, may, namespace_in, resource_name
from ketch.ui.page import Page, is_htmx, problem_html, send_to

router = APIRouter(include_in_schema=False)
REGISTRY = "/api/model_registry/v1"
ISVC_GROUP, ISVC_VERSION, ISVC_PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"
ISVC_RESOURCE = f"{ISVC_PLURAL}.{ISVC_GROUP}"
STATES = ("LIVE", "ARCHIVED")
#: the model formats KServe's runtimes serve (the deploy form's choices)
FORMATS = ("sklearn", "xgboost", "lightgbm", "onnx", "pytorch", "tensorflow", "triton", "python")
_NAME = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
_SEARCH = re.compile(r"^[^'\"\\]{0,200}$")
MODEL, VERSION = "registered_model", "model_version"


def _isvc_path(namespace: str, name: str = "") -> str:
    base = f"/apis/{ISVC_GROUP}/{ISVC_VERSION}/namespaces/{namespace}/{ISVC_PLURAL}"
    return f"{base}/{name}" if name else base


# -- what a page shows of the registry's values ----------------------------------------------


def property_value(value: Any) -> tuple[str, str]:
    """A custom property's type and value, as text (``("string", "0.93")``)."""
    if not isinstance(value, dict):
        return "", str(value)
    kind = str(value.get("metadataType") or "")
    shown = kind.removeprefix("Metadata").removesuffix("Value").lower() or "?"
    for key in ("string_value", "int_value", "double_value", "bool_value", "struct_value"):
        if key in value:
            found = value[key]
            if isinstance(found, bool):
                return shown, "true" if found else "false"
            return shown, str(found)
    if "proto_value" in value:
        proto = value["proto_value"] or {}
        return shown, str(proto.get("type", "") if isinstance(proto, dict) else proto)
    return shown, ""


def properties(entity: dict[str, Any]) -> list[dict[str, str]]:
    """An entity's custom properties, by name: name, type and value."""
    found = entity.get("customProperties") or {}
    rows = []
    for name in sorted(found):
        kind, value = property_value(found[name])
        rows.append({"name": name, "type": kind, "value": value})
    return rows


def _search(text: str) -> str:
    """The filterQuery of the list's search (``name ILIKE '%text%'``)."""
    if not _SEARCH.fullmatch(text):
        raise InvalidSpec("may not hold quotes or backslashes", field="q")
    escaped = text.replace("%", "\\%").replace("_", "\\_")
    return f"name ILIKE '%{escaped}%'"


# -- rules ---------------------------------------------------------------------------------


def _deploy_rule(call: Call) -> list[Attributes]:
    """Reading the version, and creating an InferenceService in the namespace shown
    (``ns``, required)."""
    namespace = namespace_in(call)
    if namespace is None:
        raise InvalidSpec("name the namespace to deploy in", field=NS)
    made = kubernetes_attributes(Call("POST", _isvc_path(namespace), {}, {}))
    read = by_id(Verb.GET, VERSION)(call)
    return [*(read if isinstance(read, list) else [read]), made]


def _state_rule(kind: str) -> Rule:
    return by_id(Verb.PATCH, kind)


# -- pages -------------------------------------------------------------------------------


@router.get("/ui/models")
@rule(in_namespace(lambda ns: attributes(Verb.LIST, MODEL, ns)))
async def models_page(request: Request) -> Response:
    """The namespace's registered models, found by name (``q``) and ``state``."""
    async with Page(request, section="Models") as page:
        if (moved := page.needs_namespace()) is not None:
            return moved
        text = (request.query_params.get("q") or "").strip()
        state = (request.query_params.get("state") or "").strip().upper()
        if state and state not in STATES:
            raise InvalidSpec(f"{state!r} is not LIVE or ARCHIVED", field="state")
        filters = [_search(text)] if text else []
        if state:
            filters.append(f"state = '{state}'")
        found = await page.api.get(
            f"{REGISTRY}/registered_models",
            namespace=page.namespace,
            pageSize="200",
            orderBy="LAST_UPDATE_TIME",
            sortOrder="DESC",
            filterQuery=" AND ".join(filters),
        )
        models = [
            {**m, "href": page.link(f"/ui/models/{m.get('id', '')}")}
            for m in found.get("items") or []
        ]
        return page.render(
            "models.html",
            title="Models",
            models=models,
            q=text,
            state=state,
            states=STATES,
        )


def _may_patch(request: Request, kind: str, namespace: str, key: str) -> bool:
    if not namespace:
        return False
    return may(request, attributes(Verb.PATCH, kind, namespace, key))


@router.get("/ui/models/{id}")
@rule(by_id(Verb.GET, MODEL))
async def model_page(request: Request, id: str) -> Response:  # noqa: A002 - the API's name
    """A registered model: its fields, custom properties and versions (each with its
    artifacts), with archive or restore for editors."""
    async with Page(request, section="Models", namespaced=False) as page:
        model, versions = await asyncio.gather(
            page.api.get(f"{REGISTRY}/registered_models/{id}"),
            page.api.get(
                f"{REGISTRY}/registered_models/{id}/versions",
                pageSize="200",
                orderBy="CREATE_TIME",
                sortOrder="DESC",
            ),
        )
        items = list(versions.get("items") or [])
        artifacts = await asyncio.gather(
            *(
                page.api.get(f"{REGISTRY}/model_versions/{v['id']}/artifacts", pageSize="50")
                for v in items
            )
        )
        rows = []
        for version, found in zip(items, artifacts, strict=True):
            rows.append(
                {
                    **version,
                    "href": page.link(f"/ui/model-versions/{version['id']}"),
                    "artifacts": found.get("items") or [],
                    "properties": properties(version),
                }
            )
        editable = _may_patch(request, MODEL, page.namespace, id)
        return page.render(
            "model.html",
            title=f"Model {model.get('name', id)}",
            model=model,
            properties=properties(model),
            versions=rows,
            editable=editable,
            version_editable=editable and _may_patch(request, VERSION, page.namespace, id),
            state_url=page.link(f"/ui/models/{id}/state"),
            list_href=page.link("/ui/models"),
        )


def _origin_href(page: Page, origin: dict[str, Any]) -> str:
    """The page of what produced an artifact: a run's, else the object's."""
    kind, name = str(origin.get("kind") or ""), str(origin.get("name") or "")
    if not name:
        return ""
    if kind == "PipelineRun":
        return f"/ui/runs/{name}"
    for served in api_state(page.request).kinds:
        if served.kind == kind and "get" in served.verbs:
            namespace = str(origin.get("namespace") or page.namespace)
            return f"/ui/k/{resource_name(served)}/{name}?ns={namespace}"
    return ""


def lineage_rows(page: Page, lineage: dict[str, Any]) -> list[dict[str, Any]]:
    """Each artifact of a version's lineage: what produced it (with a link) and what
    that read."""
    rows = []
    for entry in lineage.get("artifacts") or []:
        origin = entry.get("producedBy") or None
        if isinstance(origin, dict):
            origin = {**origin, "href": _origin_href(page, origin)}
            params = origin.get("parameters") or {}
            origin["parameter_list"] = [(k, params[k]) for k in sorted(params)]
        inputs = []
        for read in entry.get("inputs") or []:
            run = str(read.get("runId") or "")
            inputs.append({**read, "href": f"/ui/runs/{run}" if run else ""})
        rows.append({"artifact": entry.get("artifact") or {}, "origin": origin, "inputs": inputs})
    return rows


@router.get("/ui/model-versions/{id}")
@rule(by_id(Verb.GET, VERSION))
async def version_page(request: Request, id: str) -> Response:  # noqa: A002
    """A model version: its artifacts, custom properties and lineage, archive or
    restore, and a form deploying it as an InferenceService."""
    async with Page(request, section="Models", namespaced=False) as page:
        version, artifacts, lineage = await asyncio.gather(
            page.api.get(f"{REGISTRY}/model_versions/{id}"),
            page.api.get(f"{REGISTRY}/model_versions/{id}/artifacts", pageSize="50"),
            page.api.get(f"{REGISTRY}/model_versions/{id}/lineage"),
        )
        model = await page.api.get(f"{REGISTRY}/registered_models/{version['registeredModelId']}")
        items = list(artifacts.get("items") or [])
        model_format = next(
            (str(a["modelFormatName"]) for a in items if a.get("modelFormatName")), ""
        )
        may_deploy = bool(page.namespace) and may(
            request, kubernetes_attributes(Call("POST", _isvc_path(page.namespace), {}, {}))
        )
        suggested = re.sub(
            r"[^a-z0-9-]+", "-", f"{model.get('name', '')}-{version['name']}".lower()
        )
        return page.render(
            "model_version.html",
            title=f"Model {model.get('name', '')} version {version.get('name', id)}",
            model=model,
            version=version,
            artifacts=items,
            properties=properties(version),
            lineage=lineage_rows(page, lineage),
            editable=_may_patch(request, VERSION, page.namespace, id),
            state_url=page.link(f"/ui/model-versions/{id}/state"),
            model_href=page.link(f"/ui/models/{model.get('id', '')}"),
            list_href=page.link("/ui/models"),
            may_deploy=may_deploy,
            deploy_url=page.link(f"/ui/model-versions/{id}/deploy"),
            suggested=suggested.strip("-")[:63].strip("-") or "model",
            model_format=model_format,
            formats=sorted({*FORMATS, *([model_format] if model_format else [])}),
            storage_uri=f"model-registry://{model.get('name', '')}/{version.get('name', '')}",
        )


# -- writes ------------------------------------------------------------------------------


def _state_of(body: dict[str, Any]) -> str:
    state = str(body.get("state") or "").strip().upper()
    if state not in STATES:
        raise InvalidSpec(f"{state or '(none)'!r} is not LIVE or ARCHIVED", field="state")
    return state


async def _set_state(request: Request, collection: str, key: str, state: str) -> Response:
    async with Page(request, namespaced=False) as page:
        answer = await page.api.call(
            "PATCH", f"{REGISTRY}/{collection}/{key}", json={"state": state}
        )
        if not answer.ok:
            return problem_html(answer.status, answer.message)
        return _reload(request)


@router.patch("/ui/models/{id}/state")
@rule(_state_rule(MODEL))
async def model_state(
    request: Request,
    id: str,  # noqa: A002
    body: dict[str, Any] = Body(...),
) -> Response:
    """Archive (``ARCHIVED``) or restore (``LIVE``) a registered model."""
    return await _set_state(request, "registered_models", id, _state_of(body))


@router.patch("/ui/model-versions/{id}/state")
@rule(_state_rule(VERSION))
async def version_state(
    request: Request,
    id: str,  # noqa: A002
    body: dict[str, Any] = Body(...),
) -> Response:
    """Archive (``ARCHIVED``) or restore (``LIVE``) a model version."""
    return await _set_state(request, "model_versions", id, _state_of(body))


def _deploy_fields(body: dict[str, Any]) -> tuple[str, str, str]:
    name = str(body.get("name") or "").strip()
    if not _NAME.fullmatch(name):
        raise InvalidSpec(
            "must be a DNS label: lower-case letters, digits and '-', starting with a letter",
            field="name",
        )
    model_format = str(body.get("format") or "").strip()
    if not re.fullmatch(r"[a-z0-9][-a-z0-9_.]{0,62}", model_format):
        raise InvalidSpec("name the model's format (sklearn, onnx, ...)", field="format")
    runtime = str(body.get("runtime") or "").strip()
    if runtime and not _NAME.fullmatch(runtime):
        raise InvalidSpec("must name a serving runtime (a DNS label)", field="runtime")
    return name, model_format, runtime


@router.post("/ui/model-versions/{id}/deploy")
@rule(_deploy_rule)
async def deploy(
    request: Request,
    id: str,  # noqa: A002
    body: dict[str, Any] = Body(...),
) -> Response:
    """Deploy the version as an InferenceService in its namespace, serving
    ``model-registry://<model>/<version>``; the browser goes to its page."""
    name, model_format, runtime = _deploy_fields(body)
    async with Page(request) as page:
        namespace = page.namespace
        version = await page.api.get(f"{REGISTRY}/model_versions/{id}")
        model = await page.api.get(f"{REGISTRY}/registered_models/{version['registeredModelId']}")
        spec: dict[str, Any] = {
            "modelFormat": {"name": model_format},
            "storageUri": f"model-registry://{model['name']}/{version['name']}",
        }
        if runtime:
            spec["runtime"] = runtime
        manifest = {
            "apiVersion": f"{ISVC_GROUP}/{ISVC_VERSION}",
            "kind": "InferenceService",
            "metadata": {
                "name": name,
                "namespace": namespace,
            },
            "spec": {"predictor": {"model": spec}},
        }
        answer = await page.api.call("POST", _isvc_path(namespace), json=manifest)
        if not answer.ok:
            return problem_html(answer.status, answer.message)
        target = f"/ui/k/{ISVC_RESOURCE}/{name}?ns={namespace}"
        return send_to(request, target)


def _reload(request: Request) -> Response:
    """The page that asked is shown again (htmx: ``HX-Refresh``)."""
    if is_htmx(request):
        return Response(status_code=200, headers={"HX-Refresh": "true"})
    return Response(status_code=204)
