"""The Kubernetes-style resource API.

::

    GET    /apis/{group}/{version}/{plural}                       list in all namespaces
    GET    /apis/{group}/{version}/namespaces/{ns}/{plural}       list (labelSelector, limit, continue)
    POST   /apis/{group}/{version}/namespaces/{ns}/{plural}       create
    GET    /apis/{group}/{version}/namespaces/{ns}/{plural}/{name}
    PUT    /apis/{group}/{version}/namespaces/{ns}/{plural}/{name}        apply
    PATCH  /apis/{group}/{version}/namespaces/{ns}/{plural}/{name}        merge patch
    DELETE /apis/{group}/{version}/namespaces/{ns}/{plural}/{name}
    GET    /apis/{group}/{version}/namespaces/{ns}/{plural}/{name}/status
    PUT    /apis/{group}/{version}/namespaces/{ns}/{plural}/{name}/status
    GET    /apis/{group}/{version}/watch/namespaces/{ns}/{plural}  watch (also ?watch=true on lists)
    GET    /apis/{group}/{version}/watch/{plural}                  watch in all namespaces

Discovery (``/apis``, ``/apis/{group}/{version}``, ...) is :mod:`ketch.server.discovery`'s.
A watch streams Kubernetes watch events, one JSON object per line (``{"type": "ADDED"|
"MODIFIED"|"DELETED"|"BOOKMARK"|"ERROR", "object": {...}}``; server-sent events for a
client that asks ``text/event-stream``), with ``resourceVersion``, ``fieldSelector``,
``allowWatchBookmarks`` and ``timeoutSeconds`` as Kubernetes reads them: see
:mod:`ketch.server.watch`. A list answers the store's revision as its
``metadata.resourceVersion``, where a watch of it may start. PUT answers 201 when it
created the object and 200 otherwise, with ``X-Ketch-Apply: created|configured|unchanged``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from ketch.core.access import KUBERNETES, rule
from ketch.core.errors import InvalidSpec, NotFound
from ketch.core.kinds import Kind
from ketch.core.resource import Resource, validate_namespace, validate_object_name
from ketch.core.routes import request_body
from ketch.core.sources import Page
from ketch.server import fieldmanager, fieldselectors, patches, tables, visibility, writes
from ketch.server.bodies import (
    MANIFEST_SCHEMA,
    STATUS_SCHEMA,
    patch_body,
    read_document,
    require_mapping,
)
from ketch.server.errors import STATUS_RESPONSES
from ketch.server.state import ApiState, api_state
from ketch.server.watch import is_watch, respond
from ketch.server.writes import (
    APPLY_HEADER,
    CLUSTER_NAMESPACE,
    Writer,
    answer,
    conflict_response,
    create_document,
    served,
    write_options,
)

router = APIRouter(responses=STATUS_RESPONSES)

State = Annotated[ApiState, Depends(api_state)]
LabelSelectorQ = Annotated[str | None, Query(alias="labelSelector", description="a=b,c!=d,e,!f")]
LimitQ = Annotated[int | None, Query(ge=1, le=100_000, description="Page size")]
ContinueQ = Annotated[str | None, Query(alias="continue", description="Token of the next page")]
TimeoutQ = Annotated[
    float | None, Query(alias="timeoutSeconds", gt=0, le=86_400, description="End a watch after")
]
# Documented on the watch paths; the watch reads them from the query (ketch.server.watch).
FieldSelectorQ = Annotated[
    str | None,
    Query(alias="fieldSelector", description="metadata.name=x,metadata.namespace!=y"),
]
ResourceVersionQ = Annotated[
    str | None,
    Query(alias="resourceVersion", description="Send the changes after this version"),
]
BookmarksQ = Annotated[
    str | None,
    Query(alias="allowWatchBookmarks", description="Send BOOKMARK events (true or false)"),
]


# -- lists and watches ----------------------------------------------------------


def _namespace(namespace: str) -> str:
    return validate_namespace(namespace, field="namespace")


def _name(name: str, kind: Kind) -> str:
    return validate_object_name(name, kind.group, field="name")


@dataclass(frozen=True)
class ObjectPath:
    """The kind, namespace and name of an object's URL, checked."""

    kind: Kind
    namespace: str
    name: str


