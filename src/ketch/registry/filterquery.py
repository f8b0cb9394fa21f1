"""``filterQuery``: the SQL-like filter language of Kubeflow Model Registry's list
endpoints, parsed into a small immutable syntax tree and compiled to a SQLAlchemy
condition over the registry's tables (bound parameters only).

The language, as Model Registry publishes it::

    query      := or_expr
    or_expr    := and_expr ("OR" and_expr)*          -- AND binds tighter than OR
    and_expr   := term ("AND" term)*
    term       := "(" or_expr ")" | property op value | property "IN" "(" [value ("," value)*] ")"
    op         := "=" | "!=" | "<>" | "<" | "<=" | ">" | ">=" | "LIKE" | "ILIKE"
    property   := name ("." name)* ["." type] | `quoted name` ["." type]
    type       := "string_value" | "int_value" | "double_value" | "bool_value"
    value      := 'string' | "string" | integer | float | true | false

Keywords, ``true``/``false`` and the type suffixes are case-insensitive; ``--`` starts
a comment that runs to the end of the line. In strings ``\\\\``, ``\\'`` and ``\\"`` are
escapes and any other backslash stays as it is (so ``'50\\%'`` passes ``\\%`` on to
LIKE, whose escape character is the backslash); in backticks a backslash escapes the
character after it. There is no NOT and no IS NULL, as upstream.

A name is the entity's own field when the kind has one by that name (``name``, ``id``,
``state``, ``author``, ...: :data:`FIELDS` lists them), and otherwise a custom
property. An untyped custom property is compared in the column its value's type
picks: a string in ``string_value``, a float in ``double_value``, a boolean in
``bool_value`` and an integer in ``int_value`` or ``double_value``; a type suffix
names the column. Only entities that have the field or property match, whatever the
operator. LIKE is case-sensitive and ILIKE is not, on SQLite as on PostgreSQL.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
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
    null,
    or_,
    select,
    true,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from ketch.core.errors import InvalidSpec
from ketch.registry.tables import EntityRow, PropertyRow

#: the longest filterQuery accepted, in characters
MAX_LENGTH = 4096
#: how deep parentheses may nest
MAX_DEPTH = 32

Scalar: TypeAlias = str | int | float | bool
TYPES = ("string_value", "int_value", "double_value", "bool_value")


@dataclass(frozen=True)
class Property:
    """What a comparison reads: a field of the entity or a custom property, with the
    column a type suffix names (``None``: none given)."""

    name: str
    type: str | None = None


@dataclass(frozen=True)
class Comparison:
    """``property op value``; ``op`` is one of = != < <= > >= LIKE ILIKE IN (``<>``
    is read as ``!=``) and ``value`` is a tuple for IN."""

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
    """An empty filterQuery: every entity."""


Expr: TypeAlias = Comparison | And | Or | MatchAll


# -- parsing ---------------------------------------------------------------------------

_GRAMMAR = r"""
?start: or_expr
?or_expr: and_expr (_OR and_expr)*
?and_expr: _term (_AND _term)*
_term: _LPAR or_expr _RPAR
     | comparison
     | membership
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
WS: /\s+/
%ignore WS
%ignore COMMENT
"""

_EXPECTED = {
    "NAME": "a property name",
    "QUOTED_NAME": "a `quoted` property name",
    "OP": "an operator (=, !=, <>, <, <=, >, >=, LIKE, ILIKE, IN)",
    "LIKE": "an operator (=, !=, <>, <, <=, >, >=, LIKE, ILIKE, IN)",
    "ILIKE": "an operator (=, !=, <>, <, <=, >, >=, LIKE, ILIKE, IN)",
    "IN": "an operator (=, !=, <>, <, <=, >, >=, LIKE, ILIKE, IN)",
    "_DOT": "'.'",
    "STRING": "a value (a quoted string, a number, true or false)",
    "INT": "a value (a quoted string, a number, true or false)",
    "FLOAT": "a value (a quoted string, a number, true or false)",
    "TRUE": "a value (a quoted string, a number, true or false)",
    "FALSE": "a value (a quoted string, a number, true or false)",
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


def _where(token: Token) -> str:
    if token.line and token.line > 1:
        return f"line {token.line}, column {token.column}"
    return f"column {token.column}"


@dataclass(frozen=True)
class _Literal:
    value: Scalar
    token: Token


class _Build(Transformer[Token, Expr]):
    """Builds the syntax tree while the LALR parser reduces (no recursion)."""

    def or_expr(self, terms: list[Expr]) -> Expr:
        return Or(tuple(terms))

    def and_expr(self, terms: list[Expr]) -> Expr:
        return And(tuple(terms))

    def path(self, names: list[Token]) -> Property:
        parts = [str(name) for name in names]
        kind = None
        if len(parts) > 1 and parts[-1].lower() in TYPES:
            kind = parts.pop().lower()
        if len(parts) > 1 and parts[0] == "artifacts":
            raise _fail(
                f"{'.'.join(parts)} at {_where(names[0])}: filters on related entities "
                "(artifacts.<property>) are a Model Catalog feature that Model Registry "
                "does not offer; to name a custom property with dots, quote it in backticks"
            )
        return Property(".".join(parts), kind)

    def quoted(self, tokens: list[Token]) -> Property:
        name = _ESCAPE.sub(r"\1", str(tokens[0])[1:-1])
        if not name:
            raise _fail(f"empty `` property name at {_where(tokens[0])}")
        if len(tokens) == 1:
            return Property(name)
        suffix = str(tokens[1])
        if suffix.lower() not in TYPES:
            raise _fail(
                f"'.{suffix}' at {_where(tokens[1])}: after a `quoted` name only a type "
                f"may follow ({', '.join(TYPES)}); quote the whole name instead"
            )
        return Property(name, suffix.lower())

    def scalar(self, tokens: list[Token]) -> _Literal:
        (token,) = tokens
        text = str(token)
        value: Scalar
        if token.type == "STRING":
            value = _ESCAPE.sub(lambda m: m[1] if m[1] in "\\'\"" else m[0], text[1:-1])
        elif token.type == "INT":
            value = int(text)
            if not -_INT64 <= value < _INT64:
                raise _fail(f"{text} at {_where(token)} is out of the 64-bit integer range")
        elif token.type == "FLOAT":
            value = float(text)
            if not math.isfinite(value):
                raise _fail(f"{text} at {_where(token)} is out of the floating-point range")
        else:
            value = token.type == "TRUE"
        return _Literal(value, token)

    def comparison(self, items: list[Any]) -> Comparison:
        prop, op_token, lit = items
        op = {"<>": "!="}.get(str(op_token), str(op_token)).upper()
        if op in ("LIKE", "ILIKE"):
            if not isinstance(lit.value, str):
                raise _fail(f"{op} at {_where(op_token)} needs a quoted pattern")
            if re.search(r"(?<!\\)(\\\\)*\\$", lit.value):
                raise _fail(
                    f"the pattern at {_where(lit.token)} ends with the escape character "
                    "\\ (write \\\\\\\\ for a backslash)"
                )
        elif isinstance(lit.value, bool) and op not in ("=", "!="):
            raise _fail(f"true and false compare only with = and != (at {_where(op_token)})")
        return Comparison(prop, op, lit.value)

    def membership(self, items: list[Any]) -> Comparison:
        prop, in_token, *lits = items
        kinds = {_kind(lit.value) for lit in lits}
        if len(kinds) > 1:
            raise _fail(
                f"the values of IN at {_where(in_token)} mix "
                f"{' and '.join(sorted(kinds))}: give values of one type"
            )
        return Comparison(prop, "IN", tuple(lit.value for lit in lits))


def _kind(value: Scalar) -> str:
    if isinstance(value, bool):
        return "booleans"
    return "strings" if isinstance(value, str) else "numbers"


@cache
def _parser() -> Lark:
    return Lark(_GRAMMAR, parser="lalr", lexer="basic", transformer=_Build())


def _syntax_error(error: UnexpectedInput, text: str) -> InvalidSpec:
    if isinstance(error, UnexpectedCharacters):
        char = text[error.pos_in_stream]
        where = f"line {error.line}, column {error.column}" if error.line > 1 else f"column {error.column}"
        if char in "'\"`":
            return _fail(f"syntax error at {where}: {char} opens a quote that is never closed")
        expected = _expected(error.allowed or ())
        return _fail(f"syntax error at {where}: unexpected character {char!r}{expected}")
    if isinstance(error, UnexpectedToken):
        token = error.token
        expected = _expected(error.expected)
        if token.type == "$END":
            return _fail(f"syntax error at the end of the query{expected}")
        return _fail(f"syntax error at {_where(token)}: unexpected {str(token)!r}{expected}")
    return _fail(f"syntax error: {error}")  # pragma: no cover - the LALR parser raises the above


def _expected(names: Any) -> str:
    wanted = list(dict.fromkeys(_EXPECTED.get(name, name) for name in sorted(names)))
    if not wanted:
        return ""
    if len(wanted) == 1:
        return f"; expected {wanted[0]}"
    return f"; expected {', '.join(wanted[:-1])} or {wanted[-1]}"


def parse(text: str) -> Expr:
    """Parse a filterQuery; a blank one is :class:`MatchAll`. Raises
    :class:`~ketch.core.errors.InvalidSpec` (``field="filterQuery"``) for text over
    :data:`MAX_LENGTH` characters, parentheses nested deeper than :data:`MAX_DEPTH`,
    and syntax errors, naming where and what was expected."""
    if len(text) > MAX_LENGTH:
        raise _fail(f"the query is {len(text)} characters long; at most {MAX_LENGTH} are accepted")
    bad = _CONTROL.search(text)
    if bad:
        raise _fail(f"control character {bad[0]!r} at character {bad.start() + 1} is not allowed")
    if not text.strip() or all(
        not line.strip() or line.strip().startswith("--") for line in text.splitlines()
    ):
        return MatchAll()
    parser = _parser()
    try:
        depth = 0
        for token in parser.lex(text):
            if token.type == "_LPAR":
                depth += 1
                if depth > MAX_DEPTH:
                    raise _fail(
                        f"parentheses nest deeper than {MAX_DEPTH} levels at {_where(token)}"
                    )
            elif token.type == "_RPAR":
                depth -= 1
        tree: Expr = parser.parse(text)  # type: ignore[assignment]
    except UnexpectedInput as error:
        raise _syntax_error(error, text) from None
    return tree


# -- compiling -------------------------------------------------------------------------

KINDS = (
    "registered_model",
    "model_version",
    "artifact",
    "serving_environment",
    "inference_service",
    "serve_model",
    "experiment",
    "experiment_run",
)


@dataclass(frozen=True)
class _Field:
    """An entity's own field: ``type`` is "int", "text" or "any" (a number or a
    string, as the value is); it is read from an EntityRow ``column``, else from
    ``body[key]`` (both: the column, or the body when the column is empty)."""

    type: str
    column: str = ""
    key: str = ""


def _text(key: str) -> _Field:
    return _Field("text", key=key)


def _int(key: str) -> _Field:
    return _Field("int", key=key)


_COMMON = {
    "id": _Field("int", "id"),
    "name": _Field("text", "name"),
    "externalId": _Field("text", "external_id"),
    "createTimeSinceEpoch": _Field("int", "created"),
    "lastUpdateTimeSinceEpoch": _Field("int", "updated"),
    "description": _text("description"),
}
_STATE = _Field("text", "state")
_PARENT = _Field("int", "parent_id")
_TEXT_ARTIFACT = (
    "modelFormatName modelFormatVersion storageKey storagePath serviceAccountName "
    "modelSourceKind modelSourceClass modelSourceGroup modelSourceId modelSourceName "
    "parameterType digest sourceType source schema profile"
).split()

#: the fields of each kind that a filterQuery reads from the entity itself (as
#: Model Registry lists them, with description and an artifact's artifactType)
FIELDS: Mapping[str, Mapping[str, _Field]] = {
    "registered_model": {**_COMMON, "state": _STATE, "owner": _text("owner")},
    "model_version": {
        **_COMMON,
        "registeredModelId": _PARENT,
        "state": _STATE,
        "author": _text("author"),
    },
    "artifact": {
        **_COMMON,
        "uri": _Field("text", "uri"),
        "state": _STATE,
        "artifactType": _Field("text", "subtype"),
        **{key: _text(key) for key in _TEXT_ARTIFACT},
        "value": _Field("any", key="value"),
        "timestamp": _int("timestamp"),
        "step": _int("step"),
        "experimentId": _int("experimentId"),
        "experimentRunId": _int("experimentRunId"),
    },
    "serving_environment": dict(_COMMON),
    "inference_service": {
        **_COMMON,
        "registeredModelId": _int("registeredModelId"),
        "modelVersionId": _int("modelVersionId"),
        "servingEnvironmentId": _PARENT,
        "runtime": _text("runtime"),
        "desiredState": _text("desiredState"),
    },
    "serve_model": {
        **_COMMON,
        "lastKnownState": _Field("text", "state", "lastKnownState"),
        "modelVersionId": _int("modelVersionId"),
        "inferenceServiceId": _PARENT,
        "registeredModelId": _int("registeredModelId"),
        "servingEnvironmentId": _int("servingEnvironmentId"),
    },
    "experiment": {**_COMMON, "state": _STATE, "owner": _text("owner")},
    "experiment_run": {
        **_COMMON,
        "experimentId": _PARENT,
        "startTimeSinceEpoch": _int("startTimeSinceEpoch"),
        "endTimeSinceEpoch": _int("endTimeSinceEpoch"),
        "status": _text("status"),
        "state": _STATE,
        "owner": _text("owner"),
    },
}


class _JsonText(FunctionElement[str]):
    """``body[key]`` as text (a string's value, a number's digits; NULL when absent)."""

    type = String()
    inherit_cache = True
    name = "ketch_json_text"

    def __init__(self, key: str) -> None:
        super().__init__(EntityRow.body, literal(key), literal(f'$."{key}"'))


class _JsonIs(FunctionElement[bool]):
    """Whether ``body[key]`` is a JSON number (``kind`` "number") or string ("string")."""

    type = Boolean()
    inherit_cache = True
    name = "ketch_json_is"

    def __init__(self, key: str, kind: str) -> None:
        super().__init__(EntityRow.body, literal(key), literal(f'$."{key}"'), literal(kind))


class _Like(FunctionElement[bool]):
    """Case-sensitive LIKE with ``\\`` as the escape: GLOB on SQLite, whose LIKE
    ignores case."""

    type = Boolean()
    inherit_cache = True
    name = "ketch_like"

    def __init__(self, value: ColumnElement[Any], pattern: str) -> None:
        super().__init__(value, literal(pattern), literal(_glob(pattern)))


class _Binary(FunctionElement[str]):
    """Text that orders byte by byte, as SQLite's default collation does."""

    type = String()
    inherit_cache = True
    name = "ketch_binary"

    def __init__(self, value: ColumnElement[Any]) -> None:
        super().__init__(value)


