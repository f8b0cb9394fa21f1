"""KFP list options: predicate filters, ``sort_by`` and page tokens, as SQL.

A filter is the JSON form of KFP's ``Filter`` message::

    {"predicates": [{"key": "display_name", "operation": "EQUALS", "string_value": "x"}]}

Operations may be given by name or by number (``kfp.Client`` sends numbers),
values in snake_case or lowerCamelCase (``string_value`` or ``stringValue``), as
the gRPC gateway accepts. Keys are mapped to whitelisted columns; anything
else is an :class:`~ketch.core.errors.InvalidSpec` naming the problem.

Pages are keyset pages: the token holds the sort, the filter and the sort key
and id of the last item, so the next page is an indexed range scan, however
deep it is.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, and_, func, literal, or_
from sqlalchemy.sql.elements import ColumnElement

from ketch.core import timestamps
from ketch.core.errors import InvalidSpec

OPERATIONS: dict[int, str] = {
    1: "EQUALS",
    2: "NOT_EQUALS",
    3: "GREATER_THAN",
    5: "GREATER_THAN_EQUALS",
    6: "LESS_THAN",
    7: "LESS_THAN_EQUALS",
    8: "IN",
    9: "IS_SUBSTRING",
}
_SCALAR_FIELDS = ("string_value", "int_value", "long_value", "timestamp_value")
_LIST_FIELDS = ("string_values", "int_values", "long_values")
MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 20
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Field:
    """A filterable/sortable API key: its column and value kind."""

    column: Any
    kind: str = "string"  # string | int | number | bool | time
    nullable: bool = False


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def get_field(obj: Mapping[str, Any], name: str, default: Any = None) -> Any:
    """``obj[name]`` accepting the lowerCamelCase spelling too (as the gRPC gateway does)."""
    if name in obj:
        return obj[name]
    return obj.get(_camel(name), default)


def parse_time(value: Any, where: str) -> datetime:
    """An RFC 3339 string (read by :func:`ketch.core.timestamps.parse_time`), a
    ``datetime`` or epoch seconds (as KFP also accepts) as an aware UTC datetime;
    ``InvalidSpec`` naming ``where`` for anything else."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return datetime.fromtimestamp(int(value.strip()), UTC)
    if isinstance(value, datetime) or (isinstance(value, str) and value.strip()):
        try:
            return timestamps.parse_time(value)
        except ValueError:
            pass
    raise InvalidSpec(f"{value!r} is not an RFC 3339 timestamp", field=where)


# ---------------------------------------------------------------- filters


def parse_filter(raw: str | None) -> list[dict[str, Any]]:
    """The predicates of a filter string (empty for no filter)."""
    if raw is None or not raw.strip():
        return []
    try:
        doc = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidSpec(f"the filter is not valid JSON: {exc.msg}", field="filter") from exc
    if not isinstance(doc, dict):
        raise InvalidSpec("the filter must be a JSON object with 'predicates'", field="filter")
    unknown = set(doc) - {"predicates"}
    if unknown:
        raise InvalidSpec(
            f"unknown filter field(s) {', '.join(sorted(unknown))}; a filter has only 'predicates'",
            field="filter",
        )
    predicates = doc.get("predicates") or []
    if not isinstance(predicates, list) or not all(isinstance(p, dict) for p in predicates):
        raise InvalidSpec("'predicates' must be a list of objects", field="filter")
    return predicates


def _operation(pred: dict[str, Any], where: str) -> str:
    op = pred.get("operation", pred.get("op"))
    if isinstance(op, int) and not isinstance(op, bool):
        if op not in OPERATIONS:
            raise InvalidSpec(f"unknown operation number {op}", field=where)
        return OPERATIONS[op]
    if isinstance(op, str):
        name = op.strip().upper()
        if name.isdigit() and int(name) in OPERATIONS:
            return OPERATIONS[int(name)]
        if name in OPERATIONS.values():
            return name
    names = ", ".join(OPERATIONS.values())
    raise InvalidSpec(f"operation {op!r} is not one of {names}", field=where)