def _namespaced_kind(state: ApiState, group: str, version: str, plural: str) -> Kind:
    """The kind at a namespaced path (404 for a cluster-scoped one)."""
    kind = state.kinds.for_path(group, version, plural)
    if not kind.namespaced:
        raise NotFound(
            f"{kind.plural}.{kind.group} is cluster-scoped: its objects have no namespace; "
            f"they are at /apis/{group}/{version}/{plural}"
        )
    return kind


def _cluster_kind(state: ApiState, group: str, version: str, plural: str) -> Kind:
    """The kind at a cluster-scoped object's path (404 for a namespaced one)."""
    kind = state.kinds.for_path(group, version, plural)
    if kind.namespaced:
        raise NotFound(
            f"{kind.plural}.{kind.group} is namespaced: its objects are at "
            f"/apis/{group}/{version}/namespaces/{{namespace}}/{plural}/{{name}}"
        )
    return kind


def _everywhere(state: ApiState, group: str, version: str, plural: str) -> tuple[Kind, str | None]:
    """The kind at a path that lists or watches it in every namespace, and the
    namespace of the store to read (``None``: all; a cluster-scoped kind's objects are
    kept in one)."""
    kind = state.kinds.for_path(group, version, plural)
    return kind, None if kind.namespaced else CLUSTER_NAMESPACE


async def _object_path(
    group: str, version: str, namespace: str, plural: str, name: str, state: State
) -> ObjectPath:
    kind = _namespaced_kind(state, group, version, plural)
    return ObjectPath(kind, _namespace(namespace), _name(name, kind))


async def _cluster_object_path(
    group: str, version: str, plural: str, name: str, state: State
) -> ObjectPath:
    kind = _cluster_kind(state, group, version, plural)
    return ObjectPath(kind, CLUSTER_NAMESPACE, _name(name, kind))


Target = Annotated[ObjectPath, Depends(_object_path)]
ClusterTarget = Annotated[ObjectPath, Depends(_cluster_object_path)]


@functools.cache
def _has_phase(kind: Kind) -> bool:
    """Whether ``kind``'s published schema has ``status.phase``."""
    if kind.object_schema is None:
        return False
    status = kind.object_schema().get("status") or {}
    return "phase" in (status.get("properties") or {})


def selectable_fields(kind: Kind) -> tuple[str, ...]:
    """The fields a ``fieldSelector`` may name for ``kind``: ``metadata.name`` and
    ``metadata.namespace``, and ``status.phase`` where the kind has one."""
    if _has_phase(kind):
        return (*fieldselectors.OBJECT_FIELDS, "status.phase")
    return fieldselectors.OBJECT_FIELDS


def _page(
    state: ApiState,
    kind: Kind,
    namespace: str | None,
    label_selector: str | None,
    limit: int | None,
    continue_token: str | None,
    fields: fieldselectors.FieldSelector,
    visible: visibility.Visible | None = None,
) -> Any:
    """One page of the list, filtered by ``fields`` and to what the caller may see
    (``visible``): as many source pages as it takes to fill ``limit``, the continue
    token the last one read."""
    source = state.source(kind)
    wanted_ns = fields.equal("metadata.namespace")
    if wanted_ns is not None and kind.namespaced:
        if namespace is not None and namespace != wanted_ns:
            return Page([])
        namespace = wanted_ns
    page = source.list(
        kind, namespace, label_selector=label_selector, limit=limit, continue_token=continue_token
    )
    if not fields and visible is None:
        return page

    def shown(item: Any) -> bool:
        if visible is not None and not visible(item):
            return False
        return not fields or fieldselectors.matches(fields, served(kind, item))

    items = [i for i in page.items if shown(i)]
    while page.continue_token and limit is not None and len(items) < limit:
        page = source.list(
            kind,
            namespace,
            label_selector=label_selector,
            limit=limit - len(items),
            continue_token=page.continue_token,
        )
        items += [i for i in page.items if shown(i)]
    page.items = items
    return page


