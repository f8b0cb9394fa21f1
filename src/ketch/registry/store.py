"""The registry's store: entities of one namespace created, updated, found and listed
in pages, in the registry's own tables (:mod:`ketch.registry.tables`).

Every read and write names the namespace (profile) it is in; an id of another
namespace is not found there. Each write is one transaction: an entity, its custom
properties and its lineage links are stored together or not at all.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ketch.core.errors import Conflict, InvalidSpec, NotFound
from ketch.core.store.db import Database
from ketch.registry.entities import ARTIFACT, BY_KIND, Fields, Kind, property_rows
from ketch.registry.tables import (
    MIGRATIONS,
    EntityRow,
    LineageRow,
    MetricHistoryRow,
    PropertyRow,
)

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
ORDER_COLUMNS = {
    "ID": EntityRow.id,
    "CREATE_TIME": EntityRow.created,
    "LAST_UPDATE_TIME": EntityRow.updated,
}

#: called with the session, a stored artifact's row and its namespace after it is
#: written with a URI: links it to what produced that URI (:mod:`ketch.registry.lineage`)
Linker = Callable[[Session, EntityRow], None]


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class ListQuery:
    """A list request's paging, order and filter (the API's query parameters)."""

    page_size: int | None = None
    order_by: str | None = None
    sort_order: str | None = None
    next_page_token: str | None = None
    filter_query: str | None = None

    def size(self) -> int:
        if self.page_size is None:
            return DEFAULT_PAGE_SIZE
        if self.page_size < 1:
            raise InvalidSpec("pageSize must be at least 1", field="pageSize")
        return min(self.page_size, MAX_PAGE_SIZE)

    def order(self) -> tuple[str, bool]:
        order = (self.order_by or "ID").upper()
        if order not in ORDER_COLUMNS:
            raise InvalidSpec(
                f"orderBy must be one of {', '.join(ORDER_COLUMNS)}, not {self.order_by!r}",
                field="orderBy",
            )
        sort = (self.sort_order or "ASC").upper()
        if sort not in ("ASC", "DESC"):
            raise InvalidSpec(
                f"sortOrder must be ASC or DESC, not {self.sort_order!r}", field="sortOrder"
            )
        return order, sort == "DESC"


def _token(order: str, descending: bool, value: int, key: int) -> str:
    raw = json.dumps([order, descending, value, key], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _untoken(token: str, order: str, descending: bool) -> tuple[int, int]:
    try:
        padded = token + "=" * (-len(token) % 4)
        found = json.loads(base64.urlsafe_b64decode(padded.encode()))
        given_order, given_descending, value, key = found
        if not isinstance(value, int) or not isinstance(key, int):
            raise ValueError(token)
    except (ValueError, TypeError, UnicodeDecodeError):
        raise InvalidSpec(
            "nextPageToken is not one this server gave out", field="nextPageToken"
        ) from None
    if (given_order, given_descending) != (order, descending):
        raise InvalidSpec(
            "nextPageToken was given for another orderBy or sortOrder", field="nextPageToken"
        )
    return value, key


def to_json(row: EntityRow) -> dict[str, Any]:
    """An entity as the API writes it."""
    kind = BY_KIND[row.kind]
    out: dict[str, Any] = {"id": str(row.id), "name": row.name}
    if row.external_id is not None:
        out["externalId"] = row.external_id
    body = json.loads(row.body)
    out.update({key: value for key, value in body.items() if value is not None})
    out.setdefault("customProperties", {})
    out["createTimeSinceEpoch"] = str(row.created)
    out["lastUpdateTimeSinceEpoch"] = str(row.updated)
    if kind.state_field and row.state:
        out[kind.state_field] = row.state
    if kind is ARTIFACT:
        out["artifactType"] = row.subtype
        if row.uri:
            out["uri"] = row.uri
    elif kind.parent and row.parent_id and kind.parent != "inferenceServiceId":
        out[kind.parent] = str(row.parent_id)
    return out


class Registry:
    """The registry's entities in ``database`` (see the module)."""

    def __init__(self, database: Database, linker: Linker | None = None) -> None:
        database.migrate([MIGRATIONS])
        self.database = database
        self.linker = linker

    # -- reads -----------------------------------------------------------------------

    def namespace_of(self, key: int) -> tuple[str, str] | None:
        """The namespace and kind of the entity ``key`` (``None``: there is none)."""
        with self.database.session(readonly=True) as s:
            found = s.execute(
                select(EntityRow.namespace, EntityRow.kind).where(EntityRow.id == key)
            ).first()
        return (str(found[0]), str(found[1])) if found is not None else None

    def row(self, s: Session, namespace: str, kind: Kind, key: int, subtype: str = "") -> EntityRow:
        found = s.get(EntityRow, key)
        if (
            found is None
            or found.namespace != namespace
            or found.kind != kind.kind
            or (subtype and found.subtype != subtype)
        ):
            what = f"{subtype} {kind.what}" if subtype else kind.what
            raise NotFound(f"{what} with id {key} not found in the namespace {namespace!r}")
        return found

    def get(self, namespace: str, kind: Kind, key: int, subtype: str = "") -> dict[str, Any]:
        with self.database.session(readonly=True) as s:
            return to_json(self.row(s, namespace, kind, key, subtype))

    def find(
        self,
        namespace: str,
        kind: Kind,
        *,
        name: str | None = None,
        external_id: str | None = None,
        parent_id: int | None = None,
        subtype: str = "",
    ) -> dict[str, Any]:
        """The one entity named ``name`` (under ``parent_id``) or with ``external_id``
        (``NotFound`` when there is none, as the API's find routes answer 404)."""
        if not name and not external_id:
            raise InvalidSpec("give name or externalId to find a " + kind.what, field="name")
        where = [EntityRow.namespace == namespace, EntityRow.kind == kind.kind]
        if subtype:
            where.append(EntityRow.subtype == subtype)
        if external_id:
            where.append(EntityRow.external_id == external_id)
        if name:
            where.append(EntityRow.name == name)
            if parent_id is not None:
                where.append(EntityRow.parent_id == parent_id)
            elif kind.parent is None and kind.kind != "artifact":
                # a kind without parents: the unique (namespace, kind, parent, name) index
                where.append(EntityRow.parent_id == 0)
        with self.database.session(readonly=True) as s:
            found = s.execute(select(EntityRow).where(*where).order_by(EntityRow.id).limit(1))
            row = found.scalar_one_or_none()
            if row is None:
                wanted = f"named {name!r}" if name else f"with externalId {external_id!r}"
                under = f" under {parent_id}" if parent_id is not None and name else ""
                raise NotFound(f"no {kind.what} {wanted}{under} in the namespace {namespace!r}")
            return to_json(row)

    def page(
        self,
        namespace: str,
        kind: Kind,
        query: ListQuery,
        *,
        parent_id: int | None = None,
        subtype: str = "",
        namespaces: Iterable[str] | None = None,
    ) -> dict[str, Any]:
        """One page of ``kind`` in ``namespace`` (or ``namespaces``), as the API's list
        routes answer: ``{items, nextPageToken, pageSize, size}``."""
        size = query.size()
        order, descending = query.order()
        column = ORDER_COLUMNS[order]
        where = [EntityRow.kind == kind.kind]
        if namespaces is not None:
            where.append(EntityRow.namespace.in_(sorted(namespaces)))
        else:
            where.append(EntityRow.namespace == namespace)
        if parent_id is not None:
            where.append(EntityRow.parent_id == parent_id)
        if subtype:
            where.append(EntityRow.subtype == subtype)
        if query.filter_query:
            from ketch.registry.filterquery import parse
            from ketch.registry.filterquery import where as filtered

            where.append(filtered(parse(query.filter_query), kind.kind))
        if query.next_page_token:
            value, key = _untoken(query.next_page_token, order, descending)
            if order == "ID":
                where.append(EntityRow.id < key if descending else EntityRow.id > key)
            elif descending:
                where.append(or_(column < value, and_(column == value, EntityRow.id < key)))
            else:
                where.append(or_(column > value, and_(column == value, EntityRow.id > key)))
        ordering = (
            [column.desc(), EntityRow.id.desc()] if descending else [column.asc(), EntityRow.id]
        )
        if order == "ID":
            ordering = ordering[1:]
        statement = select(EntityRow).where(*where).order_by(*ordering).limit(size + 1)
        with self.database.session(readonly=True) as s:
            rows = list(s.execute(statement).scalars())
        more = len(rows) > size
        rows = rows[:size]
        token = ""
        if more and rows:
            last = rows[-1]
            token = _token(order, descending, int(getattr(last, column.key)), last.id)
        return {
            "items": [to_json(row) for row in rows],
            "nextPageToken": token,
            "pageSize": size,
            "size": len(rows),
        }

    # -- writes ----------------------------------------------------------------------

    def create(
        self, namespace: str, kind: Kind, fields: Fields, *, parent_id: int | None = None
    ) -> dict[str, Any]:
        """Store a new entity (``Conflict`` when its name is taken under its parent)."""
        parent = parent_id if parent_id is not None else fields.parent_id
        if kind.parent_required and parent is None:
            raise InvalidSpec(f"a {kind.what} needs {kind.parent}", field=str(kind.parent))
        stamp = now_ms()
        with self._writing(kind, fields) as s:
            self._check_references(s, namespace, kind, parent, fields)
            name = fields.name or f"{kind.kind}-{stamp}-{time.perf_counter_ns() % 1_000_000}"
            row = EntityRow(
                namespace=namespace,
                kind=kind.kind,
                subtype=fields.subtype,
                parent_id=parent or 0,
                name=name,
                external_id=fields.external_id,
                state=fields.state or "",
                uri=fields.uri or "",
                created=stamp,
                updated=stamp,
                body=json.dumps(
                    {**fields.body, "customProperties": fields.properties or {}},
                    separators=(",", ":"),
                ),
            )
            s.add(row)
            s.flush()
            self._store_properties(s, row.id, fields.properties)
            self._after_write(s, row, kind, fields)
            return to_json(row)

    def update(
        self, namespace: str, kind: Kind, key: int, fields: Fields, subtype: str = ""
    ) -> dict[str, Any]:
        """Change the fields ``fields`` sets of entity ``key`` (PATCH)."""
        with self._writing(kind, fields) as s:
            row = self.row(s, namespace, kind, key, subtype)
            return self._apply(s, row, kind, fields)

    def upsert_child(
        self, namespace: str, kind: Kind, parent_id: int, fields: Fields, key: int | None
    ) -> dict[str, Any]:
        """An artifact written under a model version or experiment run: the one with
        ``key``, or the one of the same name under that parent, updated and linked;
        else a new one."""
        with self._writing(kind, fields) as s:
            row: EntityRow | None = None
            if key is not None:
                row = self.row(s, namespace, kind, key)
            elif fields.name:
                row = s.execute(
                    select(EntityRow).where(
                        EntityRow.namespace == namespace,
                        EntityRow.kind == kind.kind,
                        EntityRow.parent_id == parent_id,
                        EntityRow.name == fields.name,
                    )
                ).scalar_one_or_none()
            if row is not None:
                if row.parent_id and row.parent_id != parent_id:
                    raise Conflict(f"{kind.what} {row.id} belongs to {row.parent_id} already")
                row.parent_id = parent_id
                return self._apply(s, row, kind, fields)
        return self.create(namespace, kind, fields, parent_id=parent_id)

    def _apply(self, s: Session, row: EntityRow, kind: Kind, fields: Fields) -> dict[str, Any]:
        if fields.subtype and row.subtype and fields.subtype != row.subtype:
            raise InvalidSpec(
                f"artifact {row.id} is a {row.subtype}, not a {fields.subtype}",
                field="artifactType",
            )
        if fields.name and fields.name != row.name:
            raise InvalidSpec(f"a {kind.what}'s name cannot be changed", field="name")
        body = json.loads(row.body)
        body.update(fields.body)
        if fields.properties is not None:
            body["customProperties"] = fields.properties
            self._store_properties(s, row.id, fields.properties, replace=True)
        if fields.parent_id is not None and fields.parent_id != row.parent_id:
            raise InvalidSpec(
                f"a {kind.what}'s {kind.parent} cannot be changed", field=str(kind.parent)
            )
        self._check_references(s, row.namespace, kind, None, fields)
        if fields.external_id is not None:
            row.external_id = fields.external_id
        if fields.state is not None:
            row.state = fields.state
        if fields.uri is not None:
            row.uri = fields.uri
        row.body = json.dumps(body, separators=(",", ":"))
        row.updated = max(now_ms(), row.updated + 1)
        s.flush()
        self._after_write(s, row, kind, fields)
        return to_json(row)

    def _writing(self, kind: Kind, fields: Fields) -> Any:
        return _Writing(self.database, kind, fields)

    def _check_references(
        self, s: Session, namespace: str, kind: Kind, parent: int | None, fields: Fields
    ) -> None:
        wanted: list[tuple[int, str, str]] = []
        if parent is not None and kind.parent:
            parent_kind = {
                "registeredModelId": "registered_model",
                "servingEnvironmentId": "serving_environment",
                "experimentId": "experiment",
                "inferenceServiceId": "inference_service",
            }.get(kind.parent)
            if parent_kind:
                wanted.append((parent, parent_kind, kind.parent))
        for field, of in (
            ("registeredModelId", "registered_model"),
            ("modelVersionId", "model_version"),
        ):
            if field != kind.parent and fields.body.get(field) is not None:
                wanted.append((int(fields.body[field]), of, field))
        for key, of, field in wanted:
            found = s.execute(
                select(EntityRow.id).where(
                    EntityRow.id == key, EntityRow.namespace == namespace, EntityRow.kind == of
                )
            ).first()
            if found is None:
                what = BY_KIND[of].what
                raise NotFound(
                    f"{field} {key}: no {what} with that id in the namespace {namespace!r}"
                )

    def _store_properties(
        self,
        s: Session,
        key: int,
        properties: dict[str, dict[str, Any]] | None,
        *,
        replace: bool = False,
    ) -> None:
        if replace:
            s.execute(delete(PropertyRow).where(PropertyRow.entity_id == key))
        rows = property_rows(properties or {})
        if rows:
            s.execute(insert(PropertyRow), [{"entity_id": key, **row} for row in rows])

    def _after_write(self, s: Session, row: EntityRow, kind: Kind, fields: Fields) -> None:
        if kind is ARTIFACT and row.subtype == "metric" and "value" in fields.body:
            parent = s.get(EntityRow, row.parent_id) if row.parent_id else None
            if parent is not None and parent.kind == "experiment_run":
                body = json.loads(row.body)
                s.add(
                    MetricHistoryRow(
                        run_id=parent.id,
                        name=row.name,
                        value=_number(body.get("value")),
                        step=int(_number(body.get("step")) or 0),
                        timestamp=int(_number(body.get("timestamp")) or row.updated),
                        created=row.updated,
                        body=json.dumps(to_json(row), separators=(",", ":")),
                    )
                )
        if kind is ARTIFACT and row.uri and self.linker is not None and fields.uri is not None:
            self.linker(s, row)

    # -- experiment runs' metric history ---------------------------------------------

    def metric_history(
        self,
        namespace: str,
        run_ids: list[int] | None,
        *,
        name: str | None = None,
        steps: list[int] | None = None,
        query: ListQuery,
    ) -> dict[str, Any]:
        """The metric values experiment runs logged, oldest first, in pages."""
        size = query.size()
        where: list[Any] = [
            MetricHistoryRow.run_id.in_(
                select(EntityRow.id).where(
                    EntityRow.namespace == namespace, EntityRow.kind == "experiment_run"
                )
            )
        ]
        if run_ids is not None:
            where.append(MetricHistoryRow.run_id.in_(run_ids))
        if name:
            where.append(MetricHistoryRow.name == name)
        if steps:
            where.append(MetricHistoryRow.step.in_(steps))
        if query.next_page_token:
            _value, key = _untoken(query.next_page_token, "ID", False)
            where.append(MetricHistoryRow.id > key)
        with self.database.session(readonly=True) as s:
            rows = list(
                s.execute(
                    select(MetricHistoryRow)
                    .where(*where)
                    .order_by(MetricHistoryRow.id)
                    .limit(size + 1)
                ).scalars()
            )
        more = len(rows) > size
        rows = rows[:size]
        return {
            "items": [json.loads(row.body) for row in rows],
            "nextPageToken": _token("ID", False, rows[-1].id, rows[-1].id) if more else "",
            "pageSize": size,
            "size": len(rows),
        }

    def count(self, namespace: str, kind: Kind) -> int:
        with self.database.session(readonly=True) as s:
            found = s.execute(
                select(func.count()).where(
                    EntityRow.namespace == namespace, EntityRow.kind == kind.kind
                )
            ).scalar_one()
        return int(found)

    def forget_namespace(self, namespace: str) -> bool:
        """Delete everything the registry keeps of ``namespace`` (its models, versions,
        artifacts, serving records, experiments, their properties, history and
        lineage), in one transaction: a namespace finalizer (done: ``True``)."""
        owned = select(EntityRow.id).where(EntityRow.namespace == namespace)
        with self.database.session() as s:
            s.execute(delete(PropertyRow).where(PropertyRow.entity_id.in_(owned)))
            s.execute(delete(LineageRow).where(LineageRow.entity_id.in_(owned)))
            s.execute(delete(MetricHistoryRow).where(MetricHistoryRow.run_id.in_(owned)))
            s.execute(delete(EntityRow).where(EntityRow.namespace == namespace))
        return True

    def touch(self, key: int) -> None:
        """Mark entity ``key`` as changed now."""
        with self.database.session() as s:
            s.execute(update(EntityRow).where(EntityRow.id == key).values(updated=now_ms()))


def _number(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


class _Writing:
    """A write transaction whose unique-name clash is a ``Conflict`` naming it."""

    def __init__(self, database: Database, kind: Kind, fields: Fields) -> None:
        self.database = database
        self.kind = kind
        self.fields = fields
        self._session: Any = None

    def __enter__(self) -> Session:
        self._session = self.database.session()
        session: Session = self._session.__enter__()
        return session

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> None:
        try:
            self._session.__exit__(kind, exc, tb)
        except IntegrityError:
            raise Conflict(
                f"a {self.kind.what} named {self.fields.name!r} exists already there"
            ) from None
        if isinstance(exc, IntegrityError):
            raise Conflict(
                f"a {self.kind.what} named {self.fields.name!r} exists already there"
            ) from None
