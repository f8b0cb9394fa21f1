"""Watching a kind as the Kubernetes API server streams it.

A watch (``?watch=true`` on a list, or the ``/watch/`` paths) answers a stream of
events, one JSON object per line (``Content-Type: application/json``)::

    {"type": "ADDED", "object": {...}}
    {"type": "MODIFIED", "object": {...}}
    {"type": "DELETED", "object": {...}}
    {"type": "BOOKMARK", "object": {"kind": ..., "metadata": {"resourceVersion": "42"}}}
    {"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired", ...}}

which ``kubectl get -w`` and the ``kubernetes`` client's ``Watch().stream`` read.
Asked with the Table media type (kubectl asks ``as=Table``), each event's object is
a ``meta.k8s.io`` Table of that one object, its column definitions in the first event
only, as the API server sends them. Asked with ``Accept: text/event-stream`` (a
browser's ``EventSource``), the same events come as server-sent events, with a
comment line as a heartbeat now and then.

What a watch sends, for the kinds whose writes the store journals (those kept in the
``resources`` table, pods, events, PipelineRuns, and namespaces, whose history is
read from the journal of the objects they hold; read from the store's change journal,
:meth:`ketch.core.sources.JournaledSource.changes`):

- ``resourceVersion`` unset, ``""`` or ``"0"``: the objects that exist, as ADDED,
  then every change after them (``sendInitialEvents=false``: only the changes);
- ``resourceVersion=N``: exactly the changes after revision N, in order
  (``sendInitialEvents=true``: the objects that exist first, then the changes);
- N older than the journal keeps: one ERROR event carrying a 410 ``Expired``
  ``Status`` ("too old resource version: N (M)"), then the stream ends, as
  Kubernetes answers; the client lists again;
- ``allowWatchBookmarks=true``: a BOOKMARK (only ``metadata.resourceVersion``, how far
  the watch has read) every ``KETCH_WATCH_BOOKMARK_SECONDS`` (60) and when the watch
  ends, and, with ``sendInitialEvents=true``, one annotated
  ``k8s.io/initial-events-end`` after the initial objects;
- ``timeoutSeconds``: the stream ends after that long;
- ``labelSelector`` and ``fieldSelector`` (``metadata.name``, ``metadata.namespace``):
  only the objects they select; an object that stops being selected is sent as
  DELETED, one that starts being selected as ADDED, as Kubernetes does.

Every write of the server's process that journals a change wakes the watches as it
commits, whoever made it (a request, a controller or a service, in any thread): the
app's :class:`~ketch.core.store.db.Database` tells its ``commits``
(:mod:`ketch.core.store.commits`), and the app's :class:`ChangeNotifier` listens.
Writes made by other processes (a CLI, a pipeline task, a second server on the same
store) are found by one reader per server, which reads the store's revision every
``KETCH_WATCH_POLL_SECONDS`` (0.25) while any watch is open and wakes them when it
moved. A woken watch reads the journal after the last change it sent (one indexed
query).

A kind served from elsewhere without a journal (a capability's source that keeps no
revisions) is watched by polling ``Source.versions`` and fetching the objects whose
version changed (:func:`watch`), and sends the same events; resuming from a
``resourceVersion`` then sends the changes from the moment the watch starts.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from fastapi import Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from ketch.core.errors import Expired, InvalidSpec
from ketch.core.kinds import Kind
from ketch.core.sources import JournaledSource, Manifest, Source
from ketch.core.store.resources import CHANGES_PAGE, Change, parse_revision
from ketch.core.store.selectors import LabelSelector
from ketch.server import fieldselectors, tables
from ketch.server.errors import status_body
from ketch.server.fieldselectors import FieldSelector

log = logging.getLogger(__name__)

POLL_ENV = "KETCH_WATCH_POLL_SECONDS"
DEFAULT_POLL_SECONDS = 0.25
#: How often a watch of a source without a journal polls it, unless POLL_ENV says.
DEFAULT_SOURCE_POLL_SECONDS = 1.0
#: How long a journal watch waits without being woken before it reads the journal anyway.
IDLE_READ_SECONDS = 5.0
BOOKMARK_ENV = "KETCH_WATCH_BOOKMARK_SECONDS"
DEFAULT_BOOKMARK_SECONDS = 60.0
HEARTBEAT_SECONDS = 15.0
#: The fields a watch of a kind can select on unless the caller says more.
SELECTABLE_FIELDS = fieldselectors.OBJECT_FIELDS
#: The annotation of the bookmark that ends a watch's initial objects.
INITIAL_EVENTS_END = "k8s.io/initial-events-end"
_STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}

Event = dict[str, Any]


def _seconds(env: str, default: float) -> float:
    try:
        value = float(os.environ.get(env, default))
    except ValueError:
        return default
    return value if value > 0 else default


def poll_interval() -> float:
    """How often the store's revision is read for writes made by other processes."""
    return _seconds(POLL_ENV, DEFAULT_POLL_SECONDS)