async def _list(
    state: ApiState,
    request: Request,
    kind: Kind,
    namespace: str | None,
    label_selector: str | None,
    limit: int | None,
    continue_token: str | None,
    timeout: float | None,
    visible: visibility.Visible | None = None,
    nothing: bool = False,
) -> Any:
    """A list or watch; ``visible`` and ``nothing``: what the caller may see of a list
    across namespaces (:func:`ketch.server.visibility.narrowed`)."""
    if is_watch(request):
        return _watch_response(state, request, kind, namespace, label_selector, timeout, visible)
    fields = fieldselectors.parse(
        request.query_params.get("fieldSelector"), selectable_fields(kind)
    )
    if nothing:  # no namespace the caller may read: nothing to read
        page = Page([])
    else:
        page = await run_in_threadpool(
            _page, state, kind, namespace, label_selector, limit, continue_token, fields, visible
        )
    page.items = [served(kind, item) for item in page.items]
    version = page.resource_version
    if version is None:  # a source without revisions of its own: the store's
        version = str(await run_in_threadpool(state.store.revision))
    metadata: dict[str, Any] = {"resourceVersion": version}
    if page.continue_token:
        metadata["continue"] = page.continue_token
    return tables.list_response(kind, page.items, metadata, request)


def _watch_response(
    state: ApiState,
    request: Request,
    kind: Kind,
    namespace: str | None,
    label_selector: str | None,
    timeout: float | None,
    visible: visibility.Visible | None = None,
) -> StreamingResponse:
    """A Kubernetes watch stream (server-sent events when the client asks for them);
    see :mod:`ketch.server.watch`. Its objects are served as a list's are (a
    cluster-scoped one without its namespace), and its field selectors are a list's;
    ``visible``: which objects the caller may see."""
    return respond(
        request,
        state.source(kind),
        kind,
        namespace,
        notifier=state.notifier,
        stopping=state.stopping,
        label_selector=label_selector,
        timeout=timeout,
        fields=selectable_fields(kind),
        present=functools.partial(served, kind),
        visible=visible,
    )


@router.get(
    "/apis/{group}/{version}/{plural}",
    tags=["resources"],
    summary="List a kind in all namespaces (add watch=true to stream changes)",
)
@rule(KUBERNETES)
async def list_all(
    group: str,
    version: str,
    plural: str,
    request: Request,
    state: State,
    label_selector: LabelSelectorQ = None,
    limit: LimitQ = None,
    continue_token: ContinueQ = None,
    timeout: TimeoutQ = None,
) -> Any:
    kind, namespace = _everywhere(state, group, version, plural)
    namespace, visible, nothing = visibility.for_request(request, kind, namespace)
    return await _list(
        state,
        request,
        kind,
        namespace,
        label_selector,
        limit,
        continue_token,
        timeout,
        visible,
        nothing,
    )


@router.get(
    "/apis/{group}/{version}/namespaces/{namespace}/{plural}",
    tags=["resources"],
    summary="List a kind in a namespace (add watch=true to stream changes)",
)
@rule(KUBERNETES)
async def list_namespaced(
    group: str,
    version: str,
    namespace: str,
    plural: str,
    request: Request,
    state: State,
    label_selector: LabelSelectorQ = None,
    limit: LimitQ = None,
    continue_token: ContinueQ = None,
    timeout: TimeoutQ = None,
) -> Any:
    kind = _namespaced_kind(state, group, version, plural)
    return await _list(
        state, request, kind, _namespace(namespace), label_selector, limit, continue_token, timeout
    )


@router.get(
    "/apis/{group}/{version}/watch/{plural}",
    tags=["watch"],
    summary="Watch a kind in all namespaces (newline-delimited JSON watch events)",
    response_class=StreamingResponse,
)
@rule(KUBERNETES)
async def watch_all(
    group: str,
    version: str,
    plural: str,
    request: Request,
    state: State,
    label_selector: LabelSelectorQ = None,
    field_selector: FieldSelectorQ = None,
    resource_version: ResourceVersionQ = None,
    bookmarks: BookmarksQ = None,
    timeout: TimeoutQ = None,
) -> StreamingResponse:
    kind, namespace = _everywhere(state, group, version, plural)
    namespace, visible, _nothing = visibility.for_request(request, kind, namespace)
    return _watch_response(state, request, kind, namespace, label_selector, timeout, visible)


