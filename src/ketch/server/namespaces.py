"""The core group's ``Namespace`` (``/api/v1/namespaces``): Ketch's namespaces as
Kubernetes objects.

In Ketch an object may be created in any namespace, which comes into being with it.
So the namespaces are ``default`` (always), every namespace that holds objects, and
those created explicitly (``kubectl create namespace team-a``, kept as ``Namespace``
objects in the ``resources`` table, in :data:`STORED_IN`). Each is ``Active``.

::

    GET    /api/v1/namespaces            list (labelSelector, fieldSelector metadata.name,
                                         status.phase; Table; watch=true)
    GET    /api/v1/watch/namespaces      watch
    POST   /api/v1/namespaces            create (409 when it exists)
    GET    /api/v1/namespaces/{name}     read (404 when it holds nothing and was not created)
    PATCH  /api/v1/namespaces/{name}     labels and annotations (merge or strategic merge)
    DELETE /api/v1/namespaces/{name}

Deleting a namespace does not delete what it holds: a namespace that still holds
objects is refused (409, naming some of them), as is ``default`` (403); an empty one
created explicitly is deleted, with what the capabilities keep for it in their own
tables (KFP experiments, namespaced pipelines, recurring runs: the store's namespace
finalizers).

A list answers the store's revision, and a watch reads the namespaces' history from
the store's change journal (:mod:`ketch.server.namespace_history`: an explicit
namespace's writes are journaled as any resource's; a namespace that holds objects
comes and goes with the journaled writes of its first and last object), so a watch
resumes exactly from a ``resourceVersion``, is a 410 when the journal no longer goes
back that far, and sends bookmarks, as every journaled kind's does.
"""

from __future__ import annotations

import secrets
import string
import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from ketch.core.access import KUBERNETES, rule
from ketch.core.errors import (
    AlreadyExists,
    Conflict,
    Forbidden,
    InvalidSpec,
    NotFound,
    ObjectNotFound,
)
from ketch.core.kinds import Column, Kind, KindRegistry
from ketch.core.rbac import NAMESPACES_STORED_IN, stored_namespace
from ketch.core.resource import DEFAULT_NAMESPACE, Resource, format_time, validate_namespace
from ketch.core.sources import (
    Check,
    Manifest,
    Page,
    RefusesWrites,
    Source,
    StoreSource,
    check_patch,
)
from ketch.core.store.selectors import LabelSelector
from ketch.core.timestamps import time_or_none
from ketch.server import tables, visibility
from ketch.server.bodies import read_document, require_mapping
from ketch.server.errors import STATUS_RESPONSES, note_name
from ketch.server.fieldselectors import FieldSelector
from ketch.server.namespace_history import NamespaceHistory
from ketch.server.state import ApiState, api_state
from ketch.server.watch import WatchParams, is_watch, watch_response

router = APIRouter(tags=["namespaces"], responses=STATUS_RESPONSES)

State = Annotated[ApiState, Depends(api_state)]
LabelSelectorQ = Annotated[str | None, Query(alias="labelSelector")]
FieldSelectorQ = Annotated[
    str | None, Query(alias="fieldSelector", description="metadata.name=N,status.phase=Active")
]
TimeoutQ = Annotated[
    float | None, Query(alias="timeoutSeconds", gt=0, le=86_400, description="End a watch after")
]

#: Where explicitly created namespaces are kept (as cluster-scoped objects are; the
#: stored layout is :func:`ketch.core.rbac.stored_namespace`'s).
STORED_IN = NAMESPACES_STORED_IN
#: The label Kubernetes gives every namespace: its name.
NAME_LABEL = "kubernetes.io/metadata.name"
ACTIVE = "Active"
_UIDS = uuid.UUID("0b8f3f7e-2a51-4c1e-9a55-6d0c4f1e2b9d")
_FIELDS = ("metadata.name", "status.phase")
_SHOWN_HOLDERS = 5


def namespace_schema() -> dict[str, Any]:
    return {
        "spec": {
            "type": "object",
            "description": "What the namespace should be.",
            "properties": {
                "finalizers": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "What must be done before the namespace is removed.",
                }
            },
        },
        "status": {
            "type": "object",
            "description": "What the namespace is.",
            "properties": {"phase": {"type": "string", "description": "Active or Terminating."}},
        },
    }


NAMESPACE = Kind(
    kind="Namespace",
    group="",
    versions=("v1",),
    plural="namespaces",
    short_names=("ns",),
    namespaced=False,
    columns=(Column("Status", ".status.phase", description="Active or Terminating"),),
    verbs=("create", "delete", "get", "list", "patch", "watch"),
    subresources=(),
    object_schema=namespace_schema,
)


