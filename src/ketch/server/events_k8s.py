"""Events as Kubernetes serves them: the store's event log (``resource_events``, which
controllers write through ``ResourceStore``) as core/v1 ``Event`` objects and as
``events.k8s.io/v1`` ones. Read-only::

    GET /api/v1/namespaces/{ns}/events[?fieldSelector=...&watch=true]
    GET /api/v1/events
    GET /api/v1/namespaces/{ns}/events/{name}
    GET /apis/events.k8s.io/v1/namespaces/{ns}/events[/{name}]
    GET /apis/events.k8s.io/v1/events

``kubectl describe`` reads an object's events with
``fieldSelector=involvedObject.name=X,involvedObject.namespace=NS,involvedObject.kind=K,
involvedObject.uid=U``. The fields a selector may use: ``involvedObject.`` ``name``,
``namespace``, ``uid``, ``kind``, ``apiVersion`` (``regarding.`` in
``events.k8s.io``), ``type``, ``reason``, ``source``, ``reportingComponent``
(``reportingController``), ``metadata.name`` and ``metadata.namespace``; a kind is
matched in any case, singular or plural (``involvedObject.kind=pytorchjobs``), and
an unknown one is 404. ``limit`` answers the newest events (still oldest first),
which is what Ketch's CLI asks for; there is no ``continue``.

An event's name is ``{object name}.{its number in the log}``: unique and stable. Its
``resourceVersion`` is the store's revision at its last write: recording it, and
each repeat of it (its ``count`` goes up), takes the store's next revision and is
journaled (:mod:`ketch.core.store.resources`), so a list of events answers the
revision it was read at, and a watch (``kubectl get events -w``) reads the journal
through the same watch code as resources: resumed from a ``resourceVersion`` it sends
exactly the events recorded (ADDED), repeated (MODIFIED) and removed with their
object (DELETED) after it, and a version older than the journal is a 410. Writes
answer 405: Ketch records events itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from starlette.concurrency import run_in_threadpool

from ketch.core.access import KUBERNETES, rule
from ketch.core.errors import InvalidSpec, KetchError, ObjectNotFound
from ketch.core.kinds import READ_VERBS, Column, Kind, KindRegistry
from ketch.core.resource import Resource, validate_name, validate_namespace
from ketch.core.sources import Manifest, MethodNotAllowed, Page, RefusesWrites
from ketch.core.store.resources import EVENT_KIND, Changes, Event, EventList, ResourceStore
from ketch.core.store.selectors import LabelSelector
from ketch.server import tables, visibility
from ketch.server.errors import STATUS_RESPONSES
from ketch.server.fieldselectors import FieldSelector
from ketch.server.state import ApiState, api_state
from ketch.server.watch import WatchParams, is_watch, watch_response

router = APIRouter(tags=["events"], responses=STATUS_RESPONSES)

State = Annotated[ApiState, Depends(api_state)]
FieldSelectorQ = Annotated[
    str | None,
    Query(
        alias="fieldSelector",
        description="involvedObject.name=N,involvedObject.kind=K,type!=Normal",
    ),
]
LabelSelectorQ = Annotated[str | None, Query(alias="labelSelector")]
LimitQ = Annotated[int | None, Query(ge=1, le=100_000, description="Newest events to return")]
TimeoutQ = Annotated[
    float | None, Query(alias="timeoutSeconds", gt=0, le=86_400, description="End a watch after")
]

COMPONENT = "ketch"
EVENTS_GROUP = "events.k8s.io"

# Field selector fields, by the name the core group gives them.
FIELDS = (
    "involvedObject.name",
    "involvedObject.namespace",
    "involvedObject.uid",
    "involvedObject.kind",
    "involvedObject.apiVersion",
    "type",
    "reason",
    "source",
    "reportingComponent",
    "metadata.name",
    "metadata.namespace",
)
ALIASES = {
    "regarding.name": "involvedObject.name",
    "regarding.namespace": "involvedObject.namespace",
    "regarding.uid": "involvedObject.uid",
    "regarding.kind": "involvedObject.kind",
    "regarding.apiVersion": "involvedObject.apiVersion",
    "reportingController": "reportingComponent",
    "deprecatedSource.component": "source",
}


# -- the served forms -----------------------------------------------------------------


def _time(value: datetime) -> str:
    """A ``metav1.Time``: seconds, UTC, ``Z``."""
    moment = value if value.tzinfo else value.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _micro_time(value: datetime) -> str:
    """A ``metav1.MicroTime``: exactly six fractional digits, which Go's parser needs."""
    moment = value if value.tzinfo else value.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def event_name(event: Event) -> str:
    return event.name