def _value(pred: dict[str, Any], op: str, where: str) -> tuple[str, Any]:
    fields = _LIST_FIELDS if op == "IN" else _SCALAR_FIELDS
    found = [(name, get_field(pred, name)) for name in fields]
    found = [(name, value) for name, value in found if value is not None]
    if op == "IN" and not found:
        raise InvalidSpec(
            "IN needs string_values, int_values or long_values ({'values': [...]})", field=where
        )
    if not found:
        raise InvalidSpec(
            f"{op} needs one of string_value, int_value, long_value or timestamp_value", field=where
        )
    if len(found) > 1:
        raise InvalidSpec(f"give one value, not {', '.join(n for n, _ in found)}", field=where)
    name, value = found[0]
    if op == "IN":
        values = value.get("values") if isinstance(value, dict) else value
        if not isinstance(values, list):
            raise InvalidSpec(f"{name} must be {{'values': [...]}}", field=where)
        return name, values
    return name, value


def _coerce(value: Any, fld: Field, value_kind: str, where: str) -> Any:
    if fld.kind == "time":
        return parse_time(value, where)
    if fld.kind == "int":
        try:
            return int(value)
        except (TypeError, ValueError):
            raise InvalidSpec(f"{value!r} is not an integer", field=where) from None
    if fld.kind == "number":
        try:
            return float(value)
        except (TypeError, ValueError):
            raise InvalidSpec(f"{value!r} is not a number", field=where) from None
    if fld.kind == "bool":
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("true", "1"):
            return True
        if str(value).lower() in ("false", "0"):
            return False
        raise InvalidSpec(f"{value!r} is not a boolean", field=where)
    if value_kind == "timestamp_value":
        raise InvalidSpec("a timestamp_value compares only with a time key", field=where)
    return str(value)


def filter_clauses(
    raw: str | None, fields: Mapping[str, Field], *, resource: str
) -> list[ColumnElement[bool]]:
    """SQL conditions for a KFP filter over the whitelisted ``fields``."""
    clauses: list[ColumnElement[bool]] = []
    for index, pred in enumerate(parse_filter(raw)):
        where = f"filter.predicates[{index}]"
        key = pred.get("key")
        if not isinstance(key, str) or not key:
            raise InvalidSpec("a predicate needs a 'key'", field=where)
        fld = fields.get(key)
        if fld is None:
            known = ", ".join(sorted(fields))
            raise InvalidSpec(
                f"cannot filter {resource} by {key!r}; filterable keys: {known}", field=where
            )
        op = _operation(pred, where)
        kind, value = _value(pred, op, where)
        col = fld.column
        if op == "IN":
            clauses.append(col.in_([_coerce(v, fld, kind, where) for v in value]))
            continue
        if op == "IS_SUBSTRING":
            if fld.kind != "string":
                raise InvalidSpec(f"IS_SUBSTRING applies to text keys, not {key!r}", field=where)
            text = str(value).lower()
            clauses.append(func.lower(col).contains(text, autoescape=True))
            continue
        v = _coerce(value, fld, kind, where)
        if op == "EQUALS":
            clauses.append(col == v)
        elif op == "NOT_EQUALS":
            clauses.append(or_(col != v, col.is_(None)) if fld.nullable else col != v)
        elif op == "GREATER_THAN":
            clauses.append(col > v)
        elif op == "GREATER_THAN_EQUALS":
            clauses.append(col >= v)
        elif op == "LESS_THAN":
            clauses.append(col < v)
        elif op == "LESS_THAN_EQUALS":
            clauses.append(col <= v)
    return clauses


# ---------------------------------------------------------------- sort and pages


@dataclass(frozen=True)
class ListOptions:
    """A checked list request: sort key and direction, filter, page size, cursor."""

    sort_key: str
    desc: bool
    filter: str
    page_size: int
    after: tuple[Any, str] | None  # (sort value, id) of the last item of the previous page