def check_namespace(resource: Resource) -> None:
    """A namespace's name is an RFC 1123 label; its spec holds finalizers only."""
    validate_namespace(resource.metadata.name, field="metadata.name")
    for name in resource.model_extra or {}:
        raise InvalidSpec(f"unknown field {name!r}; a Namespace has spec and status", field=name)
    for key, value in resource.spec.items():
        if key != "finalizers":
            raise InvalidSpec(
                "unknown field; a Namespace's spec has finalizers", field=f"spec.{key}"
            )
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise InvalidSpec("must be a list of strings", field="spec.finalizers")


def namespace_uid(name: str) -> str:
    """A namespace's uid: the same for as long as it has its name."""
    return str(uuid.uuid5(_UIDS, name))


class Namespaces:
    """The namespaces of one app: its store's, those other sources hold objects in,
    and those created explicitly."""

    def __init__(self, state: ApiState) -> None:
        self.store = state.store
        self.kinds: KindRegistry = state.kinds
        served = [
            (kind, source)
            for kind in state.kinds
            for source in [state.sources.get(kind.kind)]
            if source is not None and not isinstance(source, StoreSource)
        ]
        #: the kinds served from elsewhere whose objects make namespaces (PipelineRuns)
        self.others: list[tuple[Kind, Source]] = [
            (kind, source) for kind, source in served if kind.group and kind.namespaced
        ]
        #: the kinds served from elsewhere whose objects make none (pods, events)
        self.elsewhere = frozenset(kind.kind for kind, _ in served) - {
            kind.kind for kind, _ in self.others
        }

    # -- reading ------------------------------------------------------------------------

    def held(self) -> dict[str, datetime | None]:
        """Every namespace holding an object, with its first object's creation time."""
        found: dict[str, datetime | None] = dict(self.store.namespaces(exclude=(NAMESPACE.kind,)))
        for kind, source in self.others:
            token: str | None = None
            while True:
                page = source.list(kind, None, label_selector=None, limit=500, continue_token=token)
                for item in page.items:
                    meta = item.get("metadata") or {}
                    namespace = meta.get("namespace")
                    if not isinstance(namespace, str) or not namespace:
                        continue
                    created = time_or_none(meta.get("creationTimestamp"))
                    earlier = found.get(namespace)
                    if namespace not in found or (
                        created is not None and (earlier is None or created < earlier)
                    ):
                        found[namespace] = created
                token = page.continue_token
                if not token:
                    break
        return found

    def history(self) -> NamespaceHistory:
        """The namespaces as a list at a revision and the changes after one (per list
        or watch)."""
        return NamespaceHistory(
            self.store,
            NAMESPACE,
            others=self.others,
            elsewhere=self.elsewhere,
            show=manifest,
            stored_in=STORED_IN,
        )

    def get(self, name: str) -> Manifest:
        created = self._created(name)
        held = self.held()
        if created is None and name not in held and name != DEFAULT_NAMESPACE:
            raise ObjectNotFound(
                f"namespace {name!r} holds nothing and was not created",
                kind=NAMESPACE.kind,
                name=name,
                hint=f"create it with: kubectl create namespace {name}",
            )
        return manifest(name, created, held.get(name))

    def _created(self, name: str) -> Resource | None:
        try:
            return self.store.get(NAMESPACE.kind, STORED_IN, name)
        except NotFound:
            return None

    # -- writing ------------------------------------------------------------------------

    def create(self, resource: Resource) -> Manifest:
        name = resource.metadata.name
        if name == DEFAULT_NAMESPACE or name in self.held():
            raise AlreadyExists(
                f"namespace {name!r} already exists (it holds objects)",
                kind=NAMESPACE.kind,
                name=name,
            )
        labels = {k: v for k, v in resource.metadata.labels.items() if k != NAME_LABEL}
        stored = stored_namespace(name, labels, dict(resource.metadata.annotations))
        try:
            made = self.store.create(stored)
        except AlreadyExists:
            raise AlreadyExists(
                f"namespace {name!r} already exists", kind=NAMESPACE.kind, name=name
            ) from None
        return manifest(name, made, None)

    def patch(self, name: str, patch: dict[str, Any], check: Check) -> Manifest:
        current = self.get(name)
        for key in patch:
            if key not in ("apiVersion", "kind", "metadata"):
                raise InvalidSpec(
                    "cannot be patched; a namespace's labels and annotations can", field=key
                )
        check_patch(current, patch)
        metadata = patch.get("metadata") or {}
        labels = dict(current["metadata"].get("labels") or {})
        annotations = dict(current["metadata"].get("annotations") or {})
        for target, changes in (
            (labels, metadata.get("labels")),
            (annotations, metadata.get("annotations")),
        ):
            for key, value in (changes or {}).items():
                if value is None:
                    target.pop(key, None)
                else:
                    target[key] = value
        labels.pop(NAME_LABEL, None)
        created = self._created(name)
        owners = created.metadata.ownerReferences if created is not None else None
        stored = stored_namespace(name, labels, annotations, owners)
        check(stored)
        saved = self.store.apply(stored)
        return manifest(name, saved, self.held().get(name))

    def delete(self, name: str) -> Manifest:
        if name == DEFAULT_NAMESPACE:
            raise Forbidden(f'namespaces "{name}" is forbidden: this namespace may not be deleted')
        holders = self.store.names_in(name, limit=_SHOWN_HOLDERS + 1, exclude=(NAMESPACE.kind,))
        if not holders and name in self.held():
            holders = [("", "")]  # held by a kind served from elsewhere
        if holders:
            shown = ", ".join(
                f"{self._plural(kind)}/{obj}" for kind, obj in holders[:_SHOWN_HOLDERS] if kind
            )
            more = ", and more" if len(holders) > _SHOWN_HOLDERS else ""
            raise Conflict(
                f"namespace {name!r} still holds objects ({shown or 'pipeline runs'}{more}); "
                "Ketch does not delete a namespace's objects with it: delete them first",
            )
        created = self._created(name)
        if created is None:
            raise ObjectNotFound(
                f"namespace {name!r} holds nothing and was not created",
                kind=NAMESPACE.kind,
                name=name,
            )
        # what the capabilities keep for it elsewhere (KFP experiments, pipelines,
        # recurring runs) goes first, so an interrupted delete can be sent again
        if not self.store.finalize_namespace(name):
            raise Conflict(
                f"namespace {name!r} is still being cleaned up (what runs in it is "
                "stopping); delete it again in a few seconds"
            )
        self.store.delete(NAMESPACE.kind, STORED_IN, name)
        gone = manifest(name, created, None)
        gone["status"] = {"phase": "Terminating"}
        return gone

    def _plural(self, kind: str) -> str:
        return self.kinds.lookup(kind).plural if kind in self.kinds else kind.lower()