def source_poll_interval() -> float:
    """How often a watch of a source without a journal polls it."""
    return _seconds(POLL_ENV, DEFAULT_SOURCE_POLL_SECONDS)


def bookmark_interval() -> float:
    """How often a watch that allows bookmarks sends one."""
    return _seconds(BOOKMARK_ENV, DEFAULT_BOOKMARK_SECONDS)


class ChangeNotifier:
    """A counter bumped on every journaled write of the server's process (its
    ``Database``'s commits) and on writes to sources without a journal; watches wait
    on it. One per app: two apps in one process each wake their own watches."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seq = 0
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self._followers = 0
        self._reader: asyncio.Task[None] | None = None

    def notify(self) -> None:
        """Count a write and wake every waiting watch (from any thread: the event
        loop's, or a controller's as its write commits)."""
        with self._lock:
            self._seq += 1
            waiters = list(self._waiters)
        for loop, event in waiters:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # that loop has closed; its waiter goes with it
                pass

    @property
    def seq(self) -> int:
        return self._seq

    async def wait(self, seen: int, timeout: float) -> int:
        """Wait until the counter moves past ``seen`` or ``timeout`` seconds pass; the
        counter then."""
        if self._seq != seen or timeout <= 0:
            return self._seq
        waiter = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            self._waiters.add(waiter)
        try:
            if self._seq == seen:
                await asyncio.wait_for(waiter[1].wait(), timeout)
        except TimeoutError:
            pass
        finally:
            with self._lock:
                self._waiters.discard(waiter)
        return self._seq

    @asynccontextmanager
    async def following(self, read: Callable[[], int], interval: float) -> AsyncIterator[None]:
        """While the block runs, the store's revision is read (``read``) every
        ``interval`` seconds and a change of it wakes the waiting watches: writes made
        by other processes. One reader serves every watch in such a block."""
        self._followers += 1
        if self._reader is None or self._reader.done():
            self._reader = asyncio.get_running_loop().create_task(self._follow(read, interval))
        try:
            yield
        finally:
            self._followers -= 1  # the reader ends once no watch follows

    async def _follow(self, read: Callable[[], int], interval: float) -> None:
        last: int | None = None
        while self._followers > 0:
            try:
                revision = await run_in_threadpool(read)
            except Exception:  # the store is unreachable for now: the watches wait
                log.warning("reading the store's revision for the watches failed", exc_info=True)
            else:
                if last is not None and revision != last:
                    self.notify()
                last = revision
            await asyncio.sleep(interval)


# -- what a watch asks for ----------------------------------------------------------------


def _flag(value: str | None, field: str) -> bool | None:
    if value is None or value == "":
        return None
    lowered = value.lower()
    if lowered in ("true", "1", "t", "yes"):
        return True
    if lowered in ("false", "0", "f", "no"):
        return False
    raise InvalidSpec(f"must be true or false, not {value!r}", field=field)


def sends_initial(request: Request) -> bool:
    """Whether a watch ``request`` starts with the objects that exist (no
    ``resourceVersion``, or ``"0"``; ``sendInitialEvents`` decides when given)."""
    given = _flag(request.query_params.get("sendInitialEvents"), "sendInitialEvents")
    if given is not None:
        return given
    return (request.query_params.get("resourceVersion") or "0") == "0"


def is_watch(request: Request) -> bool:
    """Whether a list request asks to watch (``?watch=true``)."""
    return bool(_flag(request.query_params.get("watch"), "watch"))


@dataclass(frozen=True)
class WatchParams:
    """A watch's query: where, what it selects, where it starts and how it ends."""

    namespace: str | None = None
    labels: LabelSelector = LabelSelector(())
    fields: FieldSelector = FieldSelector()
    resource_version: str | None = None
    send_initial: bool | None = None
    bookmarks: bool = False
    timeout: float | None = None
    #: how the API serves a stored object (a cluster-scoped one without its namespace)
    present: Callable[[Manifest], Manifest] | None = field(default=None, compare=False)
    #: which objects the caller may see (:mod:`ketch.server.visibility`; ``None``:
    #: all); the others are never sent, in any event
    visible: Callable[[Manifest], bool] | None = field(default=None, compare=False)

    @classmethod
    def of(
        cls,
        request: Request,
        namespace: str | None,
        *,
        label_selector: str | None = None,
        timeout: float | None = None,
        fields: tuple[str, ...] | None = SELECTABLE_FIELDS,
        present: Callable[[Manifest], Manifest] | None = None,
        visible: Callable[[Manifest], bool] | None = None,
    ) -> WatchParams:
        """The watch ``request`` asks for; a malformed parameter is ``InvalidSpec``
        naming it (400, before the stream starts). ``fields``: what its
        ``fieldSelector`` may select by; ``None``: the source selects by it itself
        (events), the watch does not read it."""
        query = request.query_params
        return cls(
            namespace=namespace,
            labels=LabelSelector.parse(
                label_selector if label_selector is not None else query.get("labelSelector")
            ),
            fields=(
                FieldSelector()
                if fields is None
                else fieldselectors.parse(query.get("fieldSelector"), fields)
            ),
            resource_version=query.get("resourceVersion") or None,
            send_initial=_flag(query.get("sendInitialEvents"), "sendInitialEvents"),
            bookmarks=bool(_flag(query.get("allowWatchBookmarks"), "allowWatchBookmarks")),
            timeout=timeout,
            present=present,
            visible=visible,
        )

    @property
    def initial(self) -> bool:
        """Whether the watch starts with the objects that exist (as ADDED)."""
        if self.send_initial is not None:
            return self.send_initial
        return self.resource_version in (None, "0")

    @property
    def filtered(self) -> bool:
        return bool(self.labels.requirements) or bool(self.fields)

    def may_see(self, obj: Manifest) -> bool:
        """Whether the caller may see ``obj`` (an object never changes the namespace
        or name this is judged by, so neither do its events)."""
        return self.visible is None or self.visible(obj)

    def shown(self, obj: Manifest) -> Manifest:
        """``obj`` as the API serves it."""
        return obj if self.present is None else self.present(obj)

    def selects(self, obj: Mapping[str, Any]) -> bool:
        """Whether ``obj`` is one this watch selects."""
        metadata = obj.get("metadata") or {}
        if self.labels.requirements and not self.labels.matches(metadata.get("labels") or {}):
            return False
        return not self.fields or fieldselectors.matches(self.fields, obj)


