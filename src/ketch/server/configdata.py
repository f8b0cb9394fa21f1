"""The core group's ``Secret`` and ``ConfigMap`` (``/api/v1/namespaces/{ns}/secrets``,
``.../configmaps``), stored per namespace in the ``resources`` table and served by the
generic resource routes.

Kubernetes gives these kinds top-level fields instead of ``spec``: a Secret has
``data`` (values base64-encoded), ``stringData`` (plain values, write-only: folded
into ``data`` on every write), ``type`` (``Opaque`` unless said) and ``immutable``; a
ConfigMap has ``data`` (text), ``binaryData`` (base64) and ``immutable``. The store
keeps those fields as the object's ``spec`` (``{"type": ..., "data": {...}}``: what a
reader of the ``resources`` table finds), and :class:`DataSource` turns the stored
object into the served one and back.

A Secret's values are never printed: its Table shows its type and the number of its
keys (:func:`secret_view`), errors name a key but never its value, and nothing here
logs an object.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from ketch.core.errors import InvalidSpec, NotFound
from ketch.core.kinds import Column, Kind
from ketch.core.resource import Resource
from ketch.core.services import SourceFactory
from ketch.core.sources import (
    ApplyResult,
    Check,
    Manifest,
    MethodNotAllowed,
    Page,
    StoreSource,
    check_patch,
    merge_patch,
)
from ketch.core.store.resources import ResourceStore

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
#: Kubernetes' limit on the size of a Secret's or a ConfigMap's values together.
MAX_BYTES = 1024 * 1024
_KEY = re.compile(r"[-._a-zA-Z0-9]+")
# The keys a Secret of each of Kubernetes' own types must hold (one of them, for
# basic-auth), as the API server checks them.
_REQUIRED_KEYS: dict[str, tuple[tuple[str, ...], bool]] = {
    "kubernetes.io/tls": (("tls.crt", "tls.key"), True),
    "kubernetes.io/dockerconfigjson": ((".dockerconfigjson",), True),
    "kubernetes.io/dockercfg": ((".dockercfg",), True),
    "kubernetes.io/ssh-auth": (("ssh-privatekey",), True),
    "kubernetes.io/basic-auth": (("username", "password"), False),
}


def _string_map(description: str, **values: Any) -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": {"type": "string", **values},
        "description": description,
    }


def _immutable(what: str) -> dict[str, Any]:
    return {
        "type": "boolean",
        "description": f"If true, the {what} cannot be changed once stored (only deleted).",
    }


def secret_schema() -> dict[str, Any]:
    """A Secret's top-level fields, as Kubernetes publishes them."""
    return {
        "data": _string_map(
            "The secret values by key, each base64-encoded; keys are letters, digits, "
            "'-', '_' and '.'.",
            format="byte",
        ),
        "stringData": _string_map(
            "Values given as plain text, merged into data when written (write-only: "
            "never read back)."
        ),
        "type": {
            "type": "string",
            "description": "What the values are for (Opaque, kubernetes.io/tls, ...); "
            "cannot be changed.",
        },
        "immutable": _immutable("Secret's data"),
    }


def configmap_schema() -> dict[str, Any]:
    """A ConfigMap's top-level fields, as Kubernetes publishes them."""
    return {
        "data": _string_map("Configuration values by key, as UTF-8 text."),
        "binaryData": _string_map(
            "Binary values by key, each base64-encoded; a key may not also be in data.",
            format="byte",
        ),
        "immutable": _immutable("ConfigMap's data"),
    }


def _shown_metadata(obj: Mapping[str, Any]) -> dict[str, Any]:
    """An object's metadata without kubectl's copy of the last applied manifest
    (which, for a Secret, holds its values)."""
    metadata = dict(obj.get("metadata") or {})
    annotations = metadata.get("annotations")
    if isinstance(annotations, dict) and LAST_APPLIED in annotations:
        metadata["annotations"] = {k: v for k, v in annotations.items() if k != LAST_APPLIED}
    return metadata


def _count(*maps: Any) -> int:
    return sum(len(m) for m in maps if isinstance(m, dict))


def secret_view(obj: dict[str, Any]) -> dict[str, Any]:
    """What a Secret's Table row reads: its type and number of keys, no value."""
    return {
        "metadata": _shown_metadata(obj),
        "type": obj.get("type"),
        "dataCount": _count(obj.get("data")),
    }


