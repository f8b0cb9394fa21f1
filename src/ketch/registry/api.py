"""Kubeflow's Model Registry REST API, under ``/api/model_registry/v1`` (what the
``model-registry`` client calls) and ``/api/model_registry/v1alpha3`` (the published
OpenAPI; its answers say it is deprecated, as upstream's do), from the same handlers.

For each collection (``registered_models``, ``model_versions``, ``model_artifacts``,
``artifacts``, ``serving_environments``, ``inference_services``, ``experiments``,
``experiment_runs``): ``GET``/``POST /X``, ``GET``/``PATCH /X/{id}`` and the find route
``GET /x?name=&externalId=&parentResourceId=`` (404 on a miss), plus the nested routes.
There is no DELETE: an entity is archived by its ``state``. Errors answer
``{code, message}``. Ketch adds ``GET /model_versions/{id}/lineage``: what made the
version's artifacts (:mod:`ketch.registry.lineage`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from fastapi.routing import APIRoute

from ketch.core.access import AUTHENTICATED, Verb, rule
from ketch.core.errors import InvalidSpec, KetchError, NotFound
from ketch.core.services import context_of
from ketch.registry import access
from ketch.registry.access import by_id, checked_in_handler, namespace_for
from ketch.registry.entities import (
    ARTIFACT,
    EXPERIMENT,
    EXPERIMENT_RUN,
    INFERENCE_SERVICE,
    MODEL_ARTIFACT,
    MODEL_VERSION,
    REGISTERED_MODEL,
    SERVE_MODEL,
    SERVING_ENVIRONMENT,
    Kind,
    entity_id,
    fields_of,
)
from ketch.registry.service import RegistryService
from ketch.registry.store import ListQuery, Registry

V1 = "/api/model_registry/v1"
V1ALPHA3 = "/api/model_registry/v1alpha3"
PREFIXES = (V1, V1ALPHA3)
_SUNSET = "Thu, 29 Apr 2027 00:00:00 GMT"


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def answer(obj: Any, status: int = 200) -> Response:
    return Response(dumps(obj), status_code=status, media_type="application/json")


def error_body(status: int, message: str) -> Response:
    """The Model Registry's error body: ``{code, message}`` (``code`` a string)."""
    return answer({"code": str(status), "message": message}, status)


class RegistryRoute(APIRoute):
    """A route whose errors answer ``{code, message}`` and whose v1alpha3 answers carry
    the ``Deprecation`` headers."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        old = self.path.startswith(V1ALPHA3)

        async def handle(request: Request) -> Response:
            try:
                response = await handler(request)
            except KetchError as exc:
                text = str(exc)
                hint = getattr(exc, "hint", None)
                response = error_body(exc.http_status, f"{text} ({hint})" if hint else text)
            except RequestValidationError as exc:
                first = exc.errors()[0] if exc.errors() else {}
                where = ".".join(str(p) for p in first.get("loc", ())[1:]) or "request"
                response = error_body(400, f"{where}: {first.get('msg', 'is not valid')}")
            if old:
                response.headers["Deprecation"] = "true"
                response.headers["Sunset"] = _SUNSET
                response.headers["Link"] = f'<{V1}>; rel="successor-version"'
            return response

        return handle


router = APIRouter(tags=["model registry"], route_class=RegistryRoute)


def service_of(request: Request) -> RegistryService:
    """The app's registry service (one made for the request when the app runs none)."""
    context = context_of(request)
    return context.services.find(RegistryService) or RegistryService(context)


def registry_of(request: Request) -> Registry:
    return service_of(request).registry


async def body_of(request: Request) -> Any:
    raw = await request.body()
    try:
        return json.loads(raw or b"{}")
    except ValueError:
        raise InvalidSpec("the body is not JSON", field="body") from None


def list_query(
    pageSize: int | None = None,  # noqa: N803 - the API's names
    orderBy: str | None = None,  # noqa: N803
    sortOrder: str | None = None,  # noqa: N803
    nextPageToken: str | None = None,  # noqa: N803
    filterQuery: str | None = None,  # noqa: N803
) -> ListQuery:
    return ListQuery(pageSize, orderBy, sortOrder, nextPageToken, filterQuery)


def _parent(value: str | None) -> int | None:
    return entity_id(value, "parentResourceId") if value else None


# -- the generic routes of each collection ---------------------------------------------


