"""``meta.k8s.io/v1`` Tables: what ``kubectl get`` asks for and prints.

kubectl lists and reads with ``Accept: application/json;as=Table;v=v1;g=meta.k8s.io,
application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json``; the first media
range the server can give wins (:func:`requested`). A Table's columns are ``Name``
and the kind's printer columns (``Kind.columns``, the ones Kubeflow's CRDs declare,
``Age`` last); each row's cells are the values of those columns' JSONPaths, and its
``object`` the object's metadata as a ``PartialObjectMetadata`` (``includeObject=
Metadata``, the default: kubectl reads the namespace of a row from it for
``--all-namespaces`` and the labels for ``--show-labels``), the whole object
(``includeObject=Object``) or nothing (``includeObject=None``).

Cells are evaluated as the Kubernetes API server evaluates a CRD's printer columns:
a missing value is ``null`` (kubectl prints ``<none>``), a ``date`` column is the age
of the timestamp (``5m``, ``3d4h``; kubectl prints the cell as it is), ``integer``,
``number`` and ``boolean`` columns are JSON numbers and booleans when the value is
one, and several results (``[*]``) are joined with ``,`` as kubectl's custom columns
join them.

The JSONPaths are Kubernetes' (``k8s.io/client-go/util/jsonpath``), in the part of
its grammar printer columns use (:func:`compile_path`): ``.a.b``, backslash-escaped
dots in keys (``.metadata.annotations.pipelines\\.ketch\\.dev/display-name``),
``['a.b']``, ``[0]``, ``[-1]``, slices (``[-1:]``, ``[1:3]``, ``[::2]``), ``[*]`` and
``.*``, and filters ``[?(@.type=='Ready')]``, ``[?(@.latestRevision==true)]``,
``[?(@.count>2)]``, ``[?(@.name)]``. Recursive descent (``..``), unions and
``range`` are refused with a message saying so.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from ketch.core.errors import InvalidSpec
from ketch.core.kinds import Column, Kind, TableView
from ketch.core.timestamps import parse_time, utcnow
from ketch.server.media import parse_accept

TABLE_GROUP = "meta.k8s.io"
TABLE_VERSIONS = ("v1", "v1beta1")
INCLUDE_OBJECT = ("None", "Metadata", "Object")

NAME_COLUMN: dict[str, Any] = {
    "name": "Name",
    "type": "string",
    "format": "name",
    "description": "The object's name, unique among the objects of its kind in its namespace",
    "priority": 0,
}


# -- content negotiation --------------------------------------------------------------


@dataclass(frozen=True)
class TableRequest:
    """What a request asked for: a Table of ``meta.k8s.io/{version}``, with each
    row's object as ``include_object`` says (``None``, ``Metadata``, ``Object``)."""

    version: str = "v1"
    include_object: str = "Metadata"

    @property
    def api_version(self) -> str:
        return f"{TABLE_GROUP}/{self.version}"

    @property
    def media_type(self) -> str:
        return f"application/json;as=Table;v={self.version};g={TABLE_GROUP}"


def table_version(accept: str | None) -> str | None:
    """The Table version (``v1``, ``v1beta1``) the first acceptable media range of
    ``accept`` asks for; ``None`` when that range is plain JSON (or none is
    acceptable: plain JSON is what the server answers then)."""
    if not accept:
        return None
    for media in parse_accept(accept):
        if not media.matches("application/json"):
            continue
        shape = media.params.get("as")
        if shape is None:
            return None
        if (
            shape == "Table"
            and media.params.get("g") == TABLE_GROUP
            and media.params.get("v") in TABLE_VERSIONS
        ):
            return media.params["v"]
    return None


def requested(request: Request) -> TableRequest | None:
    """The Table ``request`` asks for, or ``None`` for the plain object or list.

    ``includeObject`` other than ``None``, ``Metadata`` or ``Object`` is
    ``InvalidSpec`` naming the parameter."""
    version = table_version(request.headers.get("accept"))
    if version is None:
        return None
    include = request.query_params.get("includeObject") or "Metadata"
    if include not in INCLUDE_OBJECT:
        raise InvalidSpec(
            f"must be None, Metadata or Object, not {include!r}", field="includeObject"
        )
    return TableRequest(version, include)


# -- rendering ------------------------------------------------------------------------


def column_definitions(kind: Kind) -> list[dict[str, Any]]:
    """``Name``, then ``kind``'s printer columns."""
    return [dict(NAME_COLUMN)] + [
        {
            "name": column.name,
            "type": column.type,
            "format": column.format,
            "description": column.description
            or f"The value at {column.json_path} (as a printer column of the kind declares)",
            "priority": column.priority,
        }
        for column in kind.columns
    ]