@router.get(
    "/apis/{group}/{version}/watch/namespaces/{namespace}/{plural}",
    tags=["watch"],
    summary="Watch a kind in a namespace (newline-delimited JSON watch events)",
    response_class=StreamingResponse,
)
@rule(KUBERNETES)
async def watch_namespaced(
    group: str,
    version: str,
    namespace: str,
    plural: str,
    request: Request,
    state: State,
    label_selector: LabelSelectorQ = None,
    field_selector: FieldSelectorQ = None,
    resource_version: ResourceVersionQ = None,
    bookmarks: BookmarksQ = None,
    timeout: TimeoutQ = None,
) -> StreamingResponse:
    kind = _namespaced_kind(state, group, version, plural)
    return _watch_response(state, request, kind, _namespace(namespace), label_selector, timeout)


# -- create, read, replace, patch, delete ---------------------------------------------


def _writer(state: ApiState, kind: Kind) -> Writer:
    return Writer(
        kind,
        state.source(kind),
        lambda resource: state.validate(kind, resource),
        lambda namespace, name: state.changed(kind, namespace, name),
        state.schemas,
        lambda resource: state.admit_create(kind, resource),
    )


async def _create(kind: Kind, namespace: str, request: Request, state: ApiState) -> JSONResponse:
    options = write_options(request)
    document = await create_document(request)
    created, status_code = await run_in_threadpool(
        _writer(state, kind).create, namespace, document, options
    )
    return answer(kind, created, options, status_code=status_code)


@router.post(
    "/apis/{group}/{version}/namespaces/{namespace}/{plural}",
    tags=["resources"],
    summary="Create an object (JSON or YAML body)",
    status_code=201,
    openapi_extra=request_body(MANIFEST_SCHEMA),
)
@rule(KUBERNETES)
async def create(
    group: str, version: str, namespace: str, plural: str, request: Request, state: State
) -> JSONResponse:
    kind = _namespaced_kind(state, group, version, plural)
    return await _create(kind, _namespace(namespace), request, state)


async def _read(target: ObjectPath, request: Request, state: ApiState) -> Any:
    kind = target.kind
    found = await run_in_threadpool(state.source(kind).get, kind, target.namespace, target.name)
    return tables.object_response(kind, served(kind, found), request)


@router.get(
    "/apis/{group}/{version}/namespaces/{namespace}/{plural}/{name}",
    tags=["resources"],
    summary="Read an object",
)
@rule(KUBERNETES)
async def read(target: Target, request: Request, state: State) -> Any:
    return await _read(target, request, state)


async def _replace(target: ObjectPath, request: Request, state: ApiState) -> JSONResponse:
    kind = target.kind
    options = write_options(request)
    document = await read_document(request)
    replaced, result = await run_in_threadpool(
        _writer(state, kind).replace, target.namespace, target.name, document, options
    )
    return answer(
        kind,
        replaced,
        options,
        status_code=201 if result == "created" else 200,
        headers={APPLY_HEADER: result},
    )


@router.put(
    "/apis/{group}/{version}/namespaces/{namespace}/{plural}/{name}",
    tags=["resources"],
    summary="Replace the object (or create it): its spec, labels and annotations",
    openapi_extra=request_body(MANIFEST_SCHEMA),
    responses={201: {"description": "Created"}},
)
@rule(KUBERNETES)
async def apply(target: Target, request: Request, state: State) -> JSONResponse:
    return await _replace(target, request, state)


async def _patch(target: ObjectPath, request: Request, state: ApiState) -> JSONResponse:
    kind = target.kind
    kind_of_patch = patches.patch_type(request.headers.get("content-type"), kind)
    options = write_options(request, apply=kind_of_patch == "apply")
    body = await writes.patch_body(request, kind_of_patch)
    try:
        patched, status_code = await run_in_threadpool(
            _writer(state, kind).patch,
            target.namespace,
            target.name,
            kind_of_patch,
            body,
            options,
        )
    except fieldmanager.ApplyConflict as exc:
        return conflict_response(exc)
    return answer(kind, patched, options, status_code=status_code)


