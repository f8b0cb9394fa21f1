r"""``filterQuery``: the SQL-like filter language of Kubeflow Model Registry's list
endpoints, parsed into a small immutable syntax tree (:func:`parse`) and compiled to a
SQLAlchemy condition over the registry's tables, with bound parameters only
(:func:`where`).

The language, as Model Registry publishes it::

    query    := and_expr ("OR" and_expr)*             -- AND binds tighter than OR
    and_expr := term ("AND" term)*
    term     := "(" query ")" | property op value | property "IN" "(" [value ("," value)*] ")"
    op       := "=" | "!=" | "<>" | "<" | "<=" | ">" | ">=" | "LIKE" | "ILIKE"
    property := name ("." name)* ["." type] | `quoted name` ["." type]
    type     := "string_value" | "int_value" | "double_value" | "bool_value"
    value    := 'string' | "string" | integer | float | true | false

Keywords, ``true``/``false`` and the types are case-insensitive; ``--`` starts a
comment that runs to the end of the line. In strings \\, \' and \" are escapes and any
other backslash stays (``'50\%'`` hands ``\%`` to LIKE, whose escape character is the
backslash); in backticks a backslash escapes the character after it. As upstream,
there is no NOT and no IS NULL, and LIKE's wildcards are % and _.

A name is the entity's own field when its kind has one by that name (:data:`FIELDS`),
and otherwise a custom property. An untyped custom property is compared in the column
its value picks: a string in ``string_value``, a float in ``double_value``, a boolean
in ``bool_value``, an integer in ``int_value`` or ``double_value``; a type names the
column. Only entities that have the field or property match, whatever the operator.
LIKE is case-sensitive and ILIKE is not, and text orders byte by byte, on SQLite as on
PostgreSQL.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any, TypeAlias

from lark import Lark, Token, Transformer
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken
from sqlalchemy import (
    BigInteger,
    Boolean,
    ColumnElement,
    Float,
    Numeric,
    String,
    and_,
    case,
    cast,
    false,
    func,
    literal,
    or_,
    select,
    true,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import TypeEngine

from ketch.core.errors import InvalidSpec
from ketch.registry.tables import EntityRow, PropertyRow

#: the longest filterQuery accepted, in characters
MAX_LENGTH = 4096
#: how deep parentheses may nest
MAX_DEPTH = 32
TYPES = ("string_value", "int_value", "double_value", "bool_value")

Scalar: TypeAlias = str | int | float | bool


@dataclass(frozen=True)
class Property:
    """What a comparison reads: a field of the entity or a custom property, and the
    column its type names (``None``: not given)."""

    name: str
    type: str | None = None


@dataclass(frozen=True)
class Comparison:
    """``property op value``: ``op`` is one of = != < <= > >= LIKE ILIKE IN (``<>``
    reads as ``!=``), ``value`` a tuple for IN."""

    property: Property
    op: str
    value: Scalar | tuple[Scalar, ...]


@dataclass(frozen=True)
class And:
    terms: tuple[Expr, ...]


@dataclass(frozen=True)
class Or:
    terms: tuple[Expr, ...]


@dataclass(frozen=True)
class MatchAll:
    """A blank filterQuery: every entity."""


Expr: TypeAlias = Comparison | And | Or | MatchAll


# -- parsing ---------------------------------------------------------------------------

_GRAMMAR = r"""
?start: or_expr
?or_expr: and_expr (_OR and_expr)*
?and_expr: _term (_AND _term)*
_term: _LPAR or_expr _RPAR | comparison | membership
comparison: property (OP | LIKE | ILIKE) scalar
membership: property IN _LPAR (scalar (_COMMA scalar)*)? _RPAR
property: NAME (_DOT NAME)*         -> path
        | QUOTED_NAME (_DOT NAME)?  -> quoted
scalar: STRING | INT | FLOAT | TRUE | FALSE