def _args(element: FunctionElement[Any], compiler: SQLCompiler, **kw: Any) -> list[str]:
    return [compiler.process(clause, **kw) for clause in element.clauses]


@compiles(_JsonText)
def _json_text_sqlite(element: _JsonText, compiler: SQLCompiler, **kw: Any) -> str:
    body, _key, path = _args(element, compiler, **kw)
    return f"CAST(json_extract({body}, {path}) AS TEXT)"


@compiles(_JsonText, "postgresql")
def _json_text_postgresql(element: _JsonText, compiler: SQLCompiler, **kw: Any) -> str:
    body, key, _path = _args(element, compiler, **kw)
    return f"(CAST({body} AS JSON) ->> {key})"


@compiles(_JsonIs)
def _json_is_sqlite(element: _JsonIs, compiler: SQLCompiler, **kw: Any) -> str:
    body, _key, path, _kind = _args(element, compiler, **kw)
    kind = list(element.clauses)[3].value  # type: ignore[attr-defined]
    names = "('integer', 'real')" if kind == "number" else "('text')"
    return f"(json_type({body}, {path}) IN {names})"


@compiles(_JsonIs, "postgresql")
def _json_is_postgresql(element: _JsonIs, compiler: SQLCompiler, **kw: Any) -> str:
    body, key, _path, kind = _args(element, compiler, **kw)
    return f"(json_typeof(CAST({body} AS JSON) -> {key}) = {kind})"