def parse_sort(sort_by: str | None, fields: Mapping[str, Field], default: str) -> tuple[str, bool]:
    text = (sort_by or "").strip()
    if not text:
        return default, False
    parts = text.split()
    if len(parts) > 2 or (len(parts) == 2 and parts[1].lower() not in ("asc", "desc")):
        raise InvalidSpec(
            f"sort_by {text!r} must be 'FIELD' or 'FIELD asc|desc' (for example 'created_at desc')",
            field="sort_by",
        )
    if parts[0] not in fields:
        known = ", ".join(sorted(fields))
        raise InvalidSpec(f"cannot sort by {parts[0]!r}; sortable keys: {known}", field="sort_by")
    return parts[0], len(parts) == 2 and parts[1].lower() == "desc"


def list_options(
    *,
    page_token: str | None,
    page_size: int | None,
    sort_by: str | None,
    filter: str | None,
    fields: Mapping[str, Field],
    default_sort: str = "created_at",
    resource: str,
) -> ListOptions:
    """Check a list request. A page token carries the sort and filter of its first page."""
    size = DEFAULT_PAGE_SIZE if not page_size else int(page_size)
    if size < 0:
        raise InvalidSpec("page_size must not be negative", field="page_size")
    size = min(size, MAX_PAGE_SIZE)
    if page_token:
        token = _decode_token(page_token)
        key, desc = token["s"], bool(token["d"])
        if key not in fields:
            raise InvalidSpec("the page_token is not valid for this list", field="page_token")
        raw_filter = token.get("f") or ""
        value = token["v"]
        if fields[key].kind == "time" and value is not None:
            value = parse_time(value, "page_token")
        after: tuple[Any, str] | None = (value, str(token["i"]))
    else:
        key, desc = parse_sort(sort_by, fields, default_sort)
        raw_filter = filter or ""
        after = None
    filter_clauses(raw_filter, fields, resource=resource)  # check it now
    return ListOptions(key, desc, raw_filter, size, after)


def sort_expression(fld: Field) -> Any:
    """The column to order by; NULL times sort as the epoch so keyset paging stays total."""
    if fld.nullable and fld.kind == "time":
        return func.coalesce(fld.column, literal(_EPOCH, DateTime(timezone=True)))
    if fld.nullable:
        return func.coalesce(fld.column, "")
    return fld.column


def keyset_clause(opts: ListOptions, fields: Mapping[str, Field], id_column: Any) -> Any:
    """The condition selecting the items after the token's cursor (None on the first page)."""
    if opts.after is None:
        return None
    value, last_id = opts.after
    expr = sort_expression(fields[opts.sort_key])
    if value is None:
        value = _EPOCH if fields[opts.sort_key].kind == "time" else ""
    if opts.desc:
        return or_(expr < value, and_(expr == value, id_column < last_id))
    return or_(expr > value, and_(expr == value, id_column > last_id))


def order_by(opts: ListOptions, fields: Mapping[str, Field], id_column: Any) -> list[Any]:
    expr = sort_expression(fields[opts.sort_key])
    if opts.desc:
        return [expr.desc(), id_column.desc()]
    return [expr.asc(), id_column.asc()]


def next_token(opts: ListOptions, sort_value: Any, item_id: str) -> str:
    """The opaque token for the page after the item with ``sort_value`` and ``item_id``."""
    if isinstance(sort_value, datetime):
        aware = sort_value if sort_value.tzinfo else sort_value.replace(tzinfo=UTC)
        sort_value = aware.isoformat()
    doc = {"s": opts.sort_key, "d": int(opts.desc), "f": opts.filter, "v": sort_value, "i": item_id}
    raw = json.dumps(doc, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_token(token: str) -> dict[str, Any]:
    try:
        padded = token + "=" * (-len(token) % 4)
        doc = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if not isinstance(doc, dict) or not {"s", "d", "v", "i"} <= set(doc):
            raise ValueError("missing fields")
        return doc
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidSpec(
            "the page_token is not valid; use the next_page_token of the previous page",
            field="page_token",
        ) from None