def event_uid(event: Event) -> str:
    return event.uid


def _reference(event: Event, kinds: KindRegistry) -> dict[str, str]:
    ref = event.involvedObject
    api_version = kinds.lookup(ref.kind).api_version if ref.kind in kinds else ""
    return {
        "apiVersion": api_version,
        "kind": ref.kind,
        "name": ref.name,
        "namespace": ref.namespace,
        "uid": ref.uid,
    }


def _metadata(event: Event) -> dict[str, Any]:
    return {
        "name": event_name(event),
        "namespace": event.involvedObject.namespace,
        "uid": event_uid(event),
        "resourceVersion": str(event.resourceVersion),
        "creationTimestamp": _time(event.eventTime),
    }


def core_event(event: Event, kinds: KindRegistry) -> Manifest:
    """``event`` as a core/v1 ``Event``."""
    first = event.eventTime
    last = event.lastTimestamp or first
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": _metadata(event),
        "involvedObject": _reference(event, kinds),
        "reason": event.reason,
        "message": event.message,
        "type": event.type,
        "count": event.count,
        "firstTimestamp": _time(first),
        "lastTimestamp": _time(last),
        "eventTime": _micro_time(first),
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "reportingInstance": COMPONENT,
        "action": event.reason,
    }


def events_v1_event(event: Event, kinds: KindRegistry) -> Manifest:
    """``event`` as an ``events.k8s.io/v1`` ``Event``."""
    first = event.eventTime
    last = event.lastTimestamp or first
    manifest: Manifest = {
        "apiVersion": f"{EVENTS_GROUP}/v1",
        "kind": "Event",
        "metadata": _metadata(event),
        "eventTime": _micro_time(first),
        "reportingController": COMPONENT,
        "reportingInstance": COMPONENT,
        "action": event.reason,
        "reason": event.reason,
        "regarding": _reference(event, kinds),
        "note": event.message,
        "type": event.type,
        "deprecatedSource": {"component": COMPONENT},
        "deprecatedFirstTimestamp": _time(first),
        "deprecatedLastTimestamp": _time(last),
        "deprecatedCount": event.count,
    }
    if event.count > 1:
        manifest["series"] = {"count": event.count, "lastObservedTime": _micro_time(last)}
    return manifest


def event_view(obj: dict[str, Any]) -> dict[str, Any]:
    """What an event's Table row reads, from either form: when it was last and first
    seen, its type, reason, object (``pytorchjob/mnist``), message, source and count."""
    ref = obj.get("involvedObject") or obj.get("regarding") or {}
    source = obj.get("source") or obj.get("deprecatedSource") or {}
    return {
        "metadata": obj.get("metadata") or {},
        "lastTimestamp": obj.get("lastTimestamp") or obj.get("deprecatedLastTimestamp"),
        "type": obj.get("type"),
        "reason": obj.get("reason"),
        "object": f"{str(ref.get('kind', '')).lower()}/{ref.get('name', '')}",
        "message": obj.get("message", obj.get("note")),
        "source": source.get("component") or obj.get("reportingController"),
        "count": obj.get("count", obj.get("deprecatedCount")),
    }