@compiles(_Like)
def _like_default(element: _Like, compiler: SQLCompiler, **kw: Any) -> str:
    value, pattern, _glob = list(element.clauses)
    return compiler.process(value.like(pattern, escape="\\"), **kw)


@compiles(_Like, "sqlite")
def _like_sqlite(element: _Like, compiler: SQLCompiler, **kw: Any) -> str:
    value, _pattern, glob = _args(element, compiler, **kw)
    return f"({value} GLOB {glob})"


@compiles(_Binary)
def _binary_sqlite(element: _Binary, compiler: SQLCompiler, **kw: Any) -> str:
    return _args(element, compiler, **kw)[0]


@compiles(_Binary, "postgresql")
def _binary_postgresql(element: _Binary, compiler: SQLCompiler, **kw: Any) -> str:
    return f'({_args(element, compiler, **kw)[0]} COLLATE "C")'


def _glob(pattern: str) -> str:
    """The GLOB pattern that matches what a LIKE pattern (escape ``\\``) matches."""
    out: list[str] = []
    chars = iter(pattern)
    for char in chars:
        if char == "\\":
            char = next(chars, "")
            out.append(f"[{char}]" if char in "*?[" else char)
        elif char == "%":
            out.append("*")
        elif char == "_":
            out.append("?")
        else:
            out.append(f"[{char}]" if char in "*?[" else char)
    return "".join(out)