def _bookmark(kind: Kind, revision: int | str, *, initial_end: bool = False) -> Event:
    metadata: dict[str, Any] = {"resourceVersion": str(revision)}
    if initial_end:
        metadata["annotations"] = {INITIAL_EVENTS_END: "true"}
    return {
        "type": "BOOKMARK",
        "object": {"kind": kind.kind, "apiVersion": kind.api_version, "metadata": metadata},
    }


def _error(exc: Expired) -> Event:
    return {
        "type": "ERROR",
        "object": status_body(exc.http_status, str(exc), reason=exc.status_reason),
    }


def _with_version(obj: Manifest, revision: int) -> Manifest:
    metadata = dict(obj.get("metadata") or {})
    metadata["resourceVersion"] = str(revision)
    return {**obj, "metadata": metadata}


# -- watching the change journal ----------------------------------------------------------


class _Selection:
    """Which objects a filtered watch has sent as selected, so that an object that
    stops (starts) being selected is sent as DELETED (ADDED), with its last selected
    state, as Kubernetes does."""

    def __init__(self, source: JournaledSource, kind: Kind, params: WatchParams) -> None:
        self.source = source
        self.kind = kind
        self.params = params
        self.selected: dict[str, Manifest] = {}  # uid -> the object as last selected
        #: uids whose selection is known (all of them after an initial list)
        self.known: set[str] = set()
        self.all_known = False

    def remember(self, obj: Manifest) -> None:
        uid = str((obj.get("metadata") or {}).get("uid") or "")
        self.known.add(uid)
        if self.params.selects(obj):
            self.selected[uid] = obj

    async def event(self, change: Change) -> Event | None:
        uid = change.uid
        obj = change.object
        before: Manifest | None
        if uid in self.known or self.all_known or change.type == "ADDED":
            before = self.selected.get(uid)
        else:
            # a watch resumed from a version: how the object was then, from the journal
            before = await run_in_threadpool(self.source.previous, self.kind, uid, change.revision)
            if before is None:  # older than the journal: judged by its state now
                before = obj
            if not self.params.selects(before):
                before = None
        self.known.add(uid)
        now = change.type != "DELETED" and self.params.selects(obj)
        if now:
            self.selected[uid] = obj
        else:
            self.selected.pop(uid, None)
        if now:
            return {"type": "MODIFIED" if before is not None else "ADDED", "object": obj}
        if before is None:
            return None
        gone = obj if change.type == "DELETED" else _with_version(before, change.revision)
        return {"type": "DELETED", "object": gone}