@router.patch(
    "/apis/{group}/{version}/namespaces/{namespace}/{plural}/{name}",
    tags=["resources"],
    summary="Patch an object: JSON merge patch, JSON patch, strategic merge patch (Kubernetes' "
    "own kinds) or server-side apply (application/apply-patch+yaml, fieldManager)",
    openapi_extra=patch_body(),
    responses={201: {"description": "Created by an apply"}},
)
@rule(KUBERNETES)
async def patch(target: Target, request: Request, state: State) -> JSONResponse:
    return await _patch(target, request, state)


async def _delete_options(request: Request) -> tuple[list[str], dict[str, Any]]:
    """``dryRun`` and ``preconditions`` of a DELETE's ``DeleteOptions`` body, if any."""
    raw = await request.body()
    if not raw.strip():
        return [], {}
    body = require_mapping(await read_document(request), "DeleteOptions")
    dry_run = body.get("dryRun") or []
    if not isinstance(dry_run, list) or not all(isinstance(v, str) for v in dry_run):
        raise InvalidSpec("must be a list of strings", field="dryRun")
    preconditions = body.get("preconditions") or {}
    if not isinstance(preconditions, dict):
        raise InvalidSpec("must be an object", field="preconditions")
    return dry_run, preconditions


async def _remove(target: ObjectPath, request: Request, state: ApiState) -> JSONResponse:
    kind = target.kind
    dry_run, preconditions = await _delete_options(request)
    options = write_options(request)
    if dry_run:
        options = replace(options, dry_run=writes.parse_dry_run(dry_run) or options.dry_run)
    deleted = await run_in_threadpool(
        _writer(state, kind).delete, target.namespace, target.name, options, preconditions
    )
    return answer(kind, deleted, options)


@router.delete(
    "/apis/{group}/{version}/namespaces/{namespace}/{plural}/{name}",
    tags=["resources"],
    summary="Delete an object (answers it as it was)",
)
@rule(KUBERNETES)
async def remove(target: Target, request: Request, state: State) -> JSONResponse:
    return await _remove(target, request, state)


# -- status subresource ------------------------------------------------------------


@router.get(
    "/apis/{group}/{version}/namespaces/{namespace}/{plural}/{name}/status",
    tags=["resources"],
    summary="Read an object with its status",
)
@rule(KUBERNETES)
async def read_status(target: Target, request: Request, state: State) -> Any:
    return await _read(target, request, state)


async def _write_status(target: ObjectPath, request: Request, state: ApiState) -> JSONResponse:
    kind, namespace, name = target.kind, target.namespace, target.name
    options = write_options(request)
    document = require_mapping(await read_document(request))
    status = document.get("status")
    if not isinstance(status, dict):
        raise InvalidSpec("is required and must be an object", field="status")
    metadata = document.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise InvalidSpec("must be an object", field="metadata")
    version_given = metadata.get("resourceVersion")
    if version_given is not None and not isinstance(version_given, str | int):
        raise InvalidSpec("must be a string", field="metadata.resourceVersion")
    _check_conditions(status)
    updated = await run_in_threadpool(
        _writer(state, kind).write_status,
        namespace,
        name,
        status,
        None if version_given in (None, "") else str(version_given),
        options,
    )
    return answer(kind, updated, options)


@router.put(
    "/apis/{group}/{version}/namespaces/{namespace}/{plural}/{name}/status",
    tags=["resources"],
    summary="Replace an object's status (metadata.resourceVersion, if given, must match)",
    openapi_extra=request_body(STATUS_SCHEMA),
)
@rule(KUBERNETES)
async def write_status(target: Target, request: Request, state: State) -> JSONResponse:
    return await _write_status(target, request, state)


async def _patch_status(target: ObjectPath, request: Request, state: ApiState) -> JSONResponse:
    kind = target.kind
    kind_of_patch = patches.patch_type(request.headers.get("content-type"), kind)
    options = write_options(request, apply=kind_of_patch == "apply")
    body = await writes.patch_body(request, kind_of_patch)
    try:
        updated = await run_in_threadpool(
            _writer(state, kind).patch_status,
            target.namespace,
            target.name,
            kind_of_patch,
            body,
            options,
            _check_conditions,
        )
    except fieldmanager.ApplyConflict as exc:
        return conflict_response(exc)
    return answer(kind, updated, options)