_OR: "or"i
_AND: "and"i
LIKE: "like"i
ILIKE: "ilike"i
IN: "in"i
TRUE: "true"i
FALSE: "false"i
NAME: /[A-Za-z_][A-Za-z0-9_]*/
QUOTED_NAME: /`(?:[^`\\]|\\.)*`/
STRING: /'(?:[^'\\]|\\.)*'/ | /"(?:[^"\\]|\\.)*"/
FLOAT.2: /[-+]?(?:\d*\.\d+(?:[eE][-+]?\d+)?|\d+[eE][-+]?\d+)/
INT: /[-+]?\d+/
OP: ">=" | "<=" | "!=" | "<>" | "=" | ">" | "<"
_LPAR: "("
_RPAR: ")"
_COMMA: ","
_DOT: "."
COMMENT: /--[^\n]*/
%ignore /\s+/
%ignore COMMENT
"""

_OPERATOR = "an operator (=, !=, <>, <, <=, >, >=, LIKE, ILIKE, IN)"
_VALUE = "a value (a quoted string, a number, true or false)"
_EXPECTED = {
    **dict.fromkeys(("OP", "LIKE", "ILIKE", "IN"), _OPERATOR),
    **dict.fromkeys(("STRING", "INT", "FLOAT", "TRUE", "FALSE"), _VALUE),
    "NAME": "a property name",
    "QUOTED_NAME": "a `quoted` property name",
    "_DOT": "'.'",
    "_LPAR": "'('",
    "_RPAR": "')'",
    "_COMMA": "','",
    "_AND": "AND",
    "_OR": "OR",
    "$END": "the end of the query",
}
_INT64 = 2**63
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_ESCAPE = re.compile(r"\\(.)", re.DOTALL)


def _fail(message: str) -> InvalidSpec:
    return InvalidSpec(message, field="filterQuery")


def _at(line: int | None, column: int | None) -> str:
    return f"line {line}, column {column}" if line and line > 1 else f"column {column}"


def _where(token: Token) -> str:
    return _at(token.line, token.column)


@dataclass(frozen=True)
class _Literal:
    value: Scalar
    token: Token


class _Build(Transformer[Token, Expr]):
    """Builds the syntax tree as the LALR parser reduces (no recursion), and refuses
    what the grammar lets through but means nothing."""

    def or_expr(self, terms: list[Expr]) -> Expr:
        return Or(tuple(terms))

    def and_expr(self, terms: list[Expr]) -> Expr:
        return And(tuple(terms))

    def path(self, names: list[Token]) -> Property:
        parts = [str(name) for name in names]
        kind = parts.pop().lower() if len(parts) > 1 and parts[-1].lower() in TYPES else None
        if len(parts) > 1 and parts[0] == "artifacts":
            raise _fail(
                f"{'.'.join(parts)} at {_where(names[0])}: Model Registry has no filters on "
                "related entities (artifacts.<property> is a Model Catalog filter); a custom "
                "property whose name has dots is written in backticks"
            )
        return Property(".".join(parts), kind)

    def quoted(self, tokens: list[Token]) -> Property:
        name = _ESCAPE.sub(r"\1", str(tokens[0])[1:-1])
        if not name:
            raise _fail(f"empty property name `` at {_where(tokens[0])}")
        if len(tokens) == 1:
            return Property(name)
        if tokens[1].lower() not in TYPES:
            raise _fail(
                f"'.{tokens[1]}' at {_where(tokens[1])}: only a type ({', '.join(TYPES)}) "
                "may follow a `quoted` name; put the whole name in the backticks"
            )
        return Property(name, tokens[1].lower())

    def scalar(self, tokens: list[Token]) -> _Literal:
        (token,) = tokens
        value: Scalar
        if token.type == "STRING":
            value = _ESCAPE.sub(lambda m: m[1] if m[1] in "\\'\"" else m[0], token[1:-1])
        elif token.type == "INT":
            value = int(token)
            if not -_INT64 <= value < _INT64:
                raise _fail(f"{token} at {_where(token)} is outside the 64-bit integers")
        elif token.type == "FLOAT":
            value = float(token)
            if not math.isfinite(value):
                raise _fail(f"{token} at {_where(token)} is too large a number")
        else:
            value = token.type == "TRUE"
        return _Literal(value, token)

    def comparison(self, items: list[Any]) -> Comparison:
        prop, op_token, lit = items
        op = "!=" if op_token == "<>" else op_token.upper()
        if op in ("LIKE", "ILIKE"):
            if not isinstance(lit.value, str):
                raise _fail(f"{op} at {_where(op_token)} takes a quoted pattern")
            if re.search(r"(?<!\\)(\\\\)*\\$", lit.value):
                raise _fail(
                    f"the pattern at {_where(lit.token)} ends with LIKE's escape character "
                    "(a backslash); to match a backslash, escape it with another"
                )
        elif isinstance(lit.value, bool) and op not in ("=", "!="):
            raise _fail(f"{op} at {_where(op_token)}: true and false compare with = and != only")
        return Comparison(prop, op, lit.value)

    def membership(self, items: list[Any]) -> Comparison:
        prop, in_token, *lits = items
        kinds = {_kind(lit.value) for lit in lits}
        if len(kinds) > 1:
            raise _fail(
                f"the list after IN at {_where(in_token)} mixes {' and '.join(sorted(kinds))}: "
                "give values of one type"
            )
        return Comparison(prop, "IN", tuple(lit.value for lit in lits))


def _kind(value: Scalar) -> str:
    if isinstance(value, bool):
        return "booleans"
    return "strings" if isinstance(value, str) else "numbers"


@cache
def _parser() -> Lark:
    return Lark(_GRAMMAR, parser="lalr", lexer="contextual", transformer=_Build())


def _syntax_error(error: UnexpectedInput, text: str) -> InvalidSpec:
    where, char = _at(error.line, error.column), text[error.pos_in_stream or 0 :][:1]
    if isinstance(error, UnexpectedCharacters) and char in "'\"`":
        return _fail(f"syntax error at {where}: the quote {char} is never closed")
    try:  # what the parser takes there, which the parse table's row overstates
        expected = _expected(error.interactive_parser.accepts())
    except AttributeError:  # pragma: no cover - lark's LALR parser always attaches one
        expected = ""
    if isinstance(error, UnexpectedToken) and error.token.type == "$END":
        return _fail(f"syntax error at the end of the query{expected}")
    if isinstance(error, UnexpectedToken):
        return _fail(f"syntax error at {where}: unexpected {str(error.token)!r}{expected}")
    return _fail(f"syntax error at {where}: unexpected character {char!r}{expected}")