async def journal_events(
    source: JournaledSource,
    kind: Kind,
    params: WatchParams,
    *,
    notifier: ChangeNotifier,
    stopping: threading.Event,
    interval: float | None = None,
    heartbeat: bool = False,
) -> AsyncIterator[Event | None]:
    """The events of a watch of ``kind``, read from the store's change journal; with
    ``heartbeat``, ``None`` after every :data:`HEARTBEAT_SECONDS` without one."""
    async with notifier.following(source.revision, interval or poll_interval()):
        async for event in _journal_events(source, kind, params, notifier, stopping, heartbeat):
            yield event


async def _journal_events(
    source: JournaledSource,
    kind: Kind,
    params: WatchParams,
    notifier: ChangeNotifier,
    stopping: threading.Event,
    heartbeat: bool,
) -> AsyncIterator[Event | None]:
    every = bookmark_interval()
    started = time.monotonic()
    deadline = started + params.timeout if params.timeout else None
    beat = started
    selection = _Selection(source, kind, params) if params.filtered else None
    seen = notifier.seq
    if params.initial:
        position = await run_in_threadpool(source.revision)  # if the list has none of its own
        page = await run_in_threadpool(
            source.list,
            kind,
            params.namespace,
            label_selector=None,
            limit=None,
            continue_token=None,
        )
        if page.resource_version:
            position = parse_revision(page.resource_version)
        if selection is not None:
            selection.all_known = True
        for obj in map(params.shown, page.items):
            if not params.may_see(obj):
                continue
            if selection is not None:
                selection.remember(obj)
            if params.selects(obj):
                yield {"type": "ADDED", "object": obj}
        if params.bookmarks and params.send_initial:
            yield _bookmark(kind, position, initial_end=True)
    else:
        given = params.resource_version or "0"
        position = parse_revision(given, "resourceVersion")
    next_bookmark = time.monotonic() + every
    while not stopping.is_set():
        try:
            changes = await run_in_threadpool(source.changes, kind, params.namespace, position)
        except Expired as exc:
            yield _error(exc)
            return
        for change in changes:
            if params.present is not None:
                change = replace(change, object=params.present(change.object))
            if not params.may_see(change.object):
                continue
            if selection is None:
                yield {"type": change.type, "object": change.object}
                beat = time.monotonic()
                continue
            event = await selection.event(change)
            if event is not None:
                yield event
                beat = time.monotonic()
        position = changes.revision
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            break
        if params.bookmarks and now >= next_bookmark:
            yield _bookmark(kind, position)
            next_bookmark, beat = now + every, now
        if heartbeat and now - beat >= HEARTBEAT_SECONDS:
            yield None
            beat = now
        if len(changes.items) >= CHANGES_PAGE:
            continue  # more are waiting: read on at once
        # Wait until a write wakes the watch (one of this process's as it commits, or
        # another process's found by the revision reader), or a bookmark, a heartbeat
        # or the end is due; read
        # the journal anyway every IDLE_READ_SECONDS; see ``stopping`` within a second.
        due = now + IDLE_READ_SECONDS
        if deadline is not None:
            due = min(due, deadline)
        if params.bookmarks:
            due = min(due, next_bookmark)
        if heartbeat:
            due = min(due, beat + HEARTBEAT_SECONDS)
        while not stopping.is_set():
            left = due - time.monotonic()
            if left <= 0:
                break
            woken = await notifier.wait(seen, min(left, 1.0))
            if woken != seen:
                seen = woken
                break
    if params.bookmarks:
        yield _bookmark(kind, position)