def manifest(name: str, created: Resource | None, first: datetime | None) -> Manifest:
    """Namespace ``name`` as Kubernetes serves one: ``Active``, with the label naming it."""
    metadata: dict[str, Any] = {"name": name, "uid": namespace_uid(name)}
    labels: dict[str, str] = {NAME_LABEL: name}
    if created is not None:
        meta = created.metadata
        metadata["resourceVersion"] = meta.resourceVersion or "0"
        stamp = meta.creationTimestamp
        if first is not None and (stamp is None or first < stamp):
            stamp = first
        if stamp is not None:
            metadata["creationTimestamp"] = format_time(stamp.replace(microsecond=0))
        labels.update(meta.labels)
        if meta.annotations:
            metadata["annotations"] = dict(meta.annotations)
        if meta.ownerReferences:
            metadata["ownerReferences"] = [dict(owner) for owner in meta.ownerReferences]
    else:
        metadata["resourceVersion"] = "0"
        if first is not None:
            metadata["creationTimestamp"] = format_time(first.replace(microsecond=0))
    metadata["labels"] = labels
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": metadata,
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": ACTIVE},
    }


def _selected(
    items: Iterable[Manifest], label_selector: str | None, field_selector: str | None
) -> list[Manifest]:
    labels = LabelSelector.parse(label_selector)
    fields = FieldSelector.parse(field_selector, _FIELDS)
    return [
        item
        for item in items
        if labels.matches(item["metadata"].get("labels") or {})
        and fields.matches(
            lambda field, item=item: (
                item["metadata"]["name"]  # type: ignore[misc]
                if field == "metadata.name"
                else item["status"]["phase"]
            )
        )
    ]


class ServedElsewhere(RefusesWrites):
    """The source registered for ``Namespace``: namespaces are served by this module's
    routes, never under a namespace."""

    def refusal(self) -> NotFound:
        return NotFound("namespaces are cluster-scoped: they are served at /api/v1/namespaces")

    def get(self, kind: Kind, namespace: str, name: str) -> Manifest:
        raise self.refusal()

    def list(
        self,
        kind: Kind,
        namespace: str | None,
        *,
        label_selector: str | None,
        limit: int | None,
        continue_token: str | None,
    ) -> Page:
        raise self.refusal()

    def versions(
        self, kind: Kind, namespace: str | None, selector: LabelSelector
    ) -> dict[str, str]:
        raise self.refusal()

    def fetch(self, kind: Kind, uids: Iterable[str]) -> dict[str, Manifest]:
        raise self.refusal()


# -- routes -------------------------------------------------------------------------------


def _name(name: str) -> str:
    return validate_namespace(name, field="name")


