"""``ResourceStore``: declarative resources and their events, in the ``resources`` and
``resource_events`` tables, and the change journal watches read.

Semantics follow the Kubernetes API server: ``metadata.generation`` counts spec
changes, and ``metadata.resourceVersion`` is the store's revision at the object's
last write, as etcd's revision is for Kubernetes. One sequence numbers every write to
every resource (create, update, status write, delete: :meth:`ResourceStore.revision`
is the last number given), so a newer write always has a greater number. A writer
that sends the version it read is refused with 409 Conflict when someone else wrote
in between.

Each write also journals itself in the same transaction (``resource_changes``: its
revision, the object's kind, namespace, name and uid, ``ADDED``/``MODIFIED``/
``DELETED`` and the object as written), so a watch can ask for exactly the changes
after a version (:meth:`ResourceStore.changes`). The journal keeps the last ten
minutes of changes (``KETCH_WATCH_HISTORY_SECONDS``), at least the newest
:data:`HISTORY_MIN_ENTRIES` and at most :data:`HISTORY_MAX_ENTRIES`; older ones are
removed as writes go on (:meth:`ResourceStore.compact`), and asking for changes
after a version older than the journal keeps is :class:`~ketch.core.errors.Expired`
(410: the client lists again).

Pods (:mod:`ketch.core.store.pods`) and events (``resource_events``: a new event, a
repeat counted, an event removed with its object) take numbers of the same sequence
and journal themselves in the same transaction, with the same functions
(:func:`next_revision`, :func:`journal`), so their lists answer the store's revision
too and their watches resume from it exactly. The journal records an event as
:meth:`Event.journaled` writes it (the API serves it in its own form).

Revisions are given in the order the writes commit, so a reader that has seen
revision N and asks for the changes after N never misses a lower one committed
later. On SQLite every write transaction starts with ``BEGIN IMMEDIATE`` (one writer
at a time, see :mod:`ketch.core.store.db`). On PostgreSQL a write takes its number
with ``UPDATE resource_revision SET revision = revision + 1``, which holds the
counter row's lock until the transaction commits: the next writer's update waits
for that commit, then reads the committed number. Without that lock (a sequence,
say) a transaction could take 7, another take 8 and commit first, and a watcher
reading "after 6" would see 8, move its position to 8 and never see 7.
"""

from __future__ import annotations

import builtins
import logging
import os
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import and_, delete, func, inspect, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ketch.core.errors import (
    AlreadyExists,
    Conflict,
    Expired,
    InvalidSpec,
    NotFound,
    ObjectNotFound,
)
from ketch.core.paging import decode_token, encode_token
from ketch.core.resource import DEFAULT_NAMESPACE, ObjectMeta, Resource, utcnow
from ketch.core.store.commits import mark_journaled
from ketch.core.store.db import Database, retry_locked
from ketch.core.store.models import (
    Base,
    ChangeRow,
    ResourceEventRow,
    ResourceRow,
    RevisionRow,
)
from ketch.core.store.selectors import LabelSelector

log = logging.getLogger(__name__)

EventType = Literal["Normal", "Warning"]
# What an apply did to the stored object.
Applied = Literal["created", "configured", "unchanged"]

ChangeType = Literal["ADDED", "MODIFIED", "DELETED"]

_PAGE = 500

#: How long the change journal keeps a change (seconds; ``KETCH_WATCH_HISTORY_SECONDS``).
HISTORY_ENV = "KETCH_WATCH_HISTORY_SECONDS"
DEFAULT_HISTORY_SECONDS = 600.0
#: The journal keeps at least this many of the newest changes, however old...
HISTORY_MIN_ENTRIES = 1_000
#: ...and at most this many, however recent.
HISTORY_MAX_ENTRIES = 100_000
#: Writes compact the journal when their revision is a multiple of this.
COMPACT_EVERY = 128
#: Changes read at most at a time (:meth:`ResourceStore.changes`).
CHANGES_PAGE = 1_000


def history_seconds() -> float:
    """``KETCH_WATCH_HISTORY_SECONDS``, or ten minutes."""
    try:
        value = float(os.environ.get(HISTORY_ENV, DEFAULT_HISTORY_SECONDS))
    except ValueError:
        return DEFAULT_HISTORY_SECONDS
    return value if value >= 0 else DEFAULT_HISTORY_SECONDS


@dataclass
class ResourceList:
    """One page of a list: the items and, when more remain, the token for the next page."""

    items: list[Resource]
    continue_token: str | None = None
    #: the store's revision the list was read at (the list's ``metadata.resourceVersion``)
    resource_version: str = ""

    def __iter__(self) -> Iterator[Resource]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


class ObjectReference(BaseModel):
    kind: str
    namespace: str
    name: str
    uid: str


#: The namespace of events' uids (each the uuid5 of the event's number in the log).
EVENT_UIDS = uuid.UUID("6f1d9c52-5f0b-4a57-9a43-3d2f3c1b7e10")
#: The kind the change journal records events' writes under.
EVENT_KIND = "Event"