# -- watching a source without a journal --------------------------------------------------


async def watch(
    source: Source,
    kind: Kind,
    namespace: str | None,
    selector: LabelSelector,
    *,
    notifier: ChangeNotifier,
    stopping: threading.Event,
    send_initial: bool = True,
    timeout: float | None = None,
    interval: float | None = None,
    selects: Callable[[Manifest], bool] | None = None,
) -> AsyncIterator[Event | None]:
    """Yield ``{"type", "object"}`` events of a source without a journal; ``None`` now
    and then as a heartbeat.

    Every ``interval`` seconds, and at once after a write through this server, it
    reads the ``uid -> version`` map of the watched objects (``Source.versions``) and
    fetches those whose version changed. With ``send_initial`` the objects that exist
    when the watch starts come first, as ADDED events. ``selects`` narrows the objects
    further (a field selector).
    """
    interval = interval or source_poll_interval()
    known: dict[str, tuple[str, dict[str, Any]]] = {}
    first = True
    seen = -1
    last_beat = time.monotonic()
    deadline = time.monotonic() + timeout if timeout else None
    while not stopping.is_set():
        seen = notifier.seq
        events = await run_in_threadpool(
            _changes, source, kind, namespace, selector, known, selects
        )
        if not first or send_initial:
            for event in events:
                yield event
                last_beat = time.monotonic()
        first = False
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            return
        if now - last_beat >= HEARTBEAT_SECONDS:
            last_beat = now
            yield None
        wait = interval if deadline is None else min(interval, deadline - now)
        await notifier.wait(seen, wait)


def _changes(
    source: Source,
    kind: Kind,
    namespace: str | None,
    selector: LabelSelector,
    known: dict[str, tuple[str, dict[str, Any]]],
    selects: Callable[[Manifest], bool] | None = None,
) -> list[dict[str, Any]]:
    versions = source.versions(kind, namespace, selector)
    changed = [uid for uid, version in versions.items() if known.get(uid, ("",))[0] != version]
    fetched = source.fetch(kind, changed)
    events: list[dict[str, Any]] = []
    added = sorted(
        fetched.values(),
        key=lambda m: (m["metadata"].get("creationTimestamp") or "", m["metadata"]["name"]),
    )
    for manifest in added:
        if selects is not None and not selects(manifest):
            continue
        uid = manifest["metadata"]["uid"]
        version = str(manifest["metadata"].get("resourceVersion", ""))
        previous = known.get(uid)
        if previous is not None and previous[0] == version:
            continue
        known[uid] = (version, manifest)
        events.append({"type": "MODIFIED" if previous else "ADDED", "object": manifest})
    for uid in [uid for uid in known if uid not in versions]:
        _version, manifest = known.pop(uid)
        events.append({"type": "DELETED", "object": manifest})
    return events


async def polled_events(
    source: Source,
    kind: Kind,
    params: WatchParams,
    *,
    notifier: ChangeNotifier,
    stopping: threading.Event,
    interval: float | None = None,
) -> AsyncIterator[Event | None]:
    """The events of a watch of a source without a journal (see :func:`watch`)."""
    async for event in watch(
        source,
        kind,
        params.namespace,
        params.labels,
        notifier=notifier,
        stopping=stopping,
        send_initial=params.initial,
        timeout=params.timeout,
        interval=interval,
        selects=(
            (lambda obj: params.may_see(obj) and params.selects(params.shown(obj)))
            if params.fields or params.visible is not None
            else None
        ),
    ):
        if event is not None:
            event = {"type": event["type"], "object": params.shown(event["object"])}
        yield event


# -- the response -------------------------------------------------------------------------


def wants_event_stream(accept: str | None) -> bool:
    """Whether ``accept`` prefers server-sent events to JSON (a browser's
    ``EventSource`` asks ``text/event-stream``; kubectl and the clients ask JSON)."""
    for part in (accept or "").split(","):
        media = part.split(";", 1)[0].strip().lower()
        if media == "text/event-stream":
            return True
        if media in ("application/json", "application/*", "*/*"):
            return False
    return False


def sse(event: dict[str, Any] | None) -> bytes:
    """One server-sent event carrying ``event`` as JSON (a comment for a heartbeat)."""
    if event is None:
        return b": keep-alive\n\n"
    return f"data: {json.dumps(event, separators=(',', ':'), default=str)}\n\n".encode()