def _watch(
    request: Request, state: ApiState, label_selector: str | None, timeout: float | None
) -> StreamingResponse:
    """A watch of the namespaces: their history read from the journal (a malformed
    parameter is refused before the stream starts)."""
    params = WatchParams.of(
        request,
        None,
        label_selector=label_selector,
        timeout=timeout,
        fields=_FIELDS,
        visible=visibility.object_filter(NAMESPACE, visibility.namespaces_of(request)),
    )
    history = Namespaces(state).history()
    return watch_response(
        request, history, NAMESPACE, params, notifier=state.notifier, stopping=state.stopping
    )


@router.get("/api/v1/namespaces", summary="List the namespaces (watch=true streams changes)")
@rule(KUBERNETES)
async def list_namespaces(
    request: Request,
    state: State,
    label_selector: LabelSelectorQ = None,
    field_selector: FieldSelectorQ = None,
    timeout: TimeoutQ = None,
) -> Any:
    if is_watch(request):
        return _watch(request, state, label_selector, timeout)
    FieldSelector.parse(field_selector, _FIELDS)  # a bad one is a 400 before reading
    history = Namespaces(state).history()
    page = await run_in_threadpool(
        history.list, NAMESPACE, None, label_selector=None, limit=None, continue_token=None
    )
    items = _selected(page.items, label_selector, field_selector)
    # only the namespaces the caller may read
    visible = visibility.object_filter(NAMESPACE, visibility.namespaces_of(request))
    if visible is not None:
        items = [item for item in items if visible(item)]
    # the revision the namespaces were read at: a watch from it (kubectl get -w) sends
    # exactly the changes after them
    metadata = {"resourceVersion": page.resource_version}
    return tables.list_response(NAMESPACE, items, metadata, request)


@router.get(
    "/api/v1/watch/namespaces",
    tags=["watch"],
    summary="Watch the namespaces (newline-delimited JSON watch events)",
)
@rule(KUBERNETES)
async def watch_namespaces(
    request: Request, state: State, label_selector: LabelSelectorQ = None, timeout: TimeoutQ = None
) -> StreamingResponse:
    return _watch(request, state, label_selector, timeout)


@router.post("/api/v1/namespaces", summary="Create a namespace", status_code=201)
@rule(KUBERNETES)
async def create_namespace(request: Request, state: State) -> JSONResponse:
    document = require_mapping(await read_document(request))
    metadata = document.get("metadata")
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise InvalidSpec("must be an object", field="metadata")
    metadata = dict(metadata)
    for key in ("apiVersion", "kind"):
        if not isinstance(document.get(key), str):
            raise InvalidSpec(f"{key} is required and must be a string", field=key)
    NAMESPACE.check_api_version(document["apiVersion"])
    if document["kind"] != NAMESPACE.kind:
        raise InvalidSpec(f"{document['kind']!r} is not a Namespace", field="kind")
    if not metadata.get("name") and isinstance(metadata.get("generateName"), str):
        alphabet = string.ascii_lowercase + string.digits
        metadata["name"] = metadata["generateName"] + "".join(
            secrets.choice(alphabet) for _ in range(5)
        )
    metadata.pop("generateName", None)
    name = metadata.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidSpec("a name is required", field="metadata.name")
    note_name(request, name)
    validate_namespace(name, field="metadata.name")
    metadata["namespace"] = STORED_IN
    body = {k: v for k, v in document.items() if k != "status"}
    body["metadata"] = metadata
    resource = state.validate(NAMESPACE, Resource.from_manifest(body))
    made = await run_in_threadpool(Namespaces(state).create, resource)
    state.changed(NAMESPACE, STORED_IN, name)
    return JSONResponse(made, status_code=201)


@router.get("/api/v1/namespaces/{name}", summary="Read a namespace")
@rule(KUBERNETES)
async def read_namespace(name: str, request: Request, state: State) -> Any:
    found = await run_in_threadpool(Namespaces(state).get, _name(name))
    return tables.object_response(NAMESPACE, found, request)


@router.patch("/api/v1/namespaces/{name}", summary="Change a namespace's labels and annotations")
@rule(KUBERNETES)
async def patch_namespace(name: str, request: Request, state: State) -> Manifest:
    name = _name(name)
    document = require_mapping(await read_document(request), "a merge patch")
    patched = await run_in_threadpool(
        Namespaces(state).patch, name, document, lambda r: state.validate(NAMESPACE, r)
    )
    state.changed(NAMESPACE, STORED_IN, name)
    return patched


@router.delete(
    "/api/v1/namespaces/{name}",
    summary="Delete a namespace that holds nothing (its objects are never deleted with it)",
)
@rule(KUBERNETES)
async def delete_namespace(name: str, state: State) -> Manifest:
    name = _name(name)
    gone = await run_in_threadpool(Namespaces(state).delete, name)
    state.changed(NAMESPACE, STORED_IN, name)
    return gone