def _event_schema(v1: bool) -> Callable[[], dict[str, Any]]:
    def schema() -> dict[str, Any]:
        reference = {
            "type": "object",
            "description": "The object the event is about.",
            "properties": {
                name: {"type": "string"}
                for name in ("apiVersion", "kind", "name", "namespace", "uid")
            },
        }
        text = {"type": "string"}
        time = {"type": "string", "format": "date-time"}
        source = {"type": "object", "properties": {"component": text, "host": text}}
        if v1:
            return {
                "eventTime": {**time, "description": "When the event was first seen."},
                "series": {
                    "type": "object",
                    "properties": {"count": {"type": "integer"}, "lastObservedTime": time},
                },
                "reportingController": text,
                "reportingInstance": text,
                "action": text,
                "reason": text,
                "regarding": reference,
                "note": {**text, "description": "What happened, for a person."},
                "type": {**text, "description": "Normal or Warning."},
                "deprecatedSource": source,
                "deprecatedFirstTimestamp": time,
                "deprecatedLastTimestamp": time,
                "deprecatedCount": {"type": "integer"},
            }
        return {
            "involvedObject": reference,
            "reason": text,
            "message": {**text, "description": "What happened, for a person."},
            "type": {**text, "description": "Normal or Warning."},
            "count": {"type": "integer", "description": "How many times it happened."},
            "firstTimestamp": time,
            "lastTimestamp": time,
            "eventTime": time,
            "source": source,
            "reportingComponent": text,
            "reportingInstance": text,
            "action": text,
        }

    return schema


_COLUMNS = (
    Column("Last Seen", ".lastTimestamp", "date", "When the event was last seen"),
    Column("Type", ".type", description="Normal or Warning"),
    Column("Reason", ".reason", description="Why the event happened, for a machine"),
    Column("Object", ".object", description="The object the event is about"),
    Column("Message", ".message", description="What happened, for a person"),
    Column("Source", ".source", description="Who recorded the event", priority=1),
    Column("Count", ".count", "integer", "How many times it happened", priority=1),
    Column("First Seen", ".metadata.creationTimestamp", "date", "When first seen", priority=1),
)

EVENT = Kind(
    kind="Event",
    group="",
    versions=("v1",),
    plural="events",
    short_names=("ev",),
    columns=_COLUMNS,
    verbs=READ_VERBS,
    subresources=(),
    object_schema=_event_schema(v1=False),
    table_view=event_view,
)
EVENT_V1 = Kind(
    kind="Event",
    group=EVENTS_GROUP,
    versions=("v1",),
    plural="events",
    columns=_COLUMNS,
    verbs=READ_VERBS,
    subresources=(),
    object_schema=_event_schema(v1=True),
    table_view=event_view,
)


def check_event(_resource: Resource) -> None:
    """Events are read-only: every write is refused (405) before a validator matters."""
    raise MethodNotAllowed(_READ_ONLY)


_READ_ONLY = "events are read-only: Ketch's controllers record them"


# -- selecting -----------------------------------------------------------------------


def parse_selector(text: str | None) -> FieldSelector:
    return FieldSelector.parse(text, FIELDS, ALIASES)


def _fields(event: Event, kinds: KindRegistry) -> Mapping[str, str]:
    ref = event.involvedObject
    return {
        "involvedObject.name": ref.name,
        "involvedObject.namespace": ref.namespace,
        "involvedObject.uid": ref.uid,
        "involvedObject.kind": ref.kind,
        "involvedObject.apiVersion": _reference(event, kinds)["apiVersion"],
        "type": event.type,
        "reason": event.reason,
        "source": COMPONENT,
        "reportingComponent": COMPONENT,
        "metadata.name": event_name(event),
        "metadata.namespace": ref.namespace,
    }