class Event(BaseModel):
    """A Kubernetes-style event about a resource. ``id``: its number in the log;
    ``resourceVersion``: the store's revision at its last write (its first, or a
    repeat counted), its ``metadata.resourceVersion`` as the API serves it."""

    involvedObject: ObjectReference
    type: str
    reason: str
    message: str
    eventTime: datetime
    count: int = 1
    lastTimestamp: datetime | None = None
    id: int = Field(default=0, exclude=True)
    resourceVersion: int = Field(default=0, exclude=True)

    @property
    def name(self) -> str:
        """Its name as the API serves it: ``{object name}.{its number}``, unique and stable."""
        return f"{self.involvedObject.name}.{self.id}"

    @property
    def uid(self) -> str:
        return str(uuid.uuid5(EVENT_UIDS, str(self.id)))

    def journaled(self) -> dict[str, Any]:
        """The event as the change journal keeps it: kind ``Event``, its name, namespace,
        uid and resourceVersion as metadata, the event itself under ``event`` (the API
        serves it in either Event group's form, :meth:`from_journal` reads it back)."""
        return {
            "apiVersion": "v1",
            "kind": EVENT_KIND,
            "metadata": {
                "name": self.name,
                "namespace": self.involvedObject.namespace,
                "uid": self.uid,
                "resourceVersion": str(self.resourceVersion),
            },
            "event": {**self.model_dump(mode="json"), "id": self.id},
        }

    @classmethod
    def from_journal(cls, obj: Mapping[str, Any]) -> Event:
        """The event a journaled object (:meth:`journaled`) records."""
        version = (obj.get("metadata") or {}).get("resourceVersion") or 0
        return cls.model_validate({**obj["event"], "resourceVersion": int(version)})


@dataclass
class EventList:
    """Events, oldest first, and the store's revision they were read at."""

    items: list[Event]
    resource_version: str = ""

    def __iter__(self) -> Iterator[Event]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


@dataclass
class ManifestList:
    """One page of a list as manifests (:meth:`ResourceStore.list_manifests`)."""

    items: list[dict[str, Any]]
    continue_token: str | None = None
    resource_version: str = ""


@dataclass(frozen=True)
class Change:
    """One write to a resource, as the journal keeps it: its revision, what it did and
    the object as written (a deleted object as it was, at the revision of its
    deletion)."""

    revision: int
    type: ChangeType
    kind: str
    namespace: str
    name: str
    uid: str
    object: dict[str, Any]


@dataclass
class Changes:
    """Changes after a revision, oldest first, and ``revision``: how far they go (every
    change up to it of the kind and namespace asked for is in ``items``)."""

    items: list[Change]
    revision: int

    def __iter__(self) -> Iterator[Change]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


@dataclass(frozen=True)
class ListCursor:
    """Where a paged list (by namespace, then name) goes on from, in its continue
    token."""

    namespace: str
    name: str
    #: the revision the list's first page was read at (tokens from before it lack one)
    revision: int | None = None

    def encode(self) -> str:
        position: dict[str, Any] = {"ns": self.namespace, "name": self.name}
        if self.revision is not None:
            position["rv"] = self.revision
        return encode_token(position)

    @classmethod
    def decode(cls, token: str) -> ListCursor:
        position = decode_token(token, field="continue", keys=("ns", "name"))
        revision = position.get("rv")
        if revision is not None and (not isinstance(revision, int) or isinstance(revision, bool)):
            raise InvalidSpec("the continue token is not one this server issued", field="continue")
        return cls(str(position["ns"]), str(position["name"]), revision)


