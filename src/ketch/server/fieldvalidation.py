"""Unknown fields in a written object, found and dropped as Kubernetes does for a custom
resource, by the ``fieldValidation`` the request asks for.

A field is unknown when the kind's published schema (the one ``/openapi/v3``
serves: ``apiVersion``, ``kind``, ``ObjectMeta``, the structural schema of the spec,
a free-form status) has no place for it: an object that lists its properties and
does not keep unknown ones (``x-kubernetes-preserve-unknown-fields``) gets a key it
does not list. Kubernetes prunes such fields from every custom resource it stores;
``fieldValidation`` says what else happens:

- ``Strict``: the write is refused, 400, ``strict decoding error: unknown field
  "spec.bogusField"`` (every unknown field named), as kubectl 1.27 and later ask;
- ``Warn`` (the default, when the request does not say): the fields are dropped and
  each is named in a ``Warning: 299 - "unknown field \\"spec.bogusField\\""`` header,
  which kubectl prints;
- ``Ignore``: they are dropped silently.

Paths are written as Kubernetes writes them: ``spec.a.b``, list items by index
(``spec.containers[0].bogus``).
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from ketch.core.errors import InvalidSpec
from ketch.core.kinds import Kind
from ketch.server.openapi_schemas import V3_REF, kind_schemas, meta_schemas, schema_name
from ketch.server.structural import PRESERVE

Mode = Literal["Strict", "Warn", "Ignore"]
MODES: tuple[Mode, ...] = ("Strict", "Warn", "Ignore")
DEFAULT: Mode = "Warn"
FIELD = "fieldValidation"


class StrictDecodingError(InvalidSpec):
    """A ``fieldValidation=Strict`` write named fields the kind does not have (400)."""


def parse_mode(value: str | None) -> Mode:
    """``?fieldValidation=``: ``Strict``, ``Warn`` or ``Ignore`` (``Warn`` when not given)."""
    if value is None or value == "":
        return DEFAULT
    for mode in MODES:
        if value == mode:
            return mode
    raise InvalidSpec(
        f'Unsupported value: "{value}": supported values: "Ignore", "Strict", "Warn"',
        field=FIELD,
    )


class PublishedSchemas:
    """Each kind's published object schema and the named schemas it refers to, made
    once (one per app: :class:`~ketch.server.state.ApiState` holds it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._schemas: dict[tuple[str, str, str], tuple[dict[str, Any], dict[str, Any]]] = {}

    def warm(self, kinds: Iterable[Kind]) -> None:
        """Make every kind's schema now (the server does it as it starts, so its
        first write does not wait for it)."""
        for kind in kinds:
            self.of(kind)

    def of(self, kind: Kind) -> tuple[dict[str, Any], dict[str, Any]]:
        key = (kind.group, kind.kind, kind.version)
        with self._lock:
            found = self._schemas.get(key)
            if found is None:
                named = {**meta_schemas(), **kind_schemas(kind, kind.version)}
                found = (named[schema_name(kind, kind.version)], named)
                self._schemas[key] = found
            return found


def _resolve(node: Any, named: Mapping[str, Any]) -> Mapping[str, Any]:
    """``node`` with its ``$ref`` (or single ``allOf`` member) followed."""
    for _ in range(16):
        if not isinstance(node, Mapping):
            return {PRESERVE: True}
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(V3_REF):
            node = named.get(ref[len(V3_REF) :], {PRESERVE: True})
            continue
        all_of = node.get("allOf")
        if isinstance(all_of, list) and len(all_of) == 1:
            rest = {k: v for k, v in node.items() if k != "allOf"}
            target = _resolve(all_of[0], named)
            node = {**target, **rest}
            continue
        return node
    return {PRESERVE: True}


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _prune(value: Any, schema: Any, named: Mapping[str, Any], path: str, found: list[str]) -> Any:
    """``value`` without the fields ``schema`` has no place for (named in ``found``)."""
    node = _resolve(schema, named)
    if node.get(PRESERVE) is True and not node.get("properties"):
        return value
    if isinstance(value, dict):
        properties = node.get("properties")
        extra = node.get("additionalProperties")
        if isinstance(properties, Mapping) and properties:
            kept: dict[str, Any] = {}
            for key, item in value.items():
                if key in properties:
                    kept[key] = _prune(item, properties[key], named, _join(path, key), found)
                elif node.get(PRESERVE) is True or extra is True:
                    kept[key] = item
                elif isinstance(extra, Mapping):
                    kept[key] = _prune(item, extra, named, _join(path, key), found)
                else:
                    found.append(_join(path, key))
            return kept
        if isinstance(extra, Mapping):
            return {k: _prune(v, extra, named, _join(path, k), found) for k, v in value.items()}
        return value
    if isinstance(value, list) and isinstance(node.get("items"), Mapping):
        items = node["items"]
        return [_prune(v, items, named, f"{path}[{i}]", found) for i, v in enumerate(value)]
    return value


def unknown_fields(
    kind: Kind, manifest: Mapping[str, Any], schemas: PublishedSchemas
) -> tuple[dict[str, Any], list[str]]:
    """``manifest`` without the fields ``kind``'s published schema has no place for,
    and their paths (in the order they appear)."""
    schema, named = schemas.of(kind)
    found: list[str] = []
    pruned = _prune(copy.deepcopy(dict(manifest)), schema, named, "", found)
    return pruned, found


def check(
    kind: Kind, manifest: Mapping[str, Any], mode: Mode, schemas: PublishedSchemas
) -> tuple[dict[str, Any], list[str]]:
    """``manifest`` with its unknown fields dropped and the warnings to answer with, as
    ``mode`` says (``StrictDecodingError`` naming every unknown field when ``Strict``)."""
    pruned, found = unknown_fields(kind, manifest, schemas)
    if not found:
        return pruned, []
    if mode == "Strict":
        named = ", ".join(f'unknown field "{path}"' for path in found)
        raise StrictDecodingError(
            f'{kind.kind} in version "{kind.version}" cannot be handled as a {kind.kind}: '
            f"strict decoding error: {named}"
        )
    if mode == "Ignore":
        return pruned, []
    return pruned, [f'unknown field "{path}"' for path in found]