def _collection(path: str, singular: str, kind: Kind, subtype: str = "") -> None:
    @rule(checked_in_handler)
    async def list_all(request: Request, artifactType: str | None = None) -> Response:  # noqa: N803
        namespace = namespace_for(request, Verb.LIST, kind.kind)
        query = list_query(**_paging(request))
        found = registry_of(request).page(
            namespace, kind, query, subtype=subtype or (artifactType or "")
        )
        return answer(found)

    @rule(checked_in_handler)
    async def create(request: Request) -> Response:
        namespace = namespace_for(request, Verb.CREATE, kind.kind)
        fields = fields_of(kind, await body_of(request), create=True, subtype=subtype)
        return answer(registry_of(request).create(namespace, kind, fields), 201)

    @rule(by_id(Verb.GET, kind.kind))
    async def get(id: str, request: Request) -> Response:  # noqa: A002 - the API's name
        namespace = access.namespace_of(request.app.state.api.database, id, kind.kind)
        return answer(registry_of(request).get(namespace, kind, entity_id(id, "id"), subtype))

    @rule(by_id(Verb.PATCH, kind.kind))
    async def patch(id: str, request: Request) -> Response:  # noqa: A002
        namespace = access.namespace_of(request.app.state.api.database, id, kind.kind)
        fields = fields_of(kind, await body_of(request), create=False, subtype=subtype)
        found = registry_of(request).update(namespace, kind, entity_id(id, "id"), fields, subtype)
        return answer(found)

    @rule(checked_in_handler)
    async def find(
        request: Request,
        name: str | None = None,
        externalId: str | None = None,  # noqa: N803
        parentResourceId: str | None = None,  # noqa: N803
        artifactType: str | None = None,  # noqa: N803
    ) -> Response:
        namespace = namespace_for(request, Verb.GET, kind.kind)
        found = registry_of(request).find(
            namespace,
            kind,
            name=name,
            external_id=externalId,
            parent_id=_parent(parentResourceId),
            subtype=subtype or (artifactType or ""),
        )
        return answer(found)

    what = kind.what if not subtype else "model artifact"
    for prefix in PREFIXES:
        router.add_api_route(f"{prefix}/{path}", list_all, methods=["GET"], summary=f"List {what}s")
        router.add_api_route(
            f"{prefix}/{path}", create, methods=["POST"], summary=f"Create a {what}"
        )
        router.add_api_route(
            f"{prefix}/{singular}", find, methods=["GET"], summary=f"Find a {what}"
        )
        router.add_api_route(
            f"{prefix}/{path}/{{id}}", get, methods=["GET"], summary=f"Get a {what}"
        )
        router.add_api_route(
            f"{prefix}/{path}/{{id}}", patch, methods=["PATCH"], summary=f"Update a {what}"
        )


def _paging(request: Request) -> dict[str, Any]:
    q = request.query_params
    size = q.get("pageSize")
    if size is not None and not size.strip().isdigit():
        raise InvalidSpec(f"pageSize must be a number, not {size!r}", field="pageSize")
    return {
        "pageSize": int(size) if size is not None else None,
        "orderBy": q.get("orderBy") or None,
        "sortOrder": q.get("sortOrder") or None,
        "nextPageToken": q.get("nextPageToken") or None,
        "filterQuery": q.get("filterQuery") or None,
    }


# -- nested routes: an entity's children -----------------------------------------------


def _children(path: str, parent: Kind, child: Kind, *, upsert: bool = False) -> None:
    """``GET``/``POST /{parent collection}/{id}/{path}``: the children of one entity."""

    @rule(by_id(Verb.LIST, child.kind, of=parent.kind))
    async def list_children(
        id: str,  # noqa: A002
        request: Request,
        artifactType: str | None = None,  # noqa: N803
    ) -> Response:
        namespace = access.namespace_of(request.app.state.api.database, id, parent.kind)
        query = list_query(**_paging(request))
        found = registry_of(request).page(
            namespace,
            child,
            query,
            parent_id=entity_id(id, "id"),
            subtype=artifactType or "",
        )
        return answer(found)

    @rule(by_id(Verb.CREATE, child.kind, of=parent.kind))
    async def create_child(id: str, request: Request) -> Response:  # noqa: A002
        namespace = access.namespace_of(request.app.state.api.database, id, parent.kind)
        body = await body_of(request)
        registry = registry_of(request)
        key = entity_id(id, "id")
        if upsert:
            fields = fields_of(child, body, create=True)
            given = body.get("id") if isinstance(body, dict) else None
            found = registry.upsert_child(
                namespace, child, key, fields, entity_id(given, "id") if given else None
            )
            return answer(found, 200)
        if isinstance(body, dict) and child.parent and body.get(child.parent) is None:
            body = {**body, child.parent: id}
        fields = fields_of(child, body, create=True)
        return answer(registry.create(namespace, child, fields, parent_id=key), 201)

    for prefix in PREFIXES:
        base = f"{prefix}/{parent.collection}/{{id}}/{path}"
        router.add_api_route(
            base, list_children, methods=["GET"], summary=f"List a {parent.what}'s {path}"
        )
        router.add_api_route(
            base, create_child, methods=["POST"], summary=f"Add to a {parent.what}'s {path}"
        )


@rule(checked_in_handler)
async def all_metric_history(
    request: Request,
    name: str | None = None,
    stepIds: str | None = None,  # noqa: N803
) -> Response:
    namespace = namespace_for(request, Verb.LIST, EXPERIMENT_RUN.kind)
    found = registry_of(request).metric_history(
        namespace, None, name=name, steps=_steps(stepIds), query=list_query(**_paging(request))
    )
    return answer(found)