def table(
    kind: Kind,
    objects: Iterable[dict[str, Any]],
    wanted: TableRequest,
    metadata: dict[str, Any] | None = None,
    *,
    now: datetime | None = None,
) -> dict[str, Any]:
    """A Table of ``objects`` of ``kind``; ``metadata`` is the list's (``resourceVersion``,
    ``continue``)."""
    moment = now or utcnow()
    columns = _compiled(kind)
    view = kind.table_view
    rows = [_row(columns, obj, wanted, moment, view) for obj in objects]
    return {
        "kind": "Table",
        "apiVersion": wanted.api_version,
        "metadata": dict(metadata or {}),
        "columnDefinitions": column_definitions(kind),
        "rows": rows,
    }


def list_table(
    kind: Kind, objects: Sequence[dict[str, Any]], metadata: dict[str, Any], wanted: TableRequest
) -> JSONResponse:
    """The response for a list asked for as a Table."""
    return JSONResponse(table(kind, objects, wanted, metadata), media_type=wanted.media_type)


def object_table(kind: Kind, obj: dict[str, Any], wanted: TableRequest) -> JSONResponse:
    """The response for one object asked for as a Table (one row)."""
    version = (obj.get("metadata") or {}).get("resourceVersion")
    metadata = {"resourceVersion": str(version)} if version not in (None, "") else {}
    return JSONResponse(table(kind, [obj], wanted, metadata), media_type=wanted.media_type)


def list_response(
    kind: Kind, items: Sequence[dict[str, Any]], metadata: dict[str, Any], request: Request
) -> JSONResponse:
    """The response to a list of ``kind``: a Table when ``request`` asks for one
    (kubectl), else the kind's ``{Kind}List``; ``metadata`` is the list's
    (``resourceVersion``, ``continue``)."""
    wanted = requested(request)
    if wanted is not None:
        return list_table(kind, items, metadata, wanted)
    # a JSONResponse as it is: FastAPI's encoding of a returned dict walks every value
    # again, which costs more than the list itself for a thousand objects
    return JSONResponse(
        {
            "apiVersion": kind.api_version,
            "kind": f"{kind.kind}List",
            "metadata": metadata,
            "items": items,
        }
    )


def object_response(kind: Kind, obj: dict[str, Any], request: Request) -> Any:
    """The response to a read of one object: a one-row Table when ``request`` asks
    for one, else the object."""
    wanted = requested(request)
    return obj if wanted is None else object_table(kind, obj, wanted)


def _row(
    columns: Sequence[tuple[Column, JsonPath]],
    obj: dict[str, Any],
    wanted: TableRequest,
    now: datetime,
    view: TableView | None = None,
) -> dict[str, Any]:
    shown = obj if view is None else view(obj)  # what the columns read (Kind.table_view)
    metadata = shown.get("metadata") or {}
    cells: list[Any] = [metadata.get("name", "")]
    cells.extend(cell(column, path.find(shown), now) for column, path in columns)
    row: dict[str, Any] = {"cells": cells}
    if wanted.include_object == "Metadata":
        row["object"] = {
            "kind": "PartialObjectMetadata",
            "apiVersion": wanted.api_version,
            "metadata": metadata,
        }
    elif wanted.include_object == "Object":
        row["object"] = obj
    return row


@lru_cache(maxsize=256)
def _compiled(kind: Kind) -> tuple[tuple[Column, JsonPath], ...]:
    return tuple((column, compile_path(column.json_path)) for column in kind.columns)


def cell(column: Column, results: Sequence[Any], now: datetime | None = None) -> Any:
    """The cell of ``column`` for the values its JSONPath found (``None``: none)."""
    values = [value for value in results if value is not None]
    if not values:
        return None
    if len(values) > 1:
        return ",".join(text(value) for value in values)
    value = values[0]
    kind = column.type
    if kind == "integer":
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        return int(value) if math.isfinite(value) else None
    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        return value
    if kind == "boolean":
        return value if isinstance(value, bool) else None
    if kind == "date":
        if not isinstance(value, str):
            return None
        try:
            moment = parse_time(value)
        except ValueError:
            return "<invalid>"
        return human_duration(((now or utcnow()) - moment).total_seconds())
    return text(value)


