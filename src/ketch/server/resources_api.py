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

import secrets
import string
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from ketch.core.errors import InvalidSpec
from ketch.core.kinds import Kind
from ketch.core.resource import Resource, validate_name, validate_namespace
from ketch.core.routes import request_body
from ketch.server import tables
from ketch.server.bodies import (
    MANIFEST_SCHEMA,
    STATUS_SCHEMA,
    patch_body,
    read_document,
    require_mapping,
)
from ketch.server.errors import STATUS_RESPONSES, note_name
from ketch.server.state import ApiState, api_state
from ketch.server.watch import is_watch, respond

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

APPLY_HEADER = "X-Ketch-Apply"


# -- lists and watches ----------------------------------------------------------


def _namespace(namespace: str) -> str:
    return validate_namespace(namespace, field="namespace")


def _name(name: str) -> str:
    return validate_name(name, field="name")


@dataclass(frozen=True)
class ObjectPath:
    """The kind, namespace and name of an object's URL, checked."""

    kind: Kind
    namespace: str
    name: str


async def _object_path(
    group: str, version: str, namespace: str, plural: str, name: str, state: State
) -> ObjectPath:
    return ObjectPath(
        state.kinds.for_path(group, version, plural), _namespace(namespace), _name(name)
    )


Target = Annotated[ObjectPath, Depends(_object_path)]


async def _list(
    state: ApiState,
    request: Request,
    kind: Kind,
    namespace: str | None,
    label_selector: str | None,
    limit: int | None,
    continue_token: str | None,
    timeout: float | None,
) -> Any:
    if is_watch(request):
        return _watch_response(state, request, kind, namespace, label_selector, timeout)
    page = await run_in_threadpool(
        state.source(kind).list,
        kind,
        namespace,
        label_selector=label_selector,
        limit=limit,
        continue_token=continue_token,
    )
    version = page.resource_version
    if version is None:  # a source without revisions of its own: the store's
        version = str(await run_in_threadpool(state.store.revision))
    metadata: dict[str, Any] = {"resourceVersion": version}
    if page.continue_token:
        metadata["continue"] = page.continue_token
    table = tables.requested(request)
    if table is not None:
        return tables.list_table(kind, page.items, metadata, table)
    # a JSONResponse as it is: FastAPI's encoding of a returned dict walks every value
    # again, which costs more than the list itself for a thousand objects
    return JSONResponse(
        {
            "apiVersion": kind.api_version,
            "kind": f"{kind.kind}List",
            "metadata": metadata,
            "items": page.items,
        }
    )


def _watch_response(
    state: ApiState,
    request: Request,
    kind: Kind,
    namespace: str | None,
    label_selector: str | None,
    timeout: float | None,
) -> StreamingResponse:
    """A Kubernetes watch stream (server-sent events when the client asks for them);
    see :mod:`ketch.server.watch`."""
    return respond(
        request,
        state.source(kind),
        kind,
        namespace,
        notifier=state.notifier,
        stopping=state.stopping,
        label_selector=label_selector,
        timeout=timeout,
    )


@router.get(
    "/apis/{group}/{version}/{plural}",
    tags=["resources"],
    summary="List a kind in all namespaces (add watch=true to stream changes)",
)
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
    kind = state.kinds.for_path(group, version, plural)
    return await _list(state, request, kind, None, label_selector, limit, continue_token, timeout)


@router.get(
    "/apis/{group}/{version}/namespaces/{namespace}/{plural}",
    tags=["resources"],
    summary="List a kind in a namespace (add watch=true to stream changes)",
)
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
    kind = state.kinds.for_path(group, version, plural)
    return await _list(
        state, request, kind, _namespace(namespace), label_selector, limit, continue_token, timeout
    )


@router.get(
    "/apis/{group}/{version}/watch/{plural}",
    tags=["watch"],
    summary="Watch a kind in all namespaces (newline-delimited JSON watch events)",
    response_class=StreamingResponse,
)
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
    kind = state.kinds.for_path(group, version, plural)
    return _watch_response(state, request, kind, None, label_selector, timeout)