def _expected(names: Any) -> str:
    wanted = list(dict.fromkeys(_EXPECTED.get(name, name) for name in sorted(names)))
    if len(wanted) < 2:
        return "".join(f"; expected {w}" for w in wanted)
    return f"; expected {', '.join(wanted[:-1])} or {wanted[-1]}"


def parse(text: str) -> Expr:
    """Parse a filterQuery; a blank one (or only comments) is :class:`MatchAll`.

    Raises :class:`~ketch.core.errors.InvalidSpec` with ``field="filterQuery"`` for
    text over :data:`MAX_LENGTH` characters, parentheses nested deeper than
    :data:`MAX_DEPTH`, control characters, and syntax errors, saying where and what
    was expected."""
    if len(text) > MAX_LENGTH:
        raise _fail(f"the query has {len(text)} characters; at most {MAX_LENGTH} are accepted")
    bad = _CONTROL.search(text)
    if bad:
        raise _fail(f"control character {bad[0]!r} at character {bad.start() + 1}")
    parser = _parser()
    depth, blank = 0, True
    try:
        for token in parser.lex(text):
            blank = False
            depth += {"_LPAR": 1, "_RPAR": -1}.get(token.type, 0)
            if depth > MAX_DEPTH:
                raise _fail(f"parentheses nest deeper than {MAX_DEPTH} at {_where(token)}")
    except UnexpectedInput:
        blank = False  # the parser below says what it expected there
    if blank:
        return MatchAll()
    try:
        tree: Expr = parser.parse(text)  # type: ignore[assignment]  # built by _Build
    except UnexpectedInput as error:
        raise _syntax_error(error, text) from None
    return tree


