"""What the KFP catalog's parts share: namespaces and ids as KFP gives them, the
keyset page of a list, and write transactions (retried while SQLite is busy)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import func, select
from sqlalchemy.orm import Session, defer

from ketch.core.errors import Conflict, NotFound
from ketch.core.store.db import Database, retry_locked
from ketch.pipelines import filters
from ketch.pipelines.filters import Field, ListOptions
from ketch.pipelines.owners import Reaper

T = TypeVar("T")

DEFAULT_NAMESPACE = "default"


class FailedPrecondition(Conflict):
    """The request conflicts with the state of the resource (gRPC FAILED_PRECONDITION)."""

    grpc_code = 9


def namespace_or_default(namespace: str | None) -> str:
    """KFP single-user clients send an empty namespace: that is the default one."""
    return (namespace or "").strip() or DEFAULT_NAMESPACE


def new_id() -> str:
    return str(uuid.uuid4())


@dataclass(frozen=True)
class Namespaces:
    """What a list across namespaces shows (with authentication on): the rows of
    ``names``, ``None``: of every namespace."""

    names: frozenset[str] | None


#: what a list shows: one namespace (``None`` or empty: the default one) or several
Scope = str | Namespaces | None


@dataclass
class Page:
    items: list[Any]
    total_size: int
    next_page_token: str


def page_of(
    s: Session,
    model: Any,
    fields: Mapping[str, Field],
    opts: ListOptions,
    where: Sequence[Any],
    *,
    resource: str,
    omit: Sequence[Any] = (),
) -> Page:
    """One keyset page of ``model`` rows matching ``where`` and the filter; the
    columns in ``omit`` are not read (touching them on a row raises)."""
    id_column = model.id if hasattr(model, "id") else model.run_id
    conditions = [*where, *filters.filter_clauses(opts.filter, fields, resource=resource)]
    total = s.execute(select(func.count()).select_from(model).where(*conditions)).scalar_one()
    # Ids first, then the rows: sorting and skipping touch only the small leading
    # columns, never a wide JSON column such as a run's pipeline_spec. The sort value
    # comes with each id (a key may sort by an expression, not a column of the row).
    sort_value = filters.sort_expression(fields[opts.sort_key])
    stmt = select(id_column, sort_value).where(*conditions)
    after = filters.keyset_clause(opts, fields, id_column)
    if after is not None:
        stmt = stmt.where(after)
    size = opts.page_size
    keys = list(
        s.execute(stmt.order_by(*filters.order_by(opts, fields, id_column)).limit(size + 1)).all()
    )
    ids = [k[0] for k in keys]
    query = select(model).where(id_column.in_(ids[:size]))
    if omit:
        query = query.options(*(defer(column, raiseload=True) for column in omit))
    found = {r.id: r for r in s.execute(query).scalars()} if ids else {}
    rows = [found[i] for i in ids[:size] if i in found]
    token = ""
    if len(ids) > size and rows:
        last = rows[-1]
        sort_col = fields[opts.sort_key].column
        value = getattr(last, sort_col.key) if _is_column(sort_col, model) else dict(keys)[last.id]
        token = filters.next_token(opts, value, last.id)
    return Page(rows, int(total), token)


def _is_column(column: Any, model: Any) -> bool:
    """Whether ``column`` is one of ``model``'s own columns (else an expression)."""
    key = getattr(column, "key", None)
    return isinstance(key, str) and getattr(model, key, None) is column


def write_in(database: Database, fn: Callable[[Session], T]) -> T:
    """Run ``fn`` in a write transaction of ``database`` (retried while SQLite is busy)."""

    def attempt() -> T:
        with database.session() as s:
            return fn(s)

    return retry_locked(attempt)


def existing(s: Session, model: Any, key: str, what: str, **error: Any) -> Any:
    """The ``model`` row with primary key ``key``, or NotFound ("<what> 'key' not found")."""
    row = s.get(model, key)
    if row is None:
        raise NotFound(f"{what} {key!r} not found", **error)
    return row


def in_scope(model: Any, namespace: Scope) -> list[Any]:
    """Rows of ``model`` in ``namespace``."""
    if isinstance(namespace, Namespaces):
        if namespace.names is None:
            return []
        return [model.namespace.in_(sorted(namespace.names))]
    return [model.namespace == namespace_or_default(namespace)]


def scope_of(model: Any, namespace: Scope, experiment_id: str | None) -> list[Any]:
    """Rows of one experiment when it is given, else of one namespace (or several)."""
    if experiment_id:
        return [model.experiment_id == experiment_id]
    return in_scope(model, namespace)


class CatalogPart:
    """A part of the catalog over the store in ``database``; ``reaper`` ends the runs
    of dead ``ketch run`` processes before runs are read (one is made when none is
    given)."""

    def __init__(self, database: Database, reaper: Reaper | None = None):
        self.database = database
        self.reaper = reaper or Reaper(database)
