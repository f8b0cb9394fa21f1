"""``ResourceStore``: declarative resources and their events, in the ``resources`` and
``resource_events`` tables.

Semantics follow the Kubernetes API server: ``metadata.generation`` counts spec
changes, ``metadata.resourceVersion`` counts every write and lets a writer detect
that someone else wrote in between (409 Conflict).
"""

from __future__ import annotations

import builtins
import logging
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import and_, delete, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ketch.core.errors import AlreadyExists, Conflict, InvalidSpec, NotFound, ObjectNotFound
from ketch.core.paging import decode_token, encode_token
from ketch.core.resource import DEFAULT_NAMESPACE, ObjectMeta, Resource, utcnow
from ketch.core.store.db import Database, retry_locked
from ketch.core.store.models import ResourceEventRow, ResourceRow
from ketch.core.store.selectors import LabelSelector

log = logging.getLogger(__name__)

EventType = Literal["Normal", "Warning"]
# What an apply did to the stored object.
Applied = Literal["created", "configured", "unchanged"]

_PAGE = 500


@dataclass
class ResourceList:
    """One page of a list: the items and, when more remain, the token for the next page."""

    items: list[Resource]
    continue_token: str | None = None

    def __iter__(self) -> Iterator[Resource]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


class ObjectReference(BaseModel):
    kind: str
    namespace: str
    name: str
    uid: str


class Event(BaseModel):
    """A Kubernetes-style event about a resource."""

    involvedObject: ObjectReference
    type: str
    reason: str
    message: str
    eventTime: datetime
    count: int = 1
    lastTimestamp: datetime | None = None
    id: int = Field(default=0, exclude=True)


@dataclass(frozen=True)
class _Cursor:
    namespace: str
    name: str

    def encode(self) -> str:
        return encode_token({"ns": self.namespace, "name": self.name})

    @classmethod
    def decode(cls, token: str) -> _Cursor:
        position = decode_token(token, field="continue", keys=("ns", "name"))
        return cls(str(position["ns"]), str(position["name"]))


def _aware(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def to_resource(row: ResourceRow) -> Resource:
    return Resource(
        apiVersion=row.api_version,
        kind=row.kind,
        metadata=ObjectMeta(
            name=row.name,
            namespace=row.namespace,
            uid=row.uid,
            labels=dict(row.labels or {}),
            annotations=dict(row.annotations or {}),
            ownerReferences=list(row.owner_references) if row.owner_references else None,
            generation=row.generation,
            resourceVersion=str(row.resource_version),
            creationTimestamp=_aware(row.created_at),
        ),
        spec=row.spec or {},
        status=row.status or {},
    )


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
    try:
        return int(value)
    except (TypeError, ValueError):
        raise InvalidSpec(
            f"resourceVersion must be a number Ketch issued, got {value!r}",
            field="metadata.resourceVersion",
        ) from None


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
    Kubernetes aggregates repeats: ``count`` and ``lastTimestamp``)."""
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
    return row


class ResourceStore:
    """Create, read, update and delete resources in ``database``; record and list
    their events. ``migrate`` brings core's tables up to date first (callers that
    migrated the database for every capability already pass ``False``)."""

    def __init__(self, database: Database, *, migrate: bool = True) -> None:
        self.database = database
        self._listeners: list[Callable[[Resource, bool], None]] = []
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
        namespace then name, filtered by ``label_selector``, ``limit`` at a time."""
        if limit is not None and limit <= 0:
            raise InvalidSpec(f"limit must be positive, got {limit}", field="limit")
        selector = LabelSelector.parse(label_selector)
        cursor = _Cursor.decode(continue_token) if continue_token else None
        items: builtins.list[Resource] = []
        with self.database.session(readonly=True) as session:
            while True:
                query = select(ResourceRow).where(ResourceRow.kind == kind)
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
                rows = session.scalars(query).all()
                for row in rows:
                    cursor = _Cursor(row.namespace, row.name)
                    if selector.matches(row.labels or {}):
                        items.append(to_resource(row))
                        if limit is not None and len(items) == limit:
                            more = self._has_more(session, kind, namespace, selector, cursor)
                            return ResourceList(items, cursor.encode() if more else None)
                if len(rows) < _PAGE:
                    return ResourceList(items)

    def _has_more(
        self,
        session: Session,
        kind: str,
        namespace: str | None,
        selector: LabelSelector,
        cursor: _Cursor,
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

    def apply_outcome(self, resource: Resource) -> tuple[Resource, Applied]:
        """:meth:`apply`, also saying what it did (``created``, ``configured`` or
        ``unchanged``), decided in the write's own transaction: a controller's status
        write just before cannot make an unchanged apply look configured."""
        resource.validate_names()
        for _attempt in range(3):
            try:
                applied, outcome = retry_locked(lambda: self._apply(resource))
                return self._changed(applied), outcome
            except IntegrityError:
                continue  # another writer created it between our read and insert: update it
        raise self._exists(resource)

    def _apply(self, resource: Resource) -> tuple[Resource, Applied]:
        with self.database.session() as session:
            meta = resource.metadata
            row = self._find(session, resource.kind, meta.namespace, meta.name, for_update=True)
            if row is None:
                return self._create_in(session, resource), "created"
            spec_changed = row.spec != resource.spec
            changed = (
                spec_changed
                or row.api_version != resource.apiVersion
                or (row.labels or {}) != meta.labels
                or (row.annotations or {}) != meta.annotations
                or (row.owner_references or None) != (meta.ownerReferences or None)
            )
            if not changed:
                return to_resource(row), "unchanged"
            row.api_version = resource.apiVersion
            row.spec = resource.spec
            row.labels = dict(meta.labels)
            row.annotations = dict(meta.annotations)
            row.owner_references = list(meta.ownerReferences) if meta.ownerReferences else None
            if spec_changed:
                row.generation += 1
            row.resource_version += 1
            row.updated_at = utcnow()
            session.flush()
            return to_resource(row), "configured"

    def _create_in(self, session: Session, resource: Resource) -> Resource:
        now = utcnow()
        meta = resource.metadata
        row = ResourceRow(
            uid=str(uuid.uuid4()),
            api_version=resource.apiVersion,
            kind=resource.kind,
            namespace=meta.namespace,
            name=meta.name,
            generation=1,
            resource_version=1,
            labels=dict(meta.labels),
            annotations=dict(meta.annotations),
            owner_references=list(meta.ownerReferences) if meta.ownerReferences else None,
            spec=resource.spec,
            status=resource.status,
            created_at=now,
            updated_at=now,
        )
        session.add(row)
        session.flush()
        return to_resource(row)

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
                row.resource_version += 1
                row.updated_at = utcnow()
                for reason, message, type_ in events or ():
                    _add_event(session, row.uid, kind, namespace, name, reason, message, type_)
                session.flush()
                return to_resource(row)

        return self._changed(retry_locked(write))

    def delete(self, kind: str, namespace: str, name: str) -> Resource:
        """Remove the resource and its events; return it as it was."""

        def remove() -> Resource:
            with self.database.session() as session:
                row = self._find(session, kind, namespace, name, for_update=True)
                if row is None:
                    raise _not_found(kind, namespace, name)
                resource = to_resource(row)
                session.execute(
                    delete(ResourceEventRow).where(ResourceEventRow.resource_uid == row.uid)
                )
                session.delete(row)
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
            return [_to_event(row) for row in reversed(session.scalars(query).all())]

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