def _bind(value: Scalar) -> ColumnElement[Any]:
    if isinstance(value, bool):
        return literal(value, Boolean())
    if isinstance(value, int):
        return literal(value, BigInteger())
    if isinstance(value, float):
        return literal(value, Float())
    return literal(value, String())


def _compare(lhs: ColumnElement[Any], op: str, values: tuple[Scalar, ...]) -> ColumnElement[bool]:
    if op == "IN":
        if not values:
            return false()
        return lhs.in_([_bind(v) for v in values])
    (value,) = values
    if op == "LIKE":
        return _Like(lhs, str(value))
    if op == "ILIKE":
        return func.lower(lhs).like(func.lower(_bind(value)), escape="\\")
    if isinstance(value, str) and op in ("<", "<=", ">", ">="):
        lhs = _Binary(lhs)
    operators: dict[str, Callable[[Any, Any], ColumnElement[bool]]] = {
        "=": lambda a, b: a == b,
        "!=": lambda a, b: a != b,
        "<": lambda a, b: a < b,
        "<=": lambda a, b: a <= b,
        ">": lambda a, b: a > b,
        ">=": lambda a, b: a >= b,
    }
    return operators[op](lhs, _bind(value))


def _show(value: Scalar) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def _numbers(name: str, values: tuple[Scalar, ...], *, strings: bool) -> tuple[Scalar, ...]:
    """The values as numbers; integer strings too where ``strings`` (the API writes ids
    and times as strings)."""
    out: list[Scalar] = []
    for value in values:
        if isinstance(value, str) and strings and re.fullmatch(r"[-+]?\d{1,18}", value.strip()):
            out.append(int(value))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            out.append(value)
        else:
            raise _fail(f"{name} is a number: {_show(value)} is not one")
    return tuple(out)