class EventSource(RefusesWrites):
    """The store's events as a read-only source of either Event kind (by its group),
    narrowed to a field selector. Events' writes are in the store's change journal, so
    this is a :class:`~ketch.core.sources.JournaledSource`."""

    def __init__(
        self, store: ResourceStore, kinds: KindRegistry, selector: FieldSelector | None = None
    ) -> None:
        self.store = store
        self.kinds = kinds
        self.selector = selector or FieldSelector()

    def narrowed(self, selector: FieldSelector) -> EventSource:
        """This source, selecting what ``selector`` selects (its kinds made canonical:
        ``pytorchjobs`` is ``PyTorchJob``; an unknown kind is ``NotFound``)."""
        requirements = tuple(
            replace(r, value=self.kinds.lookup(r.value).kind)
            if r.field == "involvedObject.kind"
            else r
            for r in selector.requirements
        )
        return EventSource(self.store, self.kinds, FieldSelector(requirements))

    def _form(self, kind: Kind) -> Callable[[Event, KindRegistry], Manifest]:
        return events_v1_event if kind.group == EVENTS_GROUP else core_event

    def events(self, namespace: str | None, limit: int | None = None) -> EventList:
        """The events in ``namespace`` (``None``: all) the selector selects, oldest
        first; with ``limit``, the newest ``limit`` of them; and the store's revision
        they were read at."""
        selector = self.selector
        wanted_ns = selector.equal("involvedObject.namespace")
        if namespace is not None and wanted_ns not in (None, namespace):
            return EventList([], str(self.store.revision()))
        # what the store narrows a query by itself; the rest is checked here
        by_store = all(r.operator == "=" and r.field in _NARROWED for r in selector.requirements)
        found = self.store.event_list(
            selector.equal("involvedObject.kind"),
            namespace or wanted_ns,
            selector.equal("involvedObject.name"),
            limit=limit if by_store else None,
        )
        if not by_store:
            found.items = [e for e in found if self.selects(e)]
            if limit is not None:
                found.items = found.items[-limit:]
        return found

    def selects(self, event: Event) -> bool:
        return self.selector.matches(_fields(event, self.kinds).get)

    # -- Source ---------------------------------------------------------------------

    def refusal(self) -> KetchError:
        return MethodNotAllowed(_READ_ONLY)

    def get(self, kind: Kind, namespace: str, name: str) -> Manifest:
        object_name, _, number = name.rpartition(".")
        if object_name and number.isdigit():
            for event in self.store.list_events(None, namespace, object_name):
                if event.id == int(number):
                    return self._form(kind)(event, self.kinds)
        raise ObjectNotFound(
            f"Event {name!r} not found in namespace {namespace!r}",
            kind="Event",
            namespace=namespace,
            name=name,
        )

    def list(
        self,
        kind: Kind,
        namespace: str | None,
        *,
        label_selector: str | None,
        limit: int | None,
        continue_token: str | None,
    ) -> Page:
        if continue_token:
            raise InvalidSpec(
                "events are listed in one page; there is no next page", field="continue"
            )
        if not LabelSelector.parse(label_selector).matches({}):
            return Page([])  # events have no labels
        form = self._form(kind)
        found = self.events(namespace, limit)
        return Page([form(e, self.kinds) for e in found], None, found.resource_version)

    def versions(
        self, kind: Kind, namespace: str | None, selector: LabelSelector
    ) -> dict[str, str]:
        if not selector.matches({}):
            return {}
        return {event_uid(e): str(e.resourceVersion) for e in self.events(namespace)}

    def fetch(self, kind: Kind, uids: Iterable[str]) -> dict[str, Manifest]:
        wanted = set(uids)
        if not wanted:
            return {}
        form = self._form(kind)
        namespace = self.selector.equal("involvedObject.namespace")
        return {
            event_uid(e): form(e, self.kinds)
            for e in self.events(namespace)
            if event_uid(e) in wanted
        }

    # -- the change journal (watches) ----------------------------------------------

    def revision(self) -> int:
        return self.store.revision()

    def changes(self, kind: Kind, namespace: str | None, after: int) -> Changes:
        """The journaled writes to the events this source selects (in ``namespace``)
        after revision ``after``, each in ``kind``'s form."""
        wanted = namespace or self.selector.equal("involvedObject.namespace")
        found = self.store.changes(after, kind=EVENT_KIND, namespace=wanted)
        form = self._form(kind)
        items = []
        for change in found:
            event = Event.from_journal(change.object)
            if self.selects(event):
                items.append(replace(change, object=form(event, self.kinds)))
        return Changes(items, found.revision)

    def previous(self, kind: Kind, uid: str, before: int) -> Manifest | None:
        found = self.store.previous(EVENT_KIND, uid, before)
        if found is None:
            return None
        return self._form(kind)(Event.from_journal(found), self.kinds)


