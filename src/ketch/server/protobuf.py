"""Request bodies in Kubernetes' protobuf encoding, for the kinds kubectl sends that
way.

kubectl 1.32 and later send the built-in kinds its typed clients write as
``application/vnd.kubernetes.protobuf``: ``kubectl create secret``, ``kubectl create
configmap``, ``kubectl create namespace`` and ``kubectl create rolebinding`` do. Such a
body is the four bytes ``k8s\\0`` and a ``runtime.Unknown`` message (``typeMeta``,
``raw``) whose ``raw`` is the object's message, with the field numbers of Kubernetes'
``generated.proto`` files. :func:`decode` reads the ``Secret``, ``ConfigMap``,
``Namespace`` and ``RoleBinding`` messages into the manifest their JSON would be
(``bytes`` fields base64-encoded, zero values left out as ``omitempty`` leaves them
out); any other kind is refused with 415 and a message saying to send JSON. Answers
are always JSON, which kubectl accepts.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ketch.core.errors import InvalidSpec, KetchError

MEDIA_TYPE = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"


class UnsupportedMediaType(KetchError):
    http_status = 415
    exit_code = 2


# -- the wire format --------------------------------------------------------------------

VARINT, FIXED64, LENGTH, FIXED32 = 0, 1, 2, 5


def _malformed(why: str) -> InvalidSpec:
    return InvalidSpec(f"malformed protobuf body: {why}", field="body")


def _varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if at >= len(data):
            raise _malformed("a number runs past the end")
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, at
        shift += 7
        if shift > 63:
            raise _malformed("a number is longer than 64 bits")


def fields(data: bytes) -> list[tuple[int, int, Any]]:
    """The ``(number, wire type, value)`` of each field of a message, in order: a
    length-delimited value as ``bytes``, the others as ``int``."""
    found: list[tuple[int, int, Any]] = []
    at = 0
    while at < len(data):
        tag, at = _varint(data, at)
        number, wire = tag >> 3, tag & 7
        if number == 0:
            raise _malformed("field number 0")
        value: Any
        if wire == VARINT:
            value, at = _varint(data, at)
        elif wire == LENGTH:
            size, at = _varint(data, at)
            if at + size > len(data):
                raise _malformed(f"field {number} runs past the end")
            value, at = data[at : at + size], at + size
        elif wire == FIXED64:
            if at + 8 > len(data):
                raise _malformed(f"field {number} runs past the end")
            value, at = int.from_bytes(data[at : at + 8], "little"), at + 8
        elif wire == FIXED32:
            if at + 4 > len(data):
                raise _malformed(f"field {number} runs past the end")
            value, at = int.from_bytes(data[at : at + 4], "little"), at + 4
        else:
            raise _malformed(f"field {number} has wire type {wire}, which Kubernetes never uses")
        found.append((number, wire, value))
    return found


# -- messages ---------------------------------------------------------------------------

Decoder = Callable[[Any], Any]


@dataclass(frozen=True)
class Field:
    name: str
    decode: Decoder
    repeated: bool = False


def _text(value: Any) -> str:
    if not isinstance(value, bytes):
        raise _malformed("a string field is not length-delimited")
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise _malformed("a string field is not UTF-8") from None


def _bytes(value: Any) -> str:
    if not isinstance(value, bytes):
        raise _malformed("a bytes field is not length-delimited")
    return base64.b64encode(value).decode("ascii")


def _int(value: Any) -> int:
    if not isinstance(value, int):
        raise _malformed("a number field is length-delimited")
    return value - (1 << 64) if value >= 1 << 63 else value


def _bool(value: Any) -> bool:
    return bool(_int(value))


def message(schema: dict[int, Field]) -> Decoder:
    """A decoder of the message whose fields ``schema`` names, by number (fields it
    does not name are skipped, as Kubernetes skips them)."""

    def decode(value: Any) -> dict[str, Any]:
        if not isinstance(value, bytes):
            raise _malformed("a message field is not length-delimited")
        out: dict[str, Any] = {}
        for number, _wire, raw in fields(value):
            spec = schema.get(number)
            if spec is None:
                continue
            decoded = spec.decode(raw)
            if spec.repeated:
                out.setdefault(spec.name, []).append(decoded)
            elif isinstance(decoded, dict) and isinstance(out.get(spec.name), dict):
                out[spec.name].update(decoded)  # map entries, or a message given in parts
            else:
                out[spec.name] = decoded
        return {k: v for k, v in out.items() if v not in ("", 0, False, None, {}, [])}

    return decode


def mapping(value_decoder: Decoder) -> Decoder:
    """A decoder of one entry of a ``map<string, ...>`` field (key 1, value 2)."""

    def decode(value: Any) -> dict[str, Any]:
        if not isinstance(value, bytes):
            raise _malformed("a map entry is not length-delimited")
        key, item = "", None
        for number, _wire, raw in fields(value):
            if number == 1:
                key = _text(raw)
            elif number == 2:
                item = value_decoder(raw)
        if item is None:
            item = value_decoder(b"")
        return {key: item}

    return decode


def _time(value: Any) -> str | None:
    parts = message({1: Field("seconds", _int), 2: Field("nanos", _int)})(value)
    seconds = parts.get("seconds", 0)
    if not seconds and not parts.get("nanos"):
        return None
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


_OWNER = message(
    {
        1: Field("kind", _text),
        3: Field("name", _text),
        4: Field("uid", _text),
        5: Field("apiVersion", _text),
        6: Field("controller", _bool),
        7: Field("blockOwnerDeletion", _bool),
    }
)
OBJECT_META = message(
    {
        1: Field("name", _text),
        2: Field("generateName", _text),
        3: Field("namespace", _text),
        5: Field("uid", _text),
        6: Field("resourceVersion", _text),
        7: Field("generation", _int),
        8: Field("creationTimestamp", _time),
        10: Field("deletionGracePeriodSeconds", _int),
        11: Field("labels", mapping(_text)),
        12: Field("annotations", mapping(_text)),
        13: Field("ownerReferences", _OWNER, repeated=True),
        14: Field("finalizers", _text, repeated=True),
    }
)

#: The messages :func:`decode` reads, by ``apiVersion`` and ``kind``.
KINDS: dict[tuple[str, str], Decoder] = {
    ("v1", "Secret"): message(
        {
            1: Field("metadata", OBJECT_META),
            2: Field("data", mapping(_bytes)),
            3: Field("type", _text),
            4: Field("stringData", mapping(_text)),
            5: Field("immutable", _bool),
        }
    ),
    ("v1", "ConfigMap"): message(
        {
            1: Field("metadata", OBJECT_META),
            2: Field("data", mapping(_text)),
            3: Field("binaryData", mapping(_bytes)),
            4: Field("immutable", _bool),
        }
    ),
    ("v1", "Namespace"): message(
        {
            1: Field("metadata", OBJECT_META),
            2: Field("spec", message({1: Field("finalizers", _text, repeated=True)})),
        }
    ),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): message(
        {
            1: Field("metadata", OBJECT_META),
            2: Field(
                "subjects",
                message(
                    {
                        1: Field("kind", _text),
                        2: Field("apiGroup", _text),
                        3: Field("name", _text),
                        4: Field("namespace", _text),
                    }
                ),
                repeated=True,
            ),
            3: Field(
                "roleRef",
                message(
                    {1: Field("apiGroup", _text), 2: Field("kind", _text), 3: Field("name", _text)}
                ),
            ),
        }
    ),
}

_UNKNOWN = message(
    {
        1: Field("typeMeta", message({1: Field("apiVersion", _text), 2: Field("kind", _text)})),
        2: Field("raw", lambda value: value if isinstance(value, bytes) else b""),
        3: Field("contentEncoding", _text),
    }
)


def decode(body: bytes) -> dict[str, Any]:
    """The manifest a protobuf-encoded request body holds."""
    if not body.startswith(MAGIC):
        raise _malformed("it does not start with Kubernetes' k8s\\0 prefix")
    envelope = _UNKNOWN(body[len(MAGIC) :])
    type_meta = envelope.get("typeMeta") or {}
    api_version, kind = type_meta.get("apiVersion", ""), type_meta.get("kind", "")
    if envelope.get("contentEncoding"):
        raise UnsupportedMediaType(
            f"protobuf bodies with contentEncoding {envelope['contentEncoding']!r} are not read"
        )
    read = KINDS.get((api_version, kind))
    if read is None:
        known = ", ".join(k for _v, k in KINDS)
        raise UnsupportedMediaType(
            f"a protobuf body is read for {known} only, not {kind or 'this kind'} "
            f"({api_version or 'no apiVersion'}): send it as application/json or "
            "application/yaml"
        )
    return {"apiVersion": api_version, "kind": kind, **read(envelope.get("raw", b""))}
