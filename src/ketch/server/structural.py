"""A pydantic JSON schema (draft 2020-12, with ``$defs``) as a Kubernetes structural
schema (OpenAPI 3.0, every reference inlined, as a CRD's schema is): what the OpenAPI
documents publish as a kind's spec (:mod:`ketch.server.openapi`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

PRESERVE = "x-kubernetes-preserve-unknown-fields"
INT_OR_STRING = "x-kubernetes-int-or-string"

# string formats a CRD's schema may use
_FORMATS = frozenset(
    {
        "bsonobjectid",
        "uri",
        "email",
        "hostname",
        "ipv4",
        "ipv6",
        "cidr",
        "mac",
        "uuid",
        "uuid3",
        "uuid4",
        "uuid5",
        "isbn",
        "isbn10",
        "isbn13",
        "creditcard",
        "ssn",
        "hexcolor",
        "rgbcolor",
        "byte",
        "password",
        "date",
        "duration",
        "datetime",
        "date-time",
        "int32",
        "int64",
        "float",
        "double",
    }
)
_SCALARS = frozenset({"string", "integer", "number", "boolean"})
# what a scalar schema keeps besides its type
_SCALAR_KEYS = (
    "enum",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "pattern",
    "multipleOf",
)


def structural(schema: Mapping[str, Any]) -> dict[str, Any]:
    """A pydantic JSON schema (draft 2020-12, ``$defs``) as a Kubernetes structural
    schema (OpenAPI 3.0, every reference inlined, as a CRD's is).

    - ``anyOf`` with ``null`` becomes the other member, ``nullable``; a union of
      strings and numbers is ``x-kubernetes-int-or-string`` (quantities, ports);
      any other union, ``Any`` and free-form mappings keep whatever they are given
      (``x-kubernetes-preserve-unknown-fields``);
    - an object whose model keeps unknown fields (every
      :class:`~ketch.core.spec.SpecModel`) lists its properties and preserves the
      rest; ``dict[str, X]`` is ``additionalProperties``;
    - ``Literal`` values are an ``enum``; titles are dropped; descriptions, defaults
      and bounds are kept (``exclusiveMinimum: n`` as ``minimum: n`` and
      ``exclusiveMinimum: true``);
    - a model that contains itself is free-form where it recurs.
    """
    defs = schema.get("$defs") or {}
    return _convert(schema, defs if isinstance(defs, Mapping) else {}, ())


def _free(node: Mapping[str, Any], nullable: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {PRESERVE: True}
    if isinstance(node.get("description"), str):
        out["description"] = node["description"]
    if nullable:
        out["nullable"] = True
    return out


def _resolve(node: Mapping[str, Any], defs: Mapping[str, Any], seen: tuple[str, ...]) -> Any:
    """``node`` with its ``$ref`` (or single ``allOf``) merged in, and the names seen."""
    while True:
        if "$ref" in node:
            ref = str(node["$ref"])
            name = ref.rsplit("/", 1)[-1]
            target = defs.get(name) if ref.startswith("#/$defs/") else None
            if name in seen or not isinstance(target, Mapping):
                return None, seen
            rest = {k: v for k, v in node.items() if k != "$ref"}
            node, seen = {**target, **rest}, (*seen, name)
            continue
        all_of = node.get("allOf")
        if isinstance(all_of, list) and len(all_of) == 1 and isinstance(all_of[0], Mapping):
            rest = {k: v for k, v in node.items() if k != "allOf"}
            node = {**all_of[0], **rest}
            continue
        return node, seen


def _convert(node: Any, defs: Mapping[str, Any], seen: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(node, Mapping):
        return {PRESERVE: True}
    resolved, seen = _resolve(node, defs, seen)
    if resolved is None:
        return _free(node)
    node = resolved
    union = node.get("anyOf", node.get("oneOf"))
    types = node.get("type")
    if isinstance(types, list):
        union = [{"type": t} for t in types]
    if isinstance(union, list):
        return _union(node, union, defs, seen)
    if "const" in node and "enum" not in node:
        node = {**node, "enum": [node["const"]]}
    kind = node.get("type")
    if kind is None and isinstance(node.get("enum"), list):
        kind = _enum_type(node["enum"])
    if kind == "object":
        out = _object(node, defs, seen)
    elif kind == "array":
        out = {"type": "array", "items": _convert(node.get("items", {}), defs, seen)}
        if "prefixItems" in node:
            out["items"] = {PRESERVE: True}
        for key in ("minItems", "maxItems"):
            if isinstance(node.get(key), int):
                out[key] = node[key]
    elif kind in _SCALARS:
        out = _scalar(node, kind)
    elif kind == "null":
        return _free(node, nullable=True)
    else:
        return _free(node)
    if isinstance(node.get("description"), str):
        out["description"] = node["description"]
    if node.get("default") is not None:
        out["default"] = node["default"]
    return out


def _enum_type(values: list[Any]) -> str | None:
    found = {type(v) for v in values if v is not None}
    if found == {str}:
        return "string"
    if found == {bool}:
        return "boolean"
    if found <= {int} and found:
        return "integer"
    if found <= {int, float} and found:
        return "number"
    return None


def _scalar(node: Mapping[str, Any], kind: str) -> dict[str, Any]:
    out: dict[str, Any] = {"type": kind}
    for key in _SCALAR_KEYS:
        if key in node:
            out[key] = node[key]
    if "enum" in out:
        out["enum"] = [v for v in out["enum"] if v is not None]
    for key, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        value = node.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            out[bound] = value
            out[key] = True
    fmt = node.get("format")
    if kind == "string" and isinstance(fmt, str) and fmt in _FORMATS:
        out["format"] = fmt
    return out


def _object(
    node: Mapping[str, Any], defs: Mapping[str, Any], seen: tuple[str, ...]
) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object"}
    properties = node.get("properties")
    extra = node.get("additionalProperties")
    if isinstance(properties, Mapping) and properties:
        out["properties"] = {str(k): _convert(v, defs, seen) for k, v in properties.items()}
        required = [r for r in node.get("required", ()) if r in properties]
        if required:
            out["required"] = required
        if extra is not False:
            out[PRESERVE] = True
    elif isinstance(extra, Mapping) and extra:
        out["additionalProperties"] = _convert(extra, defs, seen)
    elif extra is not False:
        out[PRESERVE] = True
    return out


def _union(
    node: Mapping[str, Any], members: list[Any], defs: Mapping[str, Any], seen: tuple[str, ...]
) -> dict[str, Any]:
    nullable = any(isinstance(m, Mapping) and m.get("type") == "null" for m in members)
    rest = [m for m in members if not (isinstance(m, Mapping) and m.get("type") == "null")]
    outer = {k: v for k, v in node.items() if k not in ("anyOf", "oneOf", "type")}
    if len(rest) == 1 and isinstance(rest[0], Mapping):
        out = _convert({**rest[0], **outer}, defs, seen)
    else:
        kinds = {m.get("type") for m in rest if isinstance(m, Mapping)}
        if (
            len(kinds) == len(rest)
            and kinds <= {"string", "integer", "number"}
            and "string" in kinds
            and kinds & {"integer", "number"}
        ):
            out = {INT_OR_STRING: True, "anyOf": [{"type": "integer"}, {"type": "string"}]}
        else:
            out = {PRESERVE: True}
        if isinstance(node.get("description"), str):
            out["description"] = node["description"]
        if node.get("default") is not None:
            out["default"] = node["default"]
    if nullable:
        out["nullable"] = True
        if out.get("default") is None:
            out.pop("default", None)
    return out