@rule(by_id(Verb.GET, EXPERIMENT_RUN.kind))
async def metric_history(
    id: str,  # noqa: A002
    request: Request,
    name: str | None = None,
    stepIds: str | None = None,  # noqa: N803
) -> Response:
    namespace = access.namespace_of(request.app.state.api.database, id, EXPERIMENT_RUN.kind)
    found = registry_of(request).metric_history(
        namespace,
        [entity_id(id, "id")],
        name=name,
        steps=_steps(stepIds),
        query=list_query(**_paging(request)),
    )
    return answer(found)


def _steps(text: str | None) -> list[int] | None:
    if not text:
        return None
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if len(parts) > 1000 or not all(p.isdigit() for p in parts):
        raise InvalidSpec("stepIds must be a comma-separated list of steps", field="stepIds")
    return [int(p) for p in parts]


@rule(by_id(Verb.GET, REGISTERED_MODEL.kind, of=INFERENCE_SERVICE.kind))
async def served_model(id: str, request: Request) -> Response:  # noqa: A002
    namespace = access.namespace_of(request.app.state.api.database, id, INFERENCE_SERVICE.kind)
    registry = registry_of(request)
    service = registry.get(namespace, INFERENCE_SERVICE, entity_id(id, "id"))
    key = entity_id(service["registeredModelId"], "registeredModelId")
    return answer(registry.get(namespace, REGISTERED_MODEL, key))


@rule(by_id(Verb.GET, MODEL_VERSION.kind, of=INFERENCE_SERVICE.kind))
async def served_version(id: str, request: Request) -> Response:  # noqa: A002
    namespace = access.namespace_of(request.app.state.api.database, id, INFERENCE_SERVICE.kind)
    registry = registry_of(request)
    service = registry.get(namespace, INFERENCE_SERVICE, entity_id(id, "id"))
    if service.get("modelVersionId"):
        key = entity_id(service["modelVersionId"], "modelVersionId")
        return answer(registry.get(namespace, MODEL_VERSION, key))
    # no version named: the latest LIVE version of the model serves
    model = entity_id(service["registeredModelId"], "registeredModelId")
    found = registry.page(
        namespace,
        MODEL_VERSION,
        ListQuery(1, "ID", "DESC", None, "state = 'LIVE'"),
        parent_id=model,
    )
    if not found["items"]:
        raise NotFound(f"registered model {model} has no LIVE version to serve")
    return answer(found["items"][0])


@rule(by_id(Verb.GET, MODEL_VERSION.kind))
async def version_lineage(id: str, request: Request) -> Response:  # noqa: A002
    namespace = access.namespace_of(request.app.state.api.database, id, MODEL_VERSION.kind)
    service = service_of(request)
    return answer(service.lineage(namespace, entity_id(id, "id")))


@rule(AUTHENTICATED)
async def openapi_document(request: Request) -> Response:
    """The registry's own OpenAPI document (its routes under this prefix)."""
    prefix = V1ALPHA3 if request.url.path.startswith(V1ALPHA3) else V1
    routes = [
        r for r in router.routes if isinstance(r, APIRoute) and r.path.startswith(prefix + "/")
    ]
    document = get_openapi(
        title="Model Registry REST API (Ketch)",
        version=prefix.rsplit("/", 1)[-1],
        routes=routes,
    )
    return answer(document)


def _assemble() -> None:
    # fixed paths before the {id} routes that would take them
    for prefix in PREFIXES:
        router.add_api_route(
            f"{prefix}/experiment_runs/metric_history",
            all_metric_history,
            methods=["GET"],
            summary="List the metric history of experiment runs",
        )
        router.add_api_route(
            f"{prefix}/openapi.json", openapi_document, methods=["GET"], include_in_schema=False
        )
    _collection("registered_models", "registered_model", REGISTERED_MODEL)
    _collection("model_versions", "model_version", MODEL_VERSION)
    _collection("model_artifacts", "model_artifact", ARTIFACT, MODEL_ARTIFACT)
    _collection("artifacts", "artifact", ARTIFACT)
    _collection("serving_environments", "serving_environment", SERVING_ENVIRONMENT)
    _collection("inference_services", "inference_service", INFERENCE_SERVICE)
    _collection("experiments", "experiment", EXPERIMENT)
    _collection("experiment_runs", "experiment_run", EXPERIMENT_RUN)
    _children("versions", REGISTERED_MODEL, MODEL_VERSION)
    _children("artifacts", MODEL_VERSION, ARTIFACT, upsert=True)
    _children("inference_services", SERVING_ENVIRONMENT, INFERENCE_SERVICE)
    _children("serves", INFERENCE_SERVICE, SERVE_MODEL)
    _children("experiment_runs", EXPERIMENT, EXPERIMENT_RUN)
    _children("artifacts", EXPERIMENT_RUN, ARTIFACT, upsert=True)
    for prefix in PREFIXES:
        for path, endpoint in (
            (f"{prefix}/experiment_runs/{{id}}/metric_history", metric_history),
            (f"{prefix}/inference_services/{{id}}/model", served_model),
            (f"{prefix}/inference_services/{{id}}/version", served_version),
            (f"{prefix}/model_versions/{{id}}/lineage", version_lineage),
        ):
            router.add_api_route(path, endpoint, methods=["GET"])


_assemble()