# -- compiling -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Field:
    """An entity's own field: ``type`` is "int", "text", "any" (a number or text, as
    the value is) or "list" (not compared); read from an EntityRow ``column``, else
    from ``body[key]``."""

    type: str
    column: str = ""
    key: str = ""


def _body(type: str, *keys: str) -> dict[str, _Field]:
    return {key: _Field(type, key=key) for key in keys}


_COMMON = {
    "id": _Field("int", "id"),
    "name": _Field("text", "name"),
    "externalId": _Field("text", "external_id"),
    "createTimeSinceEpoch": _Field("int", "created"),
    "lastUpdateTimeSinceEpoch": _Field("int", "updated"),
    **_body("text", "description"),
}
_STATE = {"state": _Field("text", "state")}
_PARENT = _Field("int", "parent_id")

#: Each kind's own fields that a filterQuery compares: those Model Registry lists, and
#: the other fields it keeps as properties (description, a registered model's readme,
#: license, ...), and an artifact's artifactType; other names are custom properties.
#: A parent's id reads ``parent_id`` and the state field the row's ``state``, as the
#: store keeps them; an artifact has the fields of every artifact type.
FIELDS: Mapping[str, Mapping[str, _Field]] = {
    "registered_model": {
        **_COMMON,
        **_STATE,
        **_body("text", "owner", "readme", "maturity", "provider", "logo", "license"),
        **_body("text", "licenseLink", "libraryName"),
        **_body("list", "language", "tasks"),
    },
    "model_version": {
        **_COMMON,
        **_STATE,
        "registeredModelId": _PARENT,
        **_body("text", "author"),
    },
    "artifact": {
        **_COMMON,
        **_STATE,
        "uri": _Field("text", "uri"),
        "artifactType": _Field("text", "subtype"),
        **_body(
            "text",
            *"modelFormatName modelFormatVersion storageKey storagePath serviceAccountName "
            "modelSourceKind modelSourceClass modelSourceGroup modelSourceId modelSourceName "
            "parameterType digest sourceType source schema profile".split(),
        ),
        **_body("any", "value"),
        **_body("int", "timestamp", "step", "experimentId", "experimentRunId"),
    },
    "serving_environment": dict(_COMMON),
    "inference_service": {
        **_COMMON,
        "servingEnvironmentId": _PARENT,
        "desiredState": _Field("text", "state"),
        **_body("int", "registeredModelId", "modelVersionId"),
        **_body("text", "runtime"),
    },
    "serve_model": {
        **_COMMON,
        "lastKnownState": _Field("text", "state"),
        "inferenceServiceId": _PARENT,
        **_body("int", "modelVersionId", "registeredModelId", "servingEnvironmentId"),
    },
    "experiment": {**_COMMON, **_STATE, **_body("text", "owner")},
    "experiment_run": {
        **_COMMON,
        **_STATE,
        "experimentId": _PARENT,
        **_body("int", "startTimeSinceEpoch", "endTimeSinceEpoch"),
        **_body("text", "status", "owner"),
    },
}
KINDS = tuple(FIELDS)


class _Sql(FunctionElement[Any]):
    """SQL that SQLite and PostgreSQL write differently (compiled below). Only the
    arguments a dialect uses are compiled: a bound parameter compiled but left out of
    the text would shift SQLite's positional parameters."""

    inherit_cache = True
    type: Any

    def arg(self, compiler: SQLCompiler, index: int, **kw: Any) -> str:
        return compiler.process(list(self.clauses)[index], **kw)


class _JsonText(_Sql):
    """``body[key]`` as text: a string's value, a number's digits; NULL if absent."""

    type: Any = String()
    name = "ketch_json_text"
    inherit_cache = True

    def __init__(self, key: str) -> None:
        super().__init__(EntityRow.body, literal(key), literal(f'$."{key}"'))


class _JsonType(_JsonText):
    """The JSON type of ``body[key]``, as the database names it (SQLite: integer,
    real, text, ...; PostgreSQL: number, string, ...)."""

    name = "ketch_json_type"
    inherit_cache = True