@router.patch(
    "/apis/{group}/{version}/namespaces/{namespace}/{plural}/{name}/status",
    tags=["resources"],
    summary="Patch an object's status (the patch's other changes are ignored)",
    openapi_extra=patch_body(),
)
@rule(KUBERNETES)
async def patch_status(target: Target, request: Request, state: State) -> JSONResponse:
    return await _patch_status(target, request, state)


def _check_conditions(status: dict[str, Any]) -> None:
    conditions = status.get("conditions")
    if conditions is None:
        return
    if not isinstance(conditions, list):
        raise InvalidSpec("must be a list", field="status.conditions")
    probe = Resource(apiVersion="v1", kind="Probe", metadata={"name": "probe"}, status=status)  # type: ignore[arg-type]
    probe.conditions()


# -- cluster-scoped kinds ----------------------------------------------------------------
# /apis/{group}/{version}/{plural}/{name}: registered after every other route, so the
# watch paths (/apis/{group}/{version}/watch/{plural}) keep theirs.


@router.post(
    "/apis/{group}/{version}/{plural}",
    tags=["resources"],
    summary="Create an object of a cluster-scoped kind",
    status_code=201,
    openapi_extra=request_body(MANIFEST_SCHEMA),
)
@rule(KUBERNETES)
async def create_cluster(
    group: str, version: str, plural: str, request: Request, state: State
) -> JSONResponse:
    kind = _cluster_kind(state, group, version, plural)
    return await _create(kind, CLUSTER_NAMESPACE, request, state)


@router.get(
    "/apis/{group}/{version}/{plural}/{name}",
    tags=["resources"],
    summary="Read an object of a cluster-scoped kind",
)
@rule(KUBERNETES)
async def read_cluster(target: ClusterTarget, request: Request, state: State) -> Any:
    return await _read(target, request, state)


@router.put(
    "/apis/{group}/{version}/{plural}/{name}",
    tags=["resources"],
    summary="Replace (or create) an object of a cluster-scoped kind",
    openapi_extra=request_body(MANIFEST_SCHEMA),
    responses={201: {"description": "Created"}},
)
@rule(KUBERNETES)
async def replace_cluster(target: ClusterTarget, request: Request, state: State) -> JSONResponse:
    return await _replace(target, request, state)


@router.patch(
    "/apis/{group}/{version}/{plural}/{name}",
    tags=["resources"],
    summary="Patch an object of a cluster-scoped kind",
    openapi_extra=patch_body(),
    responses={201: {"description": "Created by an apply"}},
)
@rule(KUBERNETES)
async def patch_cluster(target: ClusterTarget, request: Request, state: State) -> JSONResponse:
    return await _patch(target, request, state)


@router.delete(
    "/apis/{group}/{version}/{plural}/{name}",
    tags=["resources"],
    summary="Delete an object of a cluster-scoped kind (answers it as it was)",
)
@rule(KUBERNETES)
async def remove_cluster(target: ClusterTarget, request: Request, state: State) -> JSONResponse:
    return await _remove(target, request, state)


@router.get(
    "/apis/{group}/{version}/{plural}/{name}/status",
    tags=["resources"],
    summary="Read an object of a cluster-scoped kind with its status",
)
@rule(KUBERNETES)
async def read_cluster_status(target: ClusterTarget, request: Request, state: State) -> Any:
    return await _read(target, request, state)


@router.put(
    "/apis/{group}/{version}/{plural}/{name}/status",
    tags=["resources"],
    summary="Replace the status of an object of a cluster-scoped kind",
    openapi_extra=request_body(STATUS_SCHEMA),
)
@rule(KUBERNETES)
async def write_cluster_status(
    target: ClusterTarget, request: Request, state: State
) -> JSONResponse:
    return await _write_status(target, request, state)


@router.patch(
    "/apis/{group}/{version}/{plural}/{name}/status",
    tags=["resources"],
    summary="Patch the status of an object of a cluster-scoped kind",
    openapi_extra=patch_body(),
)
@rule(KUBERNETES)
async def patch_cluster_status(
    target: ClusterTarget, request: Request, state: State
) -> JSONResponse:
    return await _patch_status(target, request, state)