@router.get(
    "/apis/{group}/{version}/watch/namespaces/{namespace}/{plural}",
    tags=["watch"],
    summary="Watch a kind in a namespace (newline-delimited JSON watch events)",
    response_class=StreamingResponse,
)
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
    kind = state.kinds.for_path(group, version, plural)
    return _watch_response(state, request, kind, _namespace(namespace), label_selector, timeout)


# -- create, read, apply, patch, delete ---------------------------------------------


def _manifest_for(
    kind: Kind,
    namespace: str,
    document: Any,
    name: str | None = None,
    *,
    default_name: Callable[[dict[str, Any]], str | None] = lambda _manifest: None,
) -> Resource:
    """Check a manifest against the URL it was sent to and parse it; an object sent
    with neither a name nor ``generateName`` is named by ``default_name``, if it can."""
    manifest = require_mapping(document)
    manifest = dict(manifest)
    for key in ("apiVersion", "kind"):
        if key not in manifest:
            raise InvalidSpec(f"{key} is required", field=key)
        if not isinstance(manifest[key], str):
            raise InvalidSpec("must be a string", field=key)
    if manifest["kind"] != kind.kind:
        raise InvalidSpec(
            f"{manifest['kind']!r} does not match the kind of the URL ({kind.kind})", field="kind"
        )
    kind.check_api_version(manifest["apiVersion"])
    metadata = manifest.get("metadata")
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise InvalidSpec("must be an object", field="metadata")
    metadata = dict(metadata)
    given_ns = metadata.get("namespace")
    if given_ns is not None and given_ns != namespace:
        raise InvalidSpec(
            f"{given_ns!r} does not match the namespace in the URL ({namespace!r})",
            field="metadata.namespace",
        )
    metadata["namespace"] = namespace
    if name is not None:
        if metadata.get("name") not in (None, name):
            raise InvalidSpec(
                f"{metadata['name']!r} does not match the name in the URL ({name!r})",
                field="metadata.name",
            )
        metadata["name"] = name
    elif not metadata.get("name"):
        generated = _generated_name(metadata, manifest, default_name)
        if generated:
            metadata["name"] = generated
    generate = metadata.pop("generateName", None)
    if generate is not None and not isinstance(generate, str):
        raise InvalidSpec("must be a string", field="metadata.generateName")
    manifest["metadata"] = metadata
    for key in ("spec", "status"):
        if key in manifest and manifest[key] is None:
            manifest[key] = {}
    return Resource.from_manifest(manifest)


def _generated_name(
    metadata: dict[str, Any],
    manifest: dict[str, Any],
    default_name: Callable[[dict[str, Any]], str | None],
) -> str | None:
    prefix = metadata.get("generateName")
    if prefix is None:
        return default_name(manifest)
    if not isinstance(prefix, str) or not prefix:
        return None  # no name: Resource.from_manifest names the missing field
    alphabet = string.ascii_lowercase + string.digits
    return prefix + "".join(secrets.choice(alphabet) for _ in range(5))


@router.post(
    "/apis/{group}/{version}/namespaces/{namespace}/{plural}",
    tags=["resources"],
    summary="Create an object (JSON or YAML body)",
    status_code=201,
    openapi_extra=request_body(MANIFEST_SCHEMA),
)
async def create(
    group: str, version: str, namespace: str, plural: str, request: Request, state: State
) -> JSONResponse:
    kind = state.kinds.for_path(group, version, plural)
    namespace = _namespace(namespace)
    source = state.source(kind)
    document = await read_document(request)
    if isinstance(document, dict) and isinstance(document.get("metadata"), dict):
        note_name(request, document["metadata"].get("name"))
    resource = state.validate(
        kind,
        _manifest_for(
            kind, namespace, document, default_name=lambda m: source.default_name(kind, m)
        ),
    )
    created = await run_in_threadpool(source.create, kind, resource)
    state.changed(kind, namespace, created["metadata"]["name"])
    return JSONResponse(created, status_code=201)