def json_line(event: dict[str, Any]) -> bytes:
    """One event of a Kubernetes watch stream: a JSON object and a newline."""
    return json.dumps(event, separators=(",", ":"), default=str).encode() + b"\n"


class _TableEvents:
    """Watch events with their objects as Tables: column definitions in the first."""

    def __init__(self, kind: Kind, wanted: tables.TableRequest) -> None:
        self.kind = kind
        self.wanted = wanted
        self.first = True

    def __call__(self, event: Event) -> Event:
        if event["type"] == "ERROR":
            return event
        obj = event["object"]
        version = (obj.get("metadata") or {}).get("resourceVersion")
        metadata = {"resourceVersion": str(version)} if version not in (None, "") else {}
        rows = [] if event["type"] == "BOOKMARK" else [obj]
        table = tables.table(self.kind, rows, self.wanted, metadata)
        if self.first and rows:
            self.first = False
        else:
            table["columnDefinitions"] = []
        return {"type": event["type"], "object": table}


def respond(
    request: Request,
    source: Source,
    kind: Kind,
    namespace: str | None,
    *,
    notifier: ChangeNotifier,
    stopping: threading.Event,
    label_selector: str | None = None,
    timeout: float | None = None,
    fields: tuple[str, ...] = SELECTABLE_FIELDS,
    present: Callable[[Manifest], Manifest] | None = None,
    visible: Callable[[Manifest], bool] | None = None,
) -> StreamingResponse:
    """The response to a watch of ``kind`` (in ``namespace``; ``None``: all) from
    ``source``, in the format ``request`` asks for (see the module's docstring).

    Query parameters it reads: ``resourceVersion``, ``sendInitialEvents``,
    ``allowWatchBookmarks``, ``fieldSelector`` (over ``fields``) and, unless given,
    ``labelSelector``; a malformed one is ``InvalidSpec`` (400) before the stream
    starts. ``present`` makes a stored object the one the API serves (selectors see
    that one); ``visible`` says which objects the caller may see (the others are
    never sent)."""
    params = WatchParams.of(
        request,
        namespace,
        label_selector=label_selector,
        timeout=timeout,
        fields=fields,
        present=present,
        visible=visible,
    )
    return watch_response(request, source, kind, params, notifier=notifier, stopping=stopping)


def watch_response(
    request: Request,
    source: Source,
    kind: Kind,
    params: WatchParams,
    *,
    notifier: ChangeNotifier,
    stopping: threading.Event,
) -> StreamingResponse:
    """The response to the watch ``params`` of ``kind`` from ``source``: read from the
    change journal when the source's writes are in it, else polled (see the module's
    docstring), as ``request`` asks for it (:func:`stream`)."""
    event_stream = wants_event_stream(request.headers.get("accept"))
    events: AsyncIterator[Event | None]
    if isinstance(source, JournaledSource):
        if not params.initial:  # a resourceVersion that is no number: 400, not a stream
            parse_revision(params.resource_version or "0", "resourceVersion")
        events = journal_events(
            source, kind, params, notifier=notifier, stopping=stopping, heartbeat=event_stream
        )
    else:
        events = polled_events(source, kind, params, notifier=notifier, stopping=stopping)
    return stream(request, kind, events)


def stream(request: Request, kind: Kind, events: AsyncIterator[Event | None]) -> StreamingResponse:
    """``events`` of a watch of ``kind`` (``None``: a heartbeat) as ``request`` asks for
    them: server-sent events for ``Accept: text/event-stream``, else newline-delimited
    JSON, each object a Table when the request asks for Tables (kubectl)."""
    table = tables.requested(request)
    if wants_event_stream(request.headers.get("accept")):

        async def server_sent() -> AsyncIterator[bytes]:
            async for event in events:
                yield sse(event)

        return StreamingResponse(
            server_sent(), media_type="text/event-stream", headers=_STREAM_HEADERS
        )

    shape = _TableEvents(kind, table) if table is not None else None

    async def lines() -> AsyncIterator[bytes]:
        async for event in events:
            if event is None:
                continue  # a JSON watch stream has no heartbeats
            yield json_line(shape(event) if shape is not None else event)

    return StreamingResponse(lines(), media_type="application/json", headers=_STREAM_HEADERS)
