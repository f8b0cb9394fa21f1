"""Reading Kubernetes' protobuf request bodies (what kubectl 1.32+ sends the Secrets,
ConfigMaps and Namespaces it creates as); the real kubectl sends them in
tests/server/test_core_kubectl.py. The messages here are written field by field with
the field numbers of Kubernetes' generated.proto files."""

from __future__ import annotations

import base64

import pytest

from ketch.core.errors import InvalidSpec
from ketch.server.protobuf import MAGIC, UnsupportedMediaType, decode


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, value: bytes | str | int | bool) -> bytes:
    if isinstance(value, bool | int):
        return _varint(number << 3) + _varint(int(value))
    raw = value.encode() if isinstance(value, str) else value
    return _varint(number << 3 | 2) + _varint(len(raw)) + raw


def _entry(number: int, key: str, value: bytes | str) -> bytes:
    return _field(number, _field(1, key) + _field(2, value))


def _body(api_version: str, kind: str, raw: bytes) -> bytes:
    type_meta = _field(1, api_version) + _field(2, kind)
    return MAGIC + _field(1, type_meta) + _field(2, raw) + _field(3, "") + _field(4, "")


def _metadata(name: str, namespace: str = "") -> bytes:
    # as Go marshals ObjectMeta: empty strings and a zero creationTimestamp included
    meta = _field(1, name) + _field(2, "") + _field(3, namespace)
    meta += _field(8, b"") + _entry(11, "app", "demo")
    return _field(1, meta)


def test_a_secret() -> None:
    raw = _metadata("s1", "team-a")
    raw += _entry(2, "password", b"\x00hunter2") + _field(3, "Opaque")
    raw += _entry(4, "user", "bob") + _field(5, True)
    assert decode(_body("v1", "Secret", raw)) == {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s1", "namespace": "team-a", "labels": {"app": "demo"}},
        "data": {"password": base64.b64encode(b"\x00hunter2").decode()},
        "type": "Opaque",
        "stringData": {"user": "bob"},
        "immutable": True,
    }


def test_a_configmap_and_a_namespace() -> None:
    raw = _metadata("c1") + _entry(2, "a", "") + _entry(3, "bin", b"\x01\x02")
    assert decode(_body("v1", "ConfigMap", raw)) == {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "c1", "labels": {"app": "demo"}},
        "data": {"a": ""},
        "binaryData": {"bin": "AQI="},
    }
    spec = _field(2, _field(1, "kubernetes"))
    assert decode(_body("v1", "Namespace", _metadata("team-b") + spec)) == {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "team-b", "labels": {"app": "demo"}},
        "spec": {"finalizers": ["kubernetes"]},
    }


def test_other_kinds_are_415_and_malformed_bodies_400() -> None:
    with pytest.raises(UnsupportedMediaType, match="send it as application/json"):
        decode(_body("batch/v1", "Job", _metadata("j")))
    with pytest.raises(InvalidSpec, match="k8s"):
        decode(b'{"kind": "Secret"}')
    truncated = _body("v1", "Secret", _metadata("s1"))[:-3]
    with pytest.raises(InvalidSpec, match="malformed protobuf") as raised:
        decode(truncated)
    assert raised.value.field == "body"