def configmap_view(obj: dict[str, Any]) -> dict[str, Any]:
    """What a ConfigMap's Table row reads: its number of keys."""
    return {
        "metadata": _shown_metadata(obj),
        "dataCount": _count(obj.get("data"), obj.get("binaryData")),
    }


SECRET = Kind(
    kind="Secret",
    group="",
    versions=("v1",),
    plural="secrets",
    columns=(
        Column("Type", ".type", description="What the values are for (Opaque, ...)"),
        Column(
            "Data",
            ".dataCount",
            "integer",
            description="The number of keys in data (the values are never shown)",
        ),
    ),
    subresources=(),
    object_schema=secret_schema,
    table_view=secret_view,
)

CONFIG_MAP = Kind(
    kind="ConfigMap",
    group="",
    versions=("v1",),
    plural="configmaps",
    short_names=("cm",),
    columns=(
        Column(
            "Data", ".dataCount", "integer", description="The number of keys in data and binaryData"
        ),
    ),
    subresources=(),
    object_schema=configmap_schema,
    table_view=configmap_view,
)


# -- validation ------------------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    """The top-level fields of a kind kept as its stored spec, and which of them hold
    base64 values (the others hold text).

    ``to_spec`` makes the stored spec of a checked object and ``on_change`` refuses
    what an update may not change (``(before as served, stored spec after)``); by
    default they are a Secret's or a ConfigMap's (:func:`stored_spec`,
    :func:`check_change`). Another kind of Kubernetes' with top-level fields (RBAC's
    ``RoleBinding``, :mod:`ketch.server.rbac`) brings its own."""

    kind: str
    fields: tuple[str, ...]
    binary: tuple[str, ...] = ()
    to_spec: Callable[[Resource], dict[str, Any]] | None = None
    on_change: Callable[[Manifest, dict[str, Any]], None] | None = None

    def extra(self, resource: Resource) -> dict[str, Any]:
        return dict(resource.model_extra or {})

    def stored(self, resource: Resource) -> dict[str, Any]:
        """The spec a checked object is stored with."""
        if self.to_spec is not None:
            return self.to_spec(resource)
        return stored_spec(self, resource)

    def check_change(self, before: Manifest, after: dict[str, Any]) -> None:
        """Refuse an update from ``before`` (as served) to the stored spec ``after``."""
        if self.on_change is not None:
            self.on_change(before, after)
        else:
            check_change(self.kind, before, after)


SECRET_LAYOUT = Layout("Secret", ("data", "stringData", "type", "immutable"), ("data",))
CONFIG_MAP_LAYOUT = Layout("ConfigMap", ("data", "binaryData", "immutable"), ("binaryData",))


def _check_key(key: Any, field: str) -> str:
    if not isinstance(key, str) or not key:
        raise InvalidSpec("keys must be non-empty strings", field=field)
    if len(key) > 253 or not _KEY.fullmatch(key) or key in (".", ".."):
        raise InvalidSpec(
            f"{key!r} is not a valid key: use at most 253 letters, digits, '-', '_' and '.' "
            "(and not '.' or '..')",
            field=f"{field}[{key}]" if len(key) <= 253 else field,
        )
    return key


def _mapping(value: Any, field: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidSpec("must be an object mapping keys to values", field=field)
    return value


def _decoded_size(value: Any, field: str) -> int:
    """The size of a base64 value; refused, without showing it, when it is not base64."""
    if not isinstance(value, str):
        raise InvalidSpec("must be a base64-encoded string", field=field)
    try:
        return len(base64.b64decode(value.encode("ascii"), validate=True))
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise InvalidSpec("is not valid base64 (the value is not shown)", field=field) from None


def check_data(layout: Layout, resource: Resource) -> None:
    """Refuse a Secret or a ConfigMap whose fields Kubernetes would refuse; messages
    name the field and the key, never a value."""
    if resource.spec:
        raise InvalidSpec(
            f"a {layout.kind} has no spec: its values go in "
            + " or ".join(f for f in layout.fields if f in ("data", "stringData", "binaryData")),
            field="spec",
        )
    if resource.status:
        raise InvalidSpec(f"a {layout.kind} has no status", field="status")
    extra = layout.extra(resource)
    for name in extra:
        if name not in layout.fields:
            raise InvalidSpec(
                f"unknown field {name!r}; a {layout.kind} has {', '.join(layout.fields)}",
                field=name,
            )
    total = 0
    seen: dict[str, str] = {}
    for name in layout.fields:
        if name in ("type", "immutable"):
            continue
        values = _mapping(extra.get(name), name)
        for key, value in values.items():
            _check_key(key, name)
            field = f"{name}[{key}]"
            if name in layout.binary:
                total += _decoded_size(value, field)
            else:
                if not isinstance(value, str):
                    raise InvalidSpec("must be a string", field=field)
                total += len(value.encode())
            if layout.kind == "ConfigMap" and key in seen:
                raise InvalidSpec(f"key {key!r} is in both {seen[key]} and {name}", field=field)
            seen.setdefault(key, name)
    if total > MAX_BYTES:
        raise InvalidSpec(
            f"the values add up to {total} bytes; a {layout.kind} holds at most {MAX_BYTES}",
            field="data",
        )
    immutable = extra.get("immutable")
    if immutable is not None and not isinstance(immutable, bool):
        raise InvalidSpec("must be true or false", field="immutable")
    if layout.kind == "Secret":
        _check_secret_type(extra, seen)


def _check_secret_type(extra: dict[str, Any], keys: Mapping[str, str]) -> None:
    secret_type = extra.get("type")
    if secret_type is None:
        return
    if not isinstance(secret_type, str):
        raise InvalidSpec("must be a string", field="type")
    if len(secret_type) > 253:
        raise InvalidSpec("must be at most 253 characters", field="type")
    required = _REQUIRED_KEYS.get(secret_type)
    if required is None:
        return
    names, every = required
    present = [name for name in names if name in keys]
    if every and len(present) < len(names):
        missing = [name for name in names if name not in keys]
        raise InvalidSpec(
            f"a {secret_type} Secret needs the key{'s' if len(missing) > 1 else ''} "
            f"{', '.join(missing)}",
            field=f"data[{missing[0]}]",
        )
    if not every and not present:
        raise InvalidSpec(
            f"a {secret_type} Secret needs at least one of the keys {', '.join(names)}",
            field="data",
        )


def validators() -> dict[str, Callable[[Resource], None]]:
    """The validators of Secrets and ConfigMaps, by kind."""
    return {
        "Secret": lambda resource: check_data(SECRET_LAYOUT, resource),
        "ConfigMap": lambda resource: check_data(CONFIG_MAP_LAYOUT, resource),
    }


# -- stored and served forms ---------------------------------------------------------


def stored_spec(layout: Layout, resource: Resource) -> dict[str, Any]:
    """The spec a checked Secret or ConfigMap is stored with: its fields, a Secret's
    ``stringData`` folded into ``data`` and its ``type`` defaulted to ``Opaque``."""
    extra = layout.extra(resource)
    spec: dict[str, Any] = {}
    if layout.kind == "Secret":
        data = dict(_mapping(extra.get("data"), "data"))
        for key, value in _mapping(extra.get("stringData"), "stringData").items():
            data[key] = base64.b64encode(str(value).encode()).decode("ascii")
        spec["type"] = extra.get("type") or "Opaque"
        if data:
            spec["data"] = data
    else:
        for name in ("data", "binaryData"):
            values = _mapping(extra.get(name), name)
            if values:
                spec[name] = dict(values)
    if extra.get("immutable") is not None:
        spec["immutable"] = bool(extra["immutable"])
    return spec


def served(manifest: Manifest) -> Manifest:
    """A stored Secret or ConfigMap as the API serves it: its stored spec's fields at
    the top level, no status, and metadata as Kubernetes gives these kinds (no
    generation, no empty labels or annotations)."""
    metadata = {
        key: value
        for key, value in (manifest.get("metadata") or {}).items()
        if key != "generation" and not (key in ("labels", "annotations") and not value)
    }
    out: Manifest = {
        "apiVersion": manifest.get("apiVersion", "v1"),
        "kind": manifest.get("kind"),
        "metadata": metadata,
    }
    out.update(manifest.get("spec") or {})
    return out


def _values(spec: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in spec.items() if k not in ("type", "immutable")}


def check_change(kind: str, before: Manifest, after: dict[str, Any]) -> None:
    """Refuse what Kubernetes refuses of an update: a Secret's ``type`` changing, and
    the values or ``immutable`` of an object stored as immutable changing."""
    old = {k: v for k, v in before.items() if k not in ("apiVersion", "kind", "metadata")}
    if kind == "Secret" and after.get("type") != old.get("type", "Opaque"):
        raise InvalidSpec(
            f"field is immutable: a Secret's type stays {old.get('type', 'Opaque')!r}",
            field="type",
        )
    if old.get("immutable") is True:
        if after.get("immutable") is not True:
            raise InvalidSpec("field is immutable when `immutable` is set", field="immutable")
        if _values(after) != _values(old):
            raise InvalidSpec("field is immutable when `immutable` is set", field="data")


class DataSource(StoreSource):
    """Secrets or ConfigMaps (or another kind with top-level fields, as its
    :class:`Layout` says) in the ``resources`` table (see the module's docstring)."""

    def __init__(self, store: ResourceStore, layout: Layout) -> None:
        super().__init__(store)
        self.layout = layout

    def _stored(self, resource: Resource) -> Resource:
        return Resource(
            apiVersion=resource.apiVersion,
            kind=resource.kind,
            metadata=resource.metadata,
            spec=self.layout.stored(resource),
            status={},
        )

    def get(self, kind: Kind, namespace: str, name: str) -> Manifest:
        return served(super().get(kind, namespace, name))

    def list(
        self,
        kind: Kind,
        namespace: str | None,
        *,
        label_selector: str | None,
        limit: int | None,
        continue_token: str | None,
    ) -> Page:
        page = super().list(
            kind,
            namespace,
            label_selector=label_selector,
            limit=limit,
            continue_token=continue_token,
        )
        return replace(page, items=[served(item) for item in page.items])

    def create(self, kind: Kind, resource: Resource) -> Manifest:
        return served(super().create(kind, self._stored(resource)))

    def apply(self, kind: Kind, resource: Resource) -> tuple[Manifest, ApplyResult]:
        stored = self._stored(resource)
        meta = resource.metadata
        try:
            before: Manifest | None = self.get(kind, meta.namespace, meta.name)
        except NotFound:
            before = None
        if before is not None:
            self.layout.check_change(before, stored.spec)
        applied, outcome = super().apply(kind, stored)
        return served(applied), outcome

    def patch(
        self, kind: Kind, namespace: str, name: str, patch: Manifest, check: Check | None = None
    ) -> Manifest:
        current = self.get(kind, namespace, name)
        if not isinstance(patch, dict):
            raise InvalidSpec("a merge patch must be a JSON object", field="body")
        envelope = {k: v for k, v in patch.items() if k in ("apiVersion", "kind", "metadata")}
        check_patch(current, envelope)
        for key in patch:
            if key not in ("apiVersion", "kind", "metadata", *self.layout.fields):
                raise InvalidSpec(
                    f"cannot be patched; a {kind.kind} has {', '.join(self.layout.fields)}",
                    field=key,
                )
        merged = merge_patch(current, patch)
        merged["metadata"].pop("resourceVersion", None)
        resource = Resource.from_manifest(merged)
        if check is not None:
            check(resource)
        stored = self._stored(resource)
        self.layout.check_change(current, stored.spec)
        return served(self.store.apply(stored).to_manifest())

    def put_status(
        self, kind: Kind, namespace: str, name: str, status: Manifest, resource_version: str | None
    ) -> Manifest:
        raise MethodNotAllowed(f"a {kind.kind} has no status subresource")

    def delete(self, kind: Kind, namespace: str, name: str) -> Manifest:
        return served(super().delete(kind, namespace, name))

    def fetch(self, kind: Kind, uids: Iterable[str]) -> dict[str, Manifest]:
        return {uid: served(m) for uid, m in super().fetch(kind, uids).items()}

    def present(self, kind: Kind, manifest: Manifest) -> Manifest:
        """A stored object (a watch's, from the store's change journal) as served."""
        return served(manifest)


def sources() -> dict[str, SourceFactory]:
    """What makes the source of each kind, from the app's context."""
    return {
        "Secret": lambda context: DataSource(context.store, SECRET_LAYOUT),
        "ConfigMap": lambda context: DataSource(context.store, CONFIG_MAP_LAYOUT),
    }