# The fields the store narrows a query by itself.
_NARROWED = ("involvedObject.kind", "involvedObject.namespace", "involvedObject.name")


# -- routes ---------------------------------------------------------------------------


def _source(state: ApiState, kind: Kind, field_selector: str | None) -> EventSource:
    source = state.source(kind)
    if not isinstance(source, EventSource):  # pragma: no cover - the core capability sets it
        raise KetchError("events are not served by this app")
    return source.narrowed(parse_selector(field_selector))


async def _list(
    state: ApiState,
    request: Request,
    kind: Kind,
    namespace: str | None,
    field_selector: str | None,
    label_selector: str | None,
    limit: int | None,
    timeout: float | None,
) -> Any:
    source = _source(state, kind, field_selector)
    visible: visibility.Visible | None = None
    nothing = False
    if namespace is None:  # across namespaces: only those the caller may read
        namespace, visible, nothing = visibility.for_request(request, kind, None)
    if is_watch(request):
        # the source selects by the field selector itself
        params = WatchParams.of(
            request,
            namespace,
            label_selector=label_selector,
            timeout=timeout,
            fields=None,
            visible=visible,
        )
        return watch_response(
            request, source, kind, params, notifier=state.notifier, stopping=state.stopping
        )
    if nothing:
        page = Page([])
    else:
        page = await run_in_threadpool(
            source.list,
            kind,
            namespace,
            label_selector=label_selector,
            # the newest ``limit`` of those the caller may see
            limit=limit if visible is None else None,
            continue_token=request.query_params.get("continue") or None,
        )
    if visible is not None:
        page.items = [item for item in page.items if visible(item)]
        if limit is not None:
            page.items = page.items[-limit:]
    # the store's revision the events were read at: a watch from it (kubectl get -w)
    # sends exactly the later changes
    version = page.resource_version or str(await run_in_threadpool(state.store.revision))
    return tables.list_response(kind, page.items, {"resourceVersion": version}, request)


async def _read(state: ApiState, request: Request, kind: Kind, namespace: str, name: str) -> Any:
    found = await run_in_threadpool(
        _source(state, kind, None).get,
        kind,
        validate_namespace(namespace, field="namespace"),
        validate_name(name, field="name"),
    )
    return tables.object_response(kind, found, request)


def _add_routes(kind: Kind, base: str) -> None:
    async def list_namespaced(
        namespace: str,
        request: Request,
        state: State,
        field_selector: FieldSelectorQ = None,
        label_selector: LabelSelectorQ = None,
        limit: LimitQ = None,
        timeout: TimeoutQ = None,
    ) -> Any:
        namespace = validate_namespace(namespace, field="namespace")
        return await _list(
            state, request, kind, namespace, field_selector, label_selector, limit, timeout
        )

    async def list_all(
        request: Request,
        state: State,
        field_selector: FieldSelectorQ = None,
        label_selector: LabelSelectorQ = None,
        limit: LimitQ = None,
        timeout: TimeoutQ = None,
    ) -> Any:
        return await _list(
            state, request, kind, None, field_selector, label_selector, limit, timeout
        )

    async def read(namespace: str, name: str, request: Request, state: State) -> Any:
        return await _read(state, request, kind, namespace, name)

    what = f"{kind.api_version} Events"
    router.add_api_route(
        f"{base}/namespaces/{{namespace}}/events",
        rule(KUBERNETES)(list_namespaced),
        methods=["GET"],
        summary=f"{what} in a namespace (fieldSelector; watch=true streams changes)",
    )
    router.add_api_route(
        f"{base}/events",
        rule(KUBERNETES)(list_all),
        methods=["GET"],
        summary=f"{what} in every namespace",
    )
    router.add_api_route(
        f"{base}/namespaces/{{namespace}}/events/{{name}}",
        rule(KUBERNETES)(read),
        methods=["GET"],
        summary=f"One of the {what}",
    )


_add_routes(EVENT, "/api/v1")
_add_routes(EVENT_V1, f"/apis/{EVENTS_GROUP}/v1")