def text(value: Any) -> str:
    """A JSON value as kubectl prints it in a column (``true``, ``3``, ``1.5``)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)


def human_duration(seconds: float) -> str:
    """An age as Kubernetes prints it: ``45s``, ``3m20s``, ``15m``, ``5h10m``, ``20h``,
    ``3d4h``, ``40d``, ``2y30d``, ``9y``; ``<invalid>`` for a time in the future."""
    whole = int(seconds)
    if whole < -1:
        return "<invalid>"
    if whole < 0:
        return "0s"
    if whole < 120:
        return f"{whole}s"
    minutes = whole // 60
    if minutes < 10:
        rest = whole % 60
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = whole // 3600
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h{rest}m" if rest else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d{rest}h" if rest else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 24 // 365}y{days}d" if days else f"{hours // 24 // 365}y"
    return f"{hours // 24 // 365}y"


# -- JSONPath ---------------------------------------------------------------------------


class JsonPathError(ValueError):
    """A JSONPath outside the grammar printer columns use, with where and why."""


@dataclass(frozen=True)
class _Field:
    name: str


@dataclass(frozen=True)
class _Wildcard:
    pass


@dataclass(frozen=True)
class _Index:
    index: int


@dataclass(frozen=True)
class _Slice:
    start: int | None
    stop: int | None
    step: int | None


@dataclass(frozen=True)
class _Filter:
    left: tuple[Any, ...]
    op: str | None  # None: the left path exists
    right: Any = None  # a literal, or a path (tuple of steps) when right_is_path
    right_is_path: bool = False


_Step = _Field | _Wildcard | _Index | _Slice | _Filter
_OPS = ("==", "!=", "<=", ">=", "<", ">")


@dataclass(frozen=True)
class JsonPath:
    """A compiled JSONPath; :meth:`find` gives the values it selects, in order."""

    text: str
    steps: tuple[_Step, ...]

    def find(self, data: Any) -> list[Any]:
        return _evaluate(self.steps, [data])


@lru_cache(maxsize=1024)
def compile_path(expression: str) -> JsonPath:
    """``expression`` (``.status.conditions[-1:].type``, with or without ``{}``)
    compiled; ``JsonPathError`` says where it leaves the supported grammar."""
    return JsonPath(expression, _Parser(expression).parse())


def find(expression: str, data: Any) -> list[Any]:
    """The values ``expression`` selects in ``data``."""
    return compile_path(expression).find(data)


class _Parser:
    def __init__(self, expression: str) -> None:
        text = expression.strip()
        if text.startswith("{") and text.endswith("}"):
            text = text[1:-1].strip()
        self.source = expression
        self.text = text
        self.pos = 0

    def fail(self, why: str) -> JsonPathError:
        return JsonPathError(f"JSONPath {self.source!r}: {why} at position {self.pos}")

    def peek(self, offset: int = 0) -> str:
        at = self.pos + offset
        return self.text[at] if at < len(self.text) else ""

    def parse(self) -> tuple[_Step, ...]:
        if not self.text:
            raise self.fail("the path is empty")
        if self.peek() == "$":
            self.pos += 1
        if self.peek() not in (".", "["):
            raise self.fail("a path starts with '.' or '['")
        steps = self.steps(in_filter=False)
        if self.pos != len(self.text):
            raise self.fail(f"unexpected {self.peek()!r}")
        return steps

    def steps(self, *, in_filter: bool) -> tuple[_Step, ...]:
        steps: list[_Step] = []
        while self.pos < len(self.text):
            char = self.peek()
            if char == ".":
                self.pos += 1
                if self.peek() == ".":
                    raise self.fail("recursive descent ('..') is not supported")
                if self.peek() == "*":
                    self.pos += 1
                    steps.append(_Wildcard())
                    continue
                steps.append(_Field(self.name(in_filter=in_filter)))
            elif char == "[":
                steps.append(self.bracket())
            elif in_filter:
                break
            else:
                raise self.fail(f"unexpected {char!r}")
        return tuple(steps)

    def name(self, *, in_filter: bool) -> str:
        stops = ".[]" + (" \t=!<>()" if in_filter else "")
        chars: list[str] = []
        while self.pos < len(self.text):
            char = self.peek()
            if char == "\\":
                if self.pos + 1 >= len(self.text):
                    raise self.fail("'\\' at the end escapes nothing")
                chars.append(self.peek(1))
                self.pos += 2
                continue
            if char in stops:
                break
            if char in "{},|":
                raise self.fail(f"{char!r} is not supported in a field name (unions, range)")
            chars.append(char)
            self.pos += 1
        if not chars:
            raise self.fail("a field name is expected")
        return "".join(chars)

    def bracket(self) -> _Step:
        self.pos += 1  # [
        self.space()
        char = self.peek()
        step: _Step
        if char == "*":
            self.pos += 1
            step = _Wildcard()
        elif char == "?":
            self.pos += 1
            step = self.filter()
        elif char in ("'", '"'):
            step = _Field(self.string())
        else:
            step = self.subscript()
        self.space()
        if self.peek() != "]":
            if self.peek() == ",":
                raise self.fail("unions ('[a,b]') are not supported")
            raise self.fail("']' is expected")
        self.pos += 1
        return step

    def subscript(self) -> _Index | _Slice:
        parts: list[int | None] = [self.integer()]
        while self.peek() == ":":
            self.pos += 1
            self.space()
            parts.append(self.integer())
        if len(parts) == 1:
            if parts[0] is None:
                raise self.fail("an index, a slice, '*' or a filter is expected")
            return _Index(parts[0])
        if len(parts) > 3:
            raise self.fail("a slice has at most three parts (start:stop:step)")
        start, stop, step = (parts + [None, None])[:3]
        if step == 0:
            raise self.fail("a slice's step cannot be 0")
        return _Slice(start, stop, step)

    def integer(self) -> int | None:
        self.space()
        begin = self.pos
        if self.peek() in ("-", "+"):
            self.pos += 1
        while self.peek().isdigit():
            self.pos += 1
        raw = self.text[begin : self.pos]
        self.space()
        if raw in ("", "-", "+"):
            if raw:
                raise self.fail("a number is expected")
            return None
        return int(raw)

    def space(self) -> None:
        while self.peek() in (" ", "\t"):
            self.pos += 1

    def string(self) -> str:
        quote = self.peek()
        self.pos += 1
        chars: list[str] = []
        while True:
            char = self.peek()
            if not char:
                raise self.fail(f"the string has no closing {quote}")
            self.pos += 1
            if char == "\\" and self.peek():
                chars.append(self.peek())
                self.pos += 1
            elif char == quote:
                return "".join(chars)
            else:
                chars.append(char)

    def filter(self) -> _Filter:
        if self.peek() != "(":
            raise self.fail("a filter is written [?(@.field=='value')]")
        self.pos += 1
        self.space()
        left = self.current_path()
        self.space()
        if self.peek() == ")":
            self.pos += 1
            return _Filter(left, None)
        op = next((o for o in _OPS if self.text.startswith(o, self.pos)), None)
        if op is None:
            raise self.fail(f"a comparison ({', '.join(_OPS)}) or ')' is expected")
        self.pos += len(op)
        self.space()
        if self.peek() == "@":
            right: Any = self.current_path()
            is_path = True
        else:
            right = self.literal()
            is_path = False
        self.space()
        if self.peek() != ")":
            raise self.fail("')' is expected to close the filter")
        self.pos += 1
        return _Filter(left, op, right, is_path)

    def current_path(self) -> tuple[_Step, ...]:
        if self.peek() != "@":
            raise self.fail("a filter compares a path starting with '@'")
        self.pos += 1
        return self.steps(in_filter=True)

    def literal(self) -> Any:
        char = self.peek()
        if char in ("'", '"'):
            return self.string()
        begin = self.pos
        while self.peek() and (self.peek().isalnum() or self.peek() in "+-._"):
            self.pos += 1
        raw = self.text[begin : self.pos]
        if raw in ("true", "false"):
            return raw == "true"
        if raw == "null":
            return None
        try:
            return int(raw)
        except ValueError:
            pass
        try:
            return float(raw)
        except ValueError:
            self.pos = begin
            raise self.fail(
                "a literal (a quoted string, a number, true, false or null) is expected"
            ) from None


def _evaluate(steps: Sequence[_Step], values: list[Any]) -> list[Any]:
    for step in steps:
        found: list[Any] = []
        for value in values:
            _apply(step, value, found)
        values = found
        if not values:
            break
    return values


def _apply(step: _Step, value: Any, found: list[Any]) -> None:
    if isinstance(step, _Field):
        if isinstance(value, dict) and step.name in value:
            found.append(value[step.name])
    elif isinstance(step, _Wildcard):
        if isinstance(value, dict):
            found.extend(value.values())
        elif isinstance(value, list):
            found.extend(value)
    elif isinstance(step, _Index):
        if isinstance(value, list) and -len(value) <= step.index < len(value):
            found.append(value[step.index])
    elif isinstance(step, _Slice):
        if isinstance(value, list):
            found.extend(value[step.start : step.stop : step.step])
    elif isinstance(value, list):
        found.extend(item for item in value if _keeps(step, item))


def _keeps(step: _Filter, item: Any) -> bool:
    lefts = _evaluate(step.left, [item])
    if step.op is None:
        return bool(lefts)
    if len(lefts) != 1:
        return False
    if step.right_is_path:
        rights = _evaluate(step.right, [item])
        if len(rights) != 1:
            return False
        right = rights[0]
    else:
        right = step.right
    return _compare(lefts[0], step.op, right)


def _class(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "other"


def _compare(left: Any, op: str, right: Any) -> bool:
    same = _class(left) == _class(right)
    if op == "==":
        return same and left == right
    if op == "!=":
        return not (same and left == right)
    if not same or _class(left) not in ("number", "string"):
        return False
    if op == "<":
        return bool(left < right)
    if op == ">":
        return bool(left > right)
    if op == "<=":
        return bool(left <= right)
    return bool(left >= right)