def _texts(name: str, values: tuple[Scalar, ...]) -> tuple[Scalar, ...]:
    for value in values:
        if not isinstance(value, str):
            raise _fail(f"{name} is text: quote the value ('{_show(value)}')")
    return values


def _number_of(key: str) -> ColumnElement[Any]:
    """``body[key]`` as a number: a JSON number, or a string of digits; else NULL."""
    text = _JsonText(key)
    return case(
        (_JsonIs(key, "number"), cast(text, Numeric())),
        (and_(_JsonIs(key, "string"), text != "", func.ltrim(text, "0123456789") == ""), cast(text, Numeric())),
        else_=null(),
    )


def _field(name: str, spec: _Field, op: str, values: tuple[Scalar, ...]) -> ColumnElement[bool]:
    numeric = spec.type == "int" or (
        spec.type == "any" and bool(values) and not isinstance(values[0], str)
    )
    if numeric:
        if op in ("LIKE", "ILIKE"):
            raise _fail(f"{op} matches text, and {name} is a number")
        numbers = _numbers(name, values, strings=spec.type == "int")
        if spec.column:
            return _compare(getattr(EntityRow, spec.column), op, numbers)
        return _compare(_number_of(spec.key), op, numbers)
    texts = _texts(name, values)
    lhs: ColumnElement[Any]
    if spec.column and spec.key:
        lhs = func.coalesce(func.nullif(getattr(EntityRow, spec.column), ""), _JsonText(spec.key))
    elif spec.column:
        lhs = getattr(EntityRow, spec.column)
    else:
        lhs = _JsonText(spec.key)
    return _compare(lhs, op, texts)