class _Like(_Sql):
    """Case-sensitive LIKE, ``\\`` escaping: GLOB on SQLite, whose LIKE ignores case."""

    type = Boolean()
    name = "ketch_like"
    inherit_cache = True

    def __init__(self, value: ColumnElement[Any], pattern: str) -> None:
        super().__init__(value, literal(pattern), literal(_glob(pattern)))


class _Binary(_Sql):
    """Text that orders byte by byte (SQLite's default; COLLATE "C" on PostgreSQL)."""

    type = String()
    name = "ketch_binary"
    inherit_cache = True


@compiles(_JsonText)
@compiles(_JsonType)
@compiles(_Like)
@compiles(_Binary)
def _sqlite(element: _Sql, compiler: SQLCompiler, **kw: Any) -> str:
    if isinstance(element, _JsonType):
        return f"json_type({element.arg(compiler, 0, **kw)}, {element.arg(compiler, 2, **kw)})"
    if isinstance(element, _JsonText):
        path = element.arg(compiler, 2, **kw)
        return f"CAST(json_extract({element.arg(compiler, 0, **kw)}, {path}) AS TEXT)"
    if isinstance(element, _Like):
        return f"({element.arg(compiler, 0, **kw)} GLOB {element.arg(compiler, 2, **kw)})"
    return element.arg(compiler, 0, **kw)


@compiles(_JsonText, "postgresql")
@compiles(_JsonType, "postgresql")
@compiles(_Like, "postgresql")
@compiles(_Binary, "postgresql")
def _postgresql(element: _Sql, compiler: SQLCompiler, **kw: Any) -> str:
    if isinstance(element, _JsonType):
        body, key = element.arg(compiler, 0, **kw), element.arg(compiler, 1, **kw)
        return f"json_typeof(CAST({body} AS JSON) -> {key})"
    if isinstance(element, _JsonText):
        body, key = element.arg(compiler, 0, **kw), element.arg(compiler, 1, **kw)
        return f"(CAST({body} AS JSON) ->> {key})"
    if isinstance(element, _Like):
        value, pattern, _ = element.clauses
        return compiler.process(value.like(pattern, escape="\\"), **kw)
    return f'({element.arg(compiler, 0, **kw)} COLLATE "C")'


def _glob(pattern: str) -> str:
    """The GLOB pattern that matches what a LIKE pattern (escape ``\\``) matches."""
    out: list[str] = []
    chars = iter(pattern)
    for char in chars:
        if char == "\\":
            char = next(chars, "")
        elif char in "%_":
            out.append("*" if char == "%" else "?")
            continue
        out.append(f"[{char}]" if char in "*?[" else char)
    return "".join(out)


def _bind(value: Scalar) -> ColumnElement[Any]:
    types: dict[type, type[TypeEngine[Any]]] = {bool: Boolean, int: BigInteger, float: Float}
    return literal(value, types.get(type(value), String)())


_OPERATORS = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def _compare(lhs: ColumnElement[Any], op: str, values: tuple[Scalar, ...]) -> ColumnElement[bool]:
    if op == "IN":
        return lhs.in_([_bind(v) for v in values]) if values else false()
    (value,) = values
    if op == "LIKE":
        return _Like(lhs, str(value))
    if op == "ILIKE":
        return func.lower(lhs).like(func.lower(_bind(value)), escape="\\")
    if isinstance(value, str) and op not in ("=", "!="):
        lhs = _Binary(lhs)
    result: ColumnElement[bool] = _OPERATORS[op](lhs, _bind(value))
    return result


def _show(value: Scalar) -> str:
    return str(value).lower() if isinstance(value, bool) else repr(value)


def _numbers(
    name: str, op: str, values: tuple[Scalar, ...], *, strings: bool
) -> tuple[Scalar, ...]:
    """The values as numbers; integers in strings too where ``strings`` (the API
    writes ids and times as strings)."""
    if op in ("LIKE", "ILIKE"):
        raise _fail(f"{op} matches text, and {name} is a number")
    out: list[Scalar] = []
    for value in values:
        if isinstance(value, str) and strings and re.fullmatch(r"\s*[-+]?\d{1,18}\s*", value):
            out.append(int(value))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            out.append(value)
        else:
            raise _fail(f"{name} is a number, and {_show(value)} is not")
    return tuple(out)