def _aware(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def _metadata(row: ResourceRow) -> dict[str, Any]:
    """A stored resource's metadata by ``ObjectMeta``'s field names (``None``: unset)."""
    return {
        "name": row.name,
        "namespace": row.namespace,
        "uid": row.uid,
        "labels": dict(row.labels or {}),
        "annotations": dict(row.annotations or {}),
        "ownerReferences": list(row.owner_references) if row.owner_references else None,
        "managedFields": list(row.managed_fields) if row.managed_fields else None,
        "generation": row.generation,
        "resourceVersion": str(row.resource_version),
        "creationTimestamp": _aware(row.created_at),
    }


def to_resource(row: ResourceRow) -> Resource:
    return Resource(
        apiVersion=row.api_version,
        kind=row.kind,
        metadata=ObjectMeta(**_metadata(row)),
        spec=row.spec or {},
        status=row.status or {},
    )


def _timestamp(value: datetime) -> str:
    """A UTC time as a manifest writes it (``2026-01-02T03:04:05.5Z``, as pydantic does)."""
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    if value.microsecond:
        text += f".{value.microsecond:06d}"
    return text + "Z"


def to_manifest(row: ResourceRow) -> dict[str, Any]:
    """``to_resource(row).to_manifest()`` without building the models in between: a list
    of many objects spends most of its time there otherwise."""
    metadata: dict[str, Any] = {}
    for key, value in _metadata(row).items():
        if isinstance(value, datetime):
            if value.utcoffset() != timedelta(0):
                return to_resource(row).to_manifest()
            value = _timestamp(value)
        if value is not None:
            metadata[key] = value
    return {
        "apiVersion": row.api_version,
        "kind": row.kind,
        "metadata": metadata,
        "spec": row.spec or {},
        "status": row.status or {},
    }


def _to_event(row: ResourceEventRow) -> Event:
    return Event(
        id=row.id,
        involvedObject=ObjectReference(
            kind=row.kind, namespace=row.namespace, name=row.name, uid=row.resource_uid
        ),
        type=row.type,
        reason=row.reason,
        message=row.message,
        eventTime=_aware(row.created_at) or utcnow(),
        count=row.count or 1,
        lastTimestamp=_aware(row.last_seen_at) or _aware(row.created_at),
        resourceVersion=row.resource_version or 0,
    )


def _not_found(kind: str, namespace: str, name: str) -> NotFound:
    return ObjectNotFound(
        f"{kind} {name!r} not found in namespace {namespace!r}",
        kind=kind,
        namespace=namespace,
        name=name,
        hint=f"list what exists with: ketch get {kind.lower()} -n {namespace}",
    )


def _parse_version(value: str | int) -> int:
    return parse_revision(value)


def parse_revision(value: str | int, field: str = "metadata.resourceVersion") -> int:
    """A ``resourceVersion`` as the revision it names; ``InvalidSpec`` naming ``field``
    when it is not one Ketch issues (a number)."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = -1
    if number < 0 or isinstance(value, bool):
        raise InvalidSpec(
            f"must be a resourceVersion Ketch issued (a number), got {value!r}", field=field
        )
    return number


def next_revision(session: Session) -> int:
    """Take the store's next revision in this write's transaction: every write to an
    object the store journals (a resource, a pod, an event) takes one.

    The update holds the counter row's lock until the transaction ends, so revisions
    are given in commit order on PostgreSQL too (see the module's docstring)."""
    taken = session.execute(
        update(RevisionRow)
        .where(RevisionRow.id == 1)
        .values(revision=RevisionRow.revision + 1)
        .returning(RevisionRow.revision)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    if taken is not None:
        return int(taken)
    # No counter (its row was removed by hand): start again above every number given,
    # in the journal and in every table (core's or a capability's) that keeps one.
    present = inspect(session.connection())
    columns = [ChangeRow.__table__.c.revision] + [
        table.c.resource_version
        for table in Base.metadata.sorted_tables
        if "resource_version" in table.c and present.has_table(table.name)
    ]
    start = max(int(session.scalar(select(func.max(column))) or 0) for column in columns) + 1
    session.add(RevisionRow(id=1, revision=start, compacted=start - 1))
    session.flush()
    return start


def journal(
    session: Session, revision: int, type_: ChangeType, manifest: Mapping[str, Any]
) -> None:
    """Record a write in the change journal (in the write's transaction): ``manifest``
    is the object as written (its ``kind`` and ``metadata``'s namespace, name and uid
    say whose change it is). Every :data:`COMPACT_EVERY` revisions, drop what the
    journal no longer keeps. The session is marked, so its commit wakes this
    process's watches (:mod:`ketch.core.store.commits`)."""
    meta = manifest.get("metadata") or {}
    session.add(
        ChangeRow(
            revision=revision,
            kind=str(manifest.get("kind") or ""),
            namespace=str(meta.get("namespace") or ""),
            name=str(meta.get("name") or ""),
            uid=str(meta.get("uid") or ""),
            type=type_,
            object=dict(manifest),
            created_at=utcnow(),
        )
    )
    mark_journaled(session, revision)
    if revision % COMPACT_EVERY == 0:
        session.flush()
        _compact(session, revision, history_seconds(), HISTORY_MIN_ENTRIES, HISTORY_MAX_ENTRIES)


def _journal(session: Session, revision: int, type_: ChangeType, resource: Resource) -> None:
    journal(session, revision, type_, resource.to_manifest())


def counter(session: Session) -> tuple[int, int]:
    """The store's revision and the revision its journal is complete after."""
    found = session.execute(
        select(RevisionRow.revision, RevisionRow.compacted).where(RevisionRow.id == 1)
    ).first()
    if found is None:
        return 0, 0
    return int(found[0]), int(found[1])


def list_revision(session: Session, cursor: ListCursor | None) -> int:
    """The revision a list is read at, in ``session`` (a read session, before any other
    statement): the store's revision in the same snapshot as the rows the list reads
    next (on PostgreSQL the session is made ``REPEATABLE READ``; SQLite's read
    transaction is one snapshot already), so a watch from it neither misses nor
    repeats a change; a continued list answers its first page's.
    :class:`~ketch.core.errors.Expired` when ``cursor`` comes from a first page older
    than the journal keeps."""
    if session.get_bind().dialect.name == "postgresql":
        session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
    current, compacted = counter(session)
    if cursor is None or cursor.revision is None:
        return current
    if cursor.revision < compacted:
        raise Expired(
            "The provided continue parameter is too old to display a consistent "
            "list result. You can start a new list without the continue parameter"
        )
    return cursor.revision


def _compact(
    session: Session, current: int, keep_seconds: float, min_entries: int, max_entries: int
) -> int:
    """Remove the changes the journal no longer keeps: those older than
    ``keep_seconds`` that are not among the newest ``min_entries``, and any beyond the
    newest ``max_entries``. Return the revision the journal is now complete after."""
    compacted = int(session.scalar(select(RevisionRow.compacted).where(RevisionRow.id == 1)) or 0)
    since = utcnow() - timedelta(seconds=keep_seconds)
    # the oldest change young enough to keep (the journal is in time order, so this
    # reads only the few changes that aged since the last compaction)
    young = session.scalar(
        select(ChangeRow.revision)
        .where(ChangeRow.revision > compacted, ChangeRow.created_at >= since)
        .order_by(ChangeRow.revision)
        .limit(1)
    )
    aged = current if young is None else int(young) - 1
    cutoff = max(current - max_entries, min(aged, current - min_entries))
    if cutoff <= compacted:
        return compacted
    session.execute(delete(ChangeRow).where(ChangeRow.revision <= cutoff))
    session.execute(
        update(RevisionRow)
        .where(RevisionRow.id == 1)
        .values(compacted=cutoff)
        .execution_options(synchronize_session=False)
    )
    return cutoff


def _to_change(row: ChangeRow) -> Change:
    return Change(
        revision=int(row.revision),
        type=row.type,  # type: ignore[arg-type]  # ADDED, MODIFIED or DELETED, as written
        kind=row.kind,
        namespace=row.namespace,
        name=row.name,
        uid=row.uid,
        object=dict(row.object),
    )


def _check_event_type(type_: str) -> None:
    if type_ not in ("Normal", "Warning"):
        raise InvalidSpec(f"event type must be 'Normal' or 'Warning', got {type_!r}", field="type")


def _add_event(
    session: Session,
    uid: str,
    kind: str,
    namespace: str,
    name: str,
    reason: str,
    message: str,
    type_: str,
) -> ResourceEventRow:
    """Record an event, or count one more of the same event about the same object (as
    Kubernetes aggregates repeats: ``count`` and ``lastTimestamp``). Either write takes
    the store's next revision and is journaled (ADDED, or MODIFIED for a repeat)."""
    same = session.scalars(
        select(ResourceEventRow)
        .where(
            ResourceEventRow.resource_uid == uid,
            ResourceEventRow.reason == reason,
            ResourceEventRow.type == type_,
            ResourceEventRow.message == message,
        )
        .order_by(ResourceEventRow.id.desc())
        .limit(1)
    ).first()
    now = utcnow()
    if same is not None:
        same.count = (same.count or 1) + 1
        same.last_seen_at = now
        _event_written(session, same, "MODIFIED")
        return same
    row = ResourceEventRow(
        resource_uid=uid,
        kind=kind,
        namespace=namespace,
        name=name,
        type=type_,
        reason=reason,
        message=message,
        created_at=now,
        count=1,
        last_seen_at=now,
    )
    session.add(row)
    _event_written(session, row, "ADDED")
    return row


def _event_written(session: Session, row: ResourceEventRow, type_: ChangeType) -> None:
    row.resource_version = next_revision(session)
    session.flush()  # a new event's number
    journal(session, row.resource_version, type_, _to_event(row).journaled())


def _events_removed(session: Session, resource_uid: str) -> None:
    """Remove the events about ``resource_uid`` (its deletion's transaction), each
    journaled as DELETED: as it was, at the revision of its removal."""
    rows = session.scalars(
        select(ResourceEventRow)
        .where(ResourceEventRow.resource_uid == resource_uid)
        .order_by(ResourceEventRow.id)
    ).all()
    for row in rows:
        gone = _to_event(row)
        session.delete(row)
        session.flush()
        gone.resourceVersion = next_revision(session)
        journal(session, gone.resourceVersion, "DELETED", gone.journaled())


class ResourceStore:
    """Create, read, update and delete resources in ``database``; record and list
    their events. ``migrate`` brings core's tables up to date first (callers that
    migrated the database for every capability already pass ``False``)."""

    def __init__(self, database: Database, *, migrate: bool = True) -> None:
        self.database = database
        self._listeners: list[Callable[[Resource, bool], None]] = []
        self._finalizers: list[Callable[[str], bool]] = []
        if migrate:
            database.migrate()

    # -- change feed -------------------------------------------------------------

    def add_listener(self, listener: Callable[[Resource, bool], None]) -> None:
        """Call ``listener(resource, deleted)`` after every committed create, apply,
        status update and delete made through this store (a delete passes the object
        as it was, and ``deleted=True``). Listeners must be quick and must not raise;
        they run in the writer's thread."""
        self._listeners.append(listener)

    def _changed(self, resource: Resource, deleted: bool = False) -> Resource:
        for listener in list(self._listeners):
            try:
                listener(resource, deleted)
            except Exception:
                log.exception("a resource listener failed")
        return resource

    # -- namespace finalizers ------------------------------------------------------

    def add_namespace_finalizer(self, finalizer: Callable[[str], bool]) -> None:
        """Have :meth:`finalize_namespace` call ``finalizer(namespace)`` (a capability's
        removal of what it keeps for a namespace elsewhere than in this store)."""
        self._finalizers.append(finalizer)

    def finalize_namespace(self, namespace: str) -> bool:
        """Run every namespace finalizer for ``namespace``, which is being deleted (call
        it before the namespace's own object goes, so a restart finds the deletion
        unfinished and runs them again). True once every one of them is done."""
        done = True
        for finalizer in list(self._finalizers):
            done = finalizer(namespace) and done
        return done

    # -- reads -----------------------------------------------------------------

    def get(self, kind: str, namespace: str, name: str) -> Resource:
        with self.database.session(readonly=True) as session:
            row = self._find(session, kind, namespace, name)
            if row is None:
                raise _not_found(kind, namespace, name)
            return to_resource(row)

    def list(
        self,
        kind: str,
        namespace: str | None = DEFAULT_NAMESPACE,
        *,
        label_selector: str | None = None,
        limit: int | None = None,
        continue_token: str | None = None,
    ) -> ResourceList:
        """Resources of ``kind`` in ``namespace`` (``None``: all namespaces), ordered by
        namespace then name, filtered by ``label_selector``, ``limit`` at a time.

        The list's ``resource_version`` is the store's revision when its first page was
        read (in the same snapshot as the objects, so a watch from it neither misses nor
        repeats a change; a continued list answers its first page's). A
        ``continue_token`` from a first page older than the change journal keeps is
        :class:`~ketch.core.errors.Expired` (list again)."""
        items, token, version = self._listed(
            kind, namespace, label_selector, limit, continue_token, to_resource
        )
        return ResourceList(items, token, version)

    def list_manifests(
        self,
        kind: str,
        namespace: str | None = DEFAULT_NAMESPACE,
        *,
        label_selector: str | None = None,
        limit: int | None = None,
        continue_token: str | None = None,
    ) -> ManifestList:
        """:meth:`list`, its items as manifests (what the API answers), made straight
        from the rows."""
        items, token, version = self._listed(
            kind, namespace, label_selector, limit, continue_token, to_manifest
        )
        return ManifestList(items, token, version)

    def _listed(
        self,
        kind: str,
        namespace: str | None,
        label_selector: str | None,
        limit: int | None,
        continue_token: str | None,
        convert: Callable[[Any], Any] = to_resource,
    ) -> tuple[builtins.list[Any], str | None, str]:
        """The items of one page of a list (made by ``convert``), its continue token and
        its resourceVersion: see :meth:`list`."""
        if limit is not None and limit <= 0:
            raise InvalidSpec(f"limit must be positive, got {limit}", field="limit")
        selector = LabelSelector.parse(label_selector)
        cursor = ListCursor.decode(continue_token) if continue_token else None
        items: builtins.list[Any] = []
        with self.database.session(readonly=True) as session:
            # one snapshot for the revision and the objects
            revision = list_revision(session, cursor)
            version = str(revision)
            while True:
                # the rows' columns, not ORM objects: ``convert`` reads them by the same
                # names, and a long list loads noticeably faster without the ORM
                query = select(*ResourceRow.__table__.columns).where(ResourceRow.kind == kind)
                if namespace is not None:
                    query = query.where(ResourceRow.namespace == namespace)
                if cursor is not None:
                    query = query.where(
                        or_(
                            ResourceRow.namespace > cursor.namespace,
                            and_(
                                ResourceRow.namespace == cursor.namespace,
                                ResourceRow.name > cursor.name,
                            ),
                        )
                    )
                query = query.order_by(ResourceRow.namespace, ResourceRow.name).limit(_PAGE)
                rows = session.execute(query).all()
                for row in rows:
                    cursor = ListCursor(row.namespace, row.name, revision)
                    if selector.matches(row.labels or {}):
                        items.append(convert(row))
                        if limit is not None and len(items) == limit:
                            more = self._has_more(session, kind, namespace, selector, cursor)
                            token = cursor.encode() if more else None
                            return items, token, version
                if len(rows) < _PAGE:
                    return items, None, version

    def _has_more(
        self,
        session: Session,
        kind: str,
        namespace: str | None,
        selector: LabelSelector,
        cursor: ListCursor,
    ) -> bool:
        query = select(ResourceRow.labels).where(
            ResourceRow.kind == kind,
            or_(
                ResourceRow.namespace > cursor.namespace,
                and_(ResourceRow.namespace == cursor.namespace, ResourceRow.name > cursor.name),
            ),
        )
        if namespace is not None:
            query = query.where(ResourceRow.namespace == namespace)
        if not selector.requirements:
            return session.execute(query.limit(1)).first() is not None
        return any(selector.matches(labels or {}) for labels in session.scalars(query))

    # -- revisions and the change journal -------------------------------------------

    def revision(self) -> int:
        """The store's revision: the number of the last write to any resource."""
        with self.database.session(readonly=True) as session:
            return counter(session)[0]

    def changes(
        self,
        after: int,
        *,
        kind: str | None = None,
        namespace: str | None = None,
        limit: int = CHANGES_PAGE,
    ) -> Changes:
        """The journaled changes after revision ``after`` (of ``kind`` in ``namespace``
        when given), oldest first, at most ``limit``; their ``revision`` says how far
        they go, so the next call asks for the changes after it.

        :class:`~ketch.core.errors.Expired` when the journal no longer holds every
        change after ``after`` (it was compacted past it): "too old resource version".
        """
        if limit <= 0:
            raise InvalidSpec(f"limit must be positive, got {limit}", field="limit")
        with self.database.session(readonly=True) as session:
            current, compacted = counter(session)
            self._check_kept(after, compacted)
            query = select(ChangeRow).where(
                ChangeRow.revision > after, ChangeRow.revision <= current
            )
            if kind is not None:
                query = query.where(ChangeRow.kind == kind)
            if namespace is not None:
                query = query.where(ChangeRow.namespace == namespace)
            rows = session.scalars(query.order_by(ChangeRow.revision).limit(limit)).all()
            # A compaction committed while this read ran (PostgreSQL reads each
            # statement's own snapshot) may have removed some of what was asked for.
            self._check_kept(after, counter(session)[1])
        reached = int(rows[-1].revision) if len(rows) == limit else current
        return Changes([_to_change(row) for row in rows], max(reached, after))

    @staticmethod
    def _check_kept(after: int, compacted: int) -> None:
        if after < compacted:
            raise Expired(f"too old resource version: {after} ({compacted})")

    def previous(self, kind: str, uid: str, before: int) -> dict[str, Any] | None:
        """The object ``uid`` as its last journaled write before revision ``before``
        left it (``None`` when the journal has none)."""
        with self.database.session(readonly=True) as session:
            found = session.scalar(
                select(ChangeRow.object)
                .where(ChangeRow.kind == kind, ChangeRow.uid == uid, ChangeRow.revision < before)
                .order_by(ChangeRow.revision.desc())
                .limit(1)
            )
        return dict(found) if found is not None else None

    def compact(
        self,
        *,
        keep_seconds: float | None = None,
        min_entries: int = HISTORY_MIN_ENTRIES,
        max_entries: int = HISTORY_MAX_ENTRIES,
    ) -> int:
        """Remove the changes the journal no longer keeps (writes do it as they go):
        those older than ``keep_seconds`` (default :func:`history_seconds`) and not
        among the newest ``min_entries``, and any beyond the newest ``max_entries``.
        Return the revision the journal is now complete after; a watch from an older
        one is answered 410."""
        keep = history_seconds() if keep_seconds is None else keep_seconds

        def run() -> int:
            with self.database.session() as session:
                current = int(
                    session.scalar(
                        select(RevisionRow.revision).where(RevisionRow.id == 1).with_for_update()
                    )
                    or 0
                )
                return _compact(session, current, keep, min_entries, max_entries)

        return retry_locked(run)

    # -- writes ----------------------------------------------------------------

    def create(self, resource: Resource) -> Resource:
        """Store a new resource; ``Conflict`` if one with its kind, namespace and name exists."""
        resource.validate_names()
        try:
            return self._changed(retry_locked(lambda: self._create(resource)))
        except IntegrityError:
            raise self._exists(resource) from None

    def _create(self, resource: Resource) -> Resource:
        with self.database.session() as session:
            meta = resource.metadata
            if self._find(session, resource.kind, meta.namespace, meta.name) is not None:
                raise self._exists(resource)
            return self._create_in(session, resource)

    def apply(self, resource: Resource) -> Resource:
        """Create the resource, or update its apiVersion, spec, labels and annotations.

        ``generation`` goes up only when the spec changes; ``resourceVersion`` goes up
        on every write. Applying an identical manifest writes nothing. Status is
        kept (it belongs to the controller).
        """
        return self.apply_outcome(resource)[0]

    def apply_outcome(
        self, resource: Resource, *, expected_version: str | int | None = None
    ) -> tuple[Resource, Applied]:
        """:meth:`apply`, also saying what it did (``created``, ``configured`` or
        ``unchanged``), decided in the write's own transaction: a controller's status
        write just before cannot make an unchanged apply look configured.

        With ``expected_version``, an existing object is updated only if it is still at
        that ``resourceVersion`` (``Conflict`` otherwise: someone wrote in between)."""
        resource.validate_names()
        expected = _parse_version(expected_version) if expected_version is not None else None
        for _attempt in range(3):
            try:
                applied, outcome = retry_locked(lambda: self._apply(resource, expected))
                return self._changed(applied), outcome
            except IntegrityError:
                continue  # another writer created it between our read and insert: update it
        raise self._exists(resource)

    def _apply(self, resource: Resource, expected: int | None = None) -> tuple[Resource, Applied]:
        with self.database.session() as session:
            meta = resource.metadata
            row = self._find(session, resource.kind, meta.namespace, meta.name, for_update=True)
            if row is None:
                return self._create_in(session, resource), "created"
            if expected is not None and row.resource_version != expected:
                raise Conflict(
                    f"{resource.kind} {meta.name!r} in namespace {meta.namespace!r} was "
                    f"modified: it is at resourceVersion {row.resource_version}, not {expected}",
                    hint="read it again and retry",
                )
            spec_changed = row.spec != resource.spec
            changed = (
                spec_changed
                or row.api_version != resource.apiVersion
                or (row.labels or {}) != meta.labels
                or (row.annotations or {}) != meta.annotations
                or (row.owner_references or None) != (meta.ownerReferences or None)
                or (
                    meta.managedFields is not None
                    and (row.managed_fields or []) != meta.managedFields
                )
            )
            if not changed:
                return to_resource(row), "unchanged"
            row.api_version = resource.apiVersion
            row.spec = resource.spec
            row.labels = dict(meta.labels)
            row.annotations = dict(meta.annotations)
            row.owner_references = list(meta.ownerReferences) if meta.ownerReferences else None
            if meta.managedFields is not None:  # None: keep them as they are
                row.managed_fields = list(meta.managedFields) or None
            if spec_changed:
                row.generation += 1
            row.resource_version = next_revision(session)
            row.updated_at = utcnow()
            session.flush()
            configured = to_resource(row)
            _journal(session, row.resource_version, "MODIFIED", configured)
            return configured, "configured"

    def _create_in(self, session: Session, resource: Resource) -> Resource:
        now = utcnow()
        meta = resource.metadata
        revision = next_revision(session)
        row = ResourceRow(
            uid=str(uuid.uuid4()),
            api_version=resource.apiVersion,
            kind=resource.kind,
            namespace=meta.namespace,
            name=meta.name,
            generation=1,
            resource_version=revision,
            labels=dict(meta.labels),
            annotations=dict(meta.annotations),
            owner_references=list(meta.ownerReferences) if meta.ownerReferences else None,
            managed_fields=list(meta.managedFields) if meta.managedFields else None,
            spec=resource.spec,
            status=resource.status,
            created_at=now,
            updated_at=now,
        )
        session.add(row)
        session.flush()
        created = to_resource(row)
        _journal(session, revision, "ADDED", created)
        return created

    def update_status(
        self,
        kind: str,
        namespace: str,
        name: str,
        status: dict[str, Any],
        *,
        resource_version: str | int | None = None,
        events: builtins.list[tuple[str, str, EventType]] | None = None,
        keep: tuple[str, ...] = (),
    ) -> Resource:
        """Replace the resource's status.

        With ``resource_version``, fail with ``Conflict`` unless the stored resource is
        still at that version (someone else wrote in between: read it again and retry).
        ``events`` (reason, message, type) are recorded in the same transaction. The
        status keys in ``keep`` keep their stored values, whatever ``status`` says
        (fields only the server may write, such as ``logPaths``).
        """
        expected = _parse_version(resource_version) if resource_version is not None else None
        for _reason, _message, type_ in events or ():
            _check_event_type(type_)

        def write() -> Resource:
            with self.database.session() as session:
                row = self._find(session, kind, namespace, name, for_update=True)
                if row is None:
                    raise _not_found(kind, namespace, name)
                if expected is not None and row.resource_version != expected:
                    raise Conflict(
                        f"{kind} {name!r} in namespace {namespace!r} was modified: it is at "
                        f"resourceVersion {row.resource_version}, not {expected}",
                        hint="read it again and retry",
                    )
                if keep:
                    stored = row.status or {}
                    status_ = {k: v for k, v in status.items() if k not in keep}
                    status_.update({k: stored[k] for k in keep if k in stored})
                    row.status = status_
                else:
                    row.status = status
                row.resource_version = next_revision(session)
                row.updated_at = utcnow()
                for reason, message, type_ in events or ():
                    _add_event(session, row.uid, kind, namespace, name, reason, message, type_)
                session.flush()
                updated = to_resource(row)
                _journal(session, row.resource_version, "MODIFIED", updated)
                return updated

        return self._changed(retry_locked(write))

    def delete(self, kind: str, namespace: str, name: str) -> Resource:
        """Remove the resource and its events; return it as it was."""

        def remove() -> Resource:
            with self.database.session() as session:
                row = self._find(session, kind, namespace, name, for_update=True)
                if row is None:
                    raise _not_found(kind, namespace, name)
                resource = to_resource(row)
                session.delete(row)
                session.flush()
                # the journal's DELETED object is the object as it was, at the revision
                # of its deletion (as a Kubernetes watch sends it)
                revision = next_revision(session)
                gone = resource.model_copy(deep=True)
                gone.metadata.resourceVersion = str(revision)
                _journal(session, revision, "DELETED", gone)
                _events_removed(session, resource.metadata.uid or "")
                return resource

        return self._changed(retry_locked(remove), deleted=True)

    # -- events ----------------------------------------------------------------

    def record_event(
        self,
        kind: str,
        namespace: str,
        name: str,
        *,
        reason: str,
        message: str = "",
        type: EventType = "Normal",
    ) -> Event:
        """Record an event about an existing resource (``NotFound`` otherwise)."""
        _check_event_type(type)

        def write() -> Event:
            with self.database.session() as session:
                uid = session.scalar(
                    select(ResourceRow.uid).where(
                        ResourceRow.kind == kind,
                        ResourceRow.namespace == namespace,
                        ResourceRow.name == name,
                    )
                )
                if uid is None:
                    raise _not_found(kind, namespace, name)
                row = _add_event(session, uid, kind, namespace, name, reason, message, type)
                session.flush()
                return _to_event(row)

        return retry_locked(write)

    def list_events(
        self,
        kind: str | None = None,
        namespace: str | None = None,
        name: str | None = None,
        *,
        limit: int | None = None,
    ) -> builtins.list[Event]:
        """Events, oldest first, optionally narrowed to a kind, a namespace and a name.

        With ``limit``, the newest ``limit`` events (still oldest first)."""
        return self.event_list(kind, namespace, name, limit=limit).items

    def event_list(
        self,
        kind: str | None = None,
        namespace: str | None = None,
        name: str | None = None,
        *,
        limit: int | None = None,
    ) -> EventList:
        """:meth:`list_events`, with the store's revision they were read at (in the
        same snapshot: a watch of events from it neither misses nor repeats one)."""
        query = select(ResourceEventRow)
        if kind is not None:
            query = query.where(ResourceEventRow.kind == kind)
        if namespace is not None:
            query = query.where(ResourceEventRow.namespace == namespace)
        if name is not None:
            query = query.where(ResourceEventRow.name == name)
        query = query.order_by(ResourceEventRow.id.desc())
        if limit is not None:
            query = query.limit(limit)
        with self.database.session(readonly=True) as session:
            revision = list_revision(session, None)
            rows = session.scalars(query).all()
            return EventList([_to_event(row) for row in reversed(rows)], str(revision))

    # -- namespaces --------------------------------------------------------------

    def namespaces(self, *, exclude: tuple[str, ...] = ()) -> dict[str, datetime]:
        """Every namespace holding resources of kinds other than ``exclude``, with when
        its first one was created."""
        query = select(ResourceRow.namespace, func.min(ResourceRow.created_at)).group_by(
            ResourceRow.namespace
        )
        if exclude:
            query = query.where(ResourceRow.kind.not_in(exclude))
        with self.database.session(readonly=True) as session:
            rows = session.execute(query).all()
        return {namespace: _aware(first) or utcnow() for namespace, first in rows}

    def names_in(
        self, namespace: str, *, limit: int, exclude: tuple[str, ...] = ()
    ) -> builtins.list[tuple[str, str]]:
        """Up to ``limit`` ``(kind, name)`` of the resources in ``namespace`` (of kinds
        other than ``exclude``), by kind then name."""
        query = select(ResourceRow.kind, ResourceRow.name).where(ResourceRow.namespace == namespace)
        if exclude:
            query = query.where(ResourceRow.kind.not_in(exclude))
        query = query.order_by(ResourceRow.kind, ResourceRow.name).limit(limit)
        with self.database.session(readonly=True) as session:
            return [(kind, name) for kind, name in session.execute(query).all()]

    # -- helpers ---------------------------------------------------------------

    @staticmethod
    def _find(
        session: Session, kind: str, namespace: str, name: str, *, for_update: bool = False
    ) -> ResourceRow | None:
        query = select(ResourceRow).where(
            ResourceRow.kind == kind, ResourceRow.namespace == namespace, ResourceRow.name == name
        )
        if for_update:
            query = query.with_for_update()
        return session.scalars(query).first()

    @staticmethod
    def _exists(resource: Resource) -> Conflict:
        meta = resource.metadata
        return AlreadyExists(
            f"{resource.kind} {meta.name!r} already exists in namespace {meta.namespace!r}",
            kind=resource.kind,
            namespace=meta.namespace,
            name=meta.name,
            hint="use apply to update it, or delete it first",
        )