def _custom(prop: Property, op: str, values: tuple[Scalar, ...]) -> ColumnElement[bool]:
    """EXISTS a custom property of that name whose value compares so."""
    if op == "IN" and not values:
        return false()
    kind = prop.type
    first = values[0]
    shown = f"{prop.name}.{kind}" if kind else prop.name
    condition: ColumnElement[bool]
    if kind is None and isinstance(first, int) and not isinstance(first, bool):
        numbers = _numbers(shown, values, strings=False)
        condition = or_(
            _compare(PropertyRow.int_value, op, numbers),
            _compare(PropertyRow.double_value, op, numbers),
        )
    else:
        if kind is None:
            kind = {bool: "bool_value", str: "string_value", float: "double_value"}[type(first)]
        if kind == "string_value":
            checked = _texts(shown, values)
        elif kind == "bool_value":
            if not all(isinstance(v, bool) for v in values):
                raise _fail(f"{shown} is a boolean: compare it with true or false")
            if op not in ("=", "!=", "IN"):
                raise _fail(f"{shown} is a boolean: compare it with = or !=")
            checked = values
        else:
            if op in ("LIKE", "ILIKE"):
                raise _fail(f"{op} matches text, and {shown} is a number")
            checked = _numbers(shown, values, strings=False)
        condition = _compare(getattr(PropertyRow, kind), op, checked)
    return (
        select(PropertyRow.entity_id)
        .where(PropertyRow.entity_id == EntityRow.id, PropertyRow.name == prop.name, condition)
        .exists()
    )


def where(expr: Expr, kind: str) -> ColumnElement[bool]:
    """The condition on :class:`~ketch.registry.tables.EntityRow` (custom properties:
    correlated EXISTS on PropertyRow) that selects the entities of ``kind`` (one of
    :data:`KINDS`) a parsed filterQuery matches. Raises InvalidSpec when a value does
    not suit what it is compared with (``name = 5``, ``id = 'abc'``, ``flag > 1``
    where flag is a boolean, ...)."""
    try:
        fields = FIELDS[kind]
    except KeyError:
        raise ValueError(f"unknown registry kind {kind!r}; one of {', '.join(KINDS)}") from None
    return _compile(expr, fields)


def _compile(expr: Expr, fields: Mapping[str, _Field]) -> ColumnElement[bool]:
    if isinstance(expr, MatchAll):
        return true()
    if isinstance(expr, And):
        return and_(*(_compile(term, fields) for term in expr.terms))
    if isinstance(expr, Or):
        return or_(*(_compile(term, fields) for term in expr.terms))
    values = expr.value if isinstance(expr.value, tuple) else (expr.value,)
    spec = fields.get(expr.property.name)
    if spec is not None:
        return _field(expr.property.name, spec, expr.op, values)
    return _custom(expr.property, expr.op, values)