def _texts(name: str, values: tuple[Scalar, ...]) -> tuple[Scalar, ...]:
    for value in values:
        if not isinstance(value, str):
            raise _fail(f"{name} is text: quote the value ('{_show(value)}')")
    return values


def _number_of(key: str) -> ColumnElement[Any]:
    """``body[key]`` as a number: a JSON number or a string of digits; else NULL."""
    text, kind = _JsonText(key), _JsonType(key)
    digits = and_(kind.in_(["text", "string"]), text != "", func.ltrim(text, "0123456789") == "")
    return case((or_(kind.in_(["integer", "real", "number"]), digits), cast(text, Numeric())))


def _field(name: str, spec: _Field, op: str, values: tuple[Scalar, ...]) -> ColumnElement[bool]:
    if spec.type == "list":
        raise _fail(f"{name} is a list, which filterQuery does not compare")
    if spec.type == "int" or (spec.type == "any" and values and not isinstance(values[0], str)):
        numbers = _numbers(name, op, values, strings=spec.type == "int")
        lhs = getattr(EntityRow, spec.column) if spec.column else _number_of(spec.key)
        return _compare(lhs, op, numbers)
    lhs = getattr(EntityRow, spec.column) if spec.column else _JsonText(spec.key)
    return _compare(lhs, op, _texts(name, values))


def _custom(prop: Property, op: str, values: tuple[Scalar, ...]) -> ColumnElement[bool]:
    """EXISTS a custom property of that name whose value compares so."""
    if not values:
        return false()
    first, kind = values[0], prop.type
    shown = f"{prop.name}.{kind}" if kind else prop.name
    if kind is None and type(first) is int:  # as upstream: an int is an int or a double
        numbers = _numbers(shown, op, values, strings=False)
        condition = or_(
            _compare(PropertyRow.int_value.expression, op, numbers),
            _compare(PropertyRow.double_value.expression, op, numbers),
        )
    else:
        kind = kind or {bool: "bool_value", str: "string_value", float: "double_value"}[type(first)]
        if kind == "string_value":
            values = _texts(shown, values)
        elif kind == "bool_value":
            if not all(isinstance(v, bool) for v in values) or op not in ("=", "!=", "IN"):
                raise _fail(f"{shown} is a boolean: compare it with = true or = false")
        else:
            values = _numbers(shown, op, values, strings=False)
        condition = _compare(getattr(PropertyRow, kind), op, values)
    return (
        select(PropertyRow.entity_id)
        .where(PropertyRow.entity_id == EntityRow.id, PropertyRow.name == prop.name, condition)
        .exists()
    )


def where(expr: Expr, kind: str) -> ColumnElement[bool]:
    """The condition on :class:`~ketch.registry.tables.EntityRow` (custom properties:
    EXISTS on PropertyRow, correlated by ``entity_id``) that a parsed filterQuery puts
    on the entities of ``kind`` (one of :data:`KINDS`). Raises InvalidSpec where a
    value does not suit what it is compared with (``name = 5``, ``id = 'abc'``,
    ``flag.bool_value > 1``, ``id LIKE '1%'``)."""
    if kind not in FIELDS:
        raise ValueError(f"unknown registry kind {kind!r}; one of {', '.join(KINDS)}")
    return _compile(expr, FIELDS[kind])


def _compile(expr: Expr, fields: Mapping[str, _Field]) -> ColumnElement[bool]:
    if isinstance(expr, MatchAll):
        return true()
    if isinstance(expr, And | Or):
        join = and_ if isinstance(expr, And) else or_
        return join(*(_compile(term, fields) for term in expr.terms))
    values = expr.value if isinstance(expr.value, tuple) else (expr.value,)
    spec = fields.get(expr.property.name)
    if spec is None:
        return _custom(expr.property, expr.op, values)
    return _field(expr.property.name, spec, expr.op, values)