@router.get(
    "/apis/{group}/{version}/namespaces/{namespace}/{plural}/{name}",
    tags=["resources"],
    summary="Read an object",
)
async def read(target: Target, request: Request, state: State) -> Any:
    kind = target.kind
    found = await run_in_threadpool(state.source(kind).get, kind, target.namespace, target.name)
    table = tables.requested(request)
    return found if table is None else tables.object_table(kind, found, table)


@router.put(
    "/apis/{group}/{version}/namespaces/{namespace}/{plural}/{name}",
    tags=["resources"],
    summary="Apply: create the object, or update its spec, labels and annotations",
    openapi_extra=request_body(MANIFEST_SCHEMA),
    responses={201: {"description": "Created"}},
)
async def apply(target: Target, request: Request, state: State) -> JSONResponse:
    kind, namespace, name = target.kind, target.namespace, target.name
    resource = state.validate(
        kind, _manifest_for(kind, namespace, await read_document(request), name)
    )
    applied, result = await run_in_threadpool(state.source(kind).apply, kind, resource)
    if result != "unchanged":
        state.changed(kind, namespace, applied["metadata"]["name"])
    return JSONResponse(
        applied, status_code=201 if result == "created" else 200, headers={APPLY_HEADER: result}
    )


@router.patch(
    "/apis/{group}/{version}/namespaces/{namespace}/{plural}/{name}",
    tags=["resources"],
    summary="Merge-patch metadata.labels, metadata.annotations and spec",
    openapi_extra=patch_body(),
)
async def patch(target: Target, request: Request, state: State) -> dict[str, Any]:
    kind, namespace, name = target.kind, target.namespace, target.name
    document = require_mapping(await read_document(request), "a merge patch")
    patched = await run_in_threadpool(
        state.source(kind).patch, kind, namespace, name, document, lambda r: state.validate(kind, r)
    )
    state.changed(kind, namespace, name)
    return patched


@router.delete(
    "/apis/{group}/{version}/namespaces/{namespace}/{plural}/{name}",
    tags=["resources"],
    summary="Delete an object (answers it as it was)",
)
async def remove(target: Target, state: State) -> dict[str, Any]:
    kind, namespace, name = target.kind, target.namespace, target.name
    deleted = await run_in_threadpool(state.source(kind).delete, kind, namespace, name)
    state.changed(kind, namespace, name)
    return deleted


# -- status subresource ------------------------------------------------------------


@router.get(
    "/apis/{group}/{version}/namespaces/{namespace}/{plural}/{name}/status",
    tags=["resources"],
    summary="Read an object with its status",
)
async def read_status(target: Target, request: Request, state: State) -> Any:
    return await read(target, request, state)


@router.put(
    "/apis/{group}/{version}/namespaces/{namespace}/{plural}/{name}/status",
    tags=["resources"],
    summary="Replace an object's status (metadata.resourceVersion, if given, must match)",
    openapi_extra=request_body(STATUS_SCHEMA),
)
async def write_status(target: Target, request: Request, state: State) -> dict[str, Any]:
    kind, namespace, name = target.kind, target.namespace, target.name
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
        state.source(kind).put_status,
        kind,
        namespace,
        name,
        status,
        None if version_given is None else str(version_given),
    )
    state.changed(kind, namespace, name)
    return updated


def _check_conditions(status: dict[str, Any]) -> None:
    conditions = status.get("conditions")
    if conditions is None:
        return
    if not isinstance(conditions, list):
        raise InvalidSpec("must be a list", field="status.conditions")
    probe = Resource(apiVersion="v1", kind="Probe", metadata={"name": "probe"}, status=status)  # type: ignore[arg-type]
    probe.conditions()
