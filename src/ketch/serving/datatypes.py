"""Open Inference Protocol datatypes and their numpy representation and byte layout.

Binary data (the REST binary extension and gRPC raw contents) is little-endian,
row-major. ``BYTES`` elements are 4-byte little-endian lengths followed by the
bytes; in memory they are numpy object arrays of ``bytes``. ``BF16`` has no
numpy dtype: in memory it is float32 and on the wire the upper 16 bits of each
float32 (what bfloat16 is).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import Any

import numpy as np

from ketch.serving.errors import InvalidInput

DTYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    "BF16": np.dtype("<f4"),
    "BYTES": np.dtype(object),
}

_BY_KIND: dict[str, str] = {
    "b1": "BOOL",
    "u1": "UINT8",
    "u2": "UINT16",
    "u4": "UINT32",
    "u8": "UINT64",
    "i1": "INT8",
    "i2": "INT16",
    "i4": "INT32",
    "i8": "INT64",
    "f2": "FP16",
    "f4": "FP32",
    "f8": "FP64",
}

_LENGTH = struct.Struct("<I")


def datatype_of(array: np.ndarray) -> str:
    """The protocol datatype of a numpy array (object, str and bytes arrays are BYTES)."""
    kind = array.dtype.kind
    if kind in "OSU":
        return "BYTES"
    name = _BY_KIND.get(f"{kind}{array.dtype.itemsize}")
    if name is None:
        raise InvalidInput(f"numpy dtype {array.dtype} has no Open Inference Protocol datatype")
    return name


def dtype_for(datatype: str) -> np.dtype[Any]:
    try:
        return DTYPES[datatype]
    except KeyError:
        raise InvalidInput(
            f"unknown datatype {datatype!r}; use one of {', '.join(DTYPES)}"
        ) from None


def element_count(shape: Iterable[int]) -> int:
    count = 1
    for dim in shape:
        if dim < 0:
            raise InvalidInput(f"shape {list(shape)} has a negative dimension")
        count *= dim
    return count


def _flatten(data: Any, out: list[Any]) -> None:
    for item in data:
        if isinstance(item, list):
            _flatten(item, out)
        else:
            out.append(item)


def _as_bytes(item: Any) -> bytes:
    if isinstance(item, bytes):
        return item
    if isinstance(item, str):
        return item.encode()
    if isinstance(item, bytearray | memoryview):
        return bytes(item)
    return str(item).encode()


def from_json(name: str, datatype: str, shape: list[int], data: Any) -> np.ndarray:
    """The array for a JSON ``data`` field (nested or flat, row-major)."""
    count = element_count(shape)
    dtype = dtype_for(datatype)
    if datatype == "BYTES":
        flat: list[Any] = []
        if isinstance(data, list):
            _flatten(data, flat)
        else:
            flat.append(data)
        array = np.empty(len(flat), dtype=object)
        array[:] = [_as_bytes(item) for item in flat]
    else:
        try:
            array = np.asarray(data, dtype=dtype)
        except (ValueError, TypeError, OverflowError) as exc:
            raise InvalidInput(f"input {name!r}: data does not fit {datatype}: {exc}") from None
    if array.size != count:
        raise InvalidInput(
            f"input {name!r}: shape {shape} needs {count} elements, data has {array.size}"
        )
    return array.reshape(shape)


def to_json(array: np.ndarray, datatype: str) -> Any:
    """What goes in a JSON ``data`` field: a flat array (orjson writes numpy) or strings."""
    if datatype == "BYTES":
        return [
            item.decode("utf-8", "replace") if isinstance(item, bytes | bytearray) else str(item)
            for item in array.reshape(-1)
        ]
    if array.dtype.kind in "OSU":
        raise InvalidInput(f"a {datatype} tensor cannot hold {array.dtype} values")
    flat = array.reshape(-1)
    if datatype == "BF16":
        flat = flat.astype(np.float32, copy=False)
    if not flat.flags.c_contiguous or flat.dtype.byteorder == ">":
        flat = np.ascontiguousarray(flat, dtype=flat.dtype.newbyteorder("="))
    return flat


def from_bytes(name: str, datatype: str, shape: list[int], raw: bytes | memoryview) -> np.ndarray:
    """The array for binary tensor data (REST binary extension, gRPC raw contents)."""
    count = element_count(shape)
    if datatype == "BYTES":
        items = []
        view = memoryview(raw)
        offset, end = 0, len(view)
        while offset < end:
            if offset + 4 > end:
                raise InvalidInput(f"input {name!r}: truncated BYTES element length")
            (length,) = _LENGTH.unpack_from(view, offset)
            offset += 4
            if offset + length > end:
                raise InvalidInput(f"input {name!r}: BYTES element overruns the data")
            items.append(bytes(view[offset : offset + length]))
            offset += length
        if len(items) != count:
            raise InvalidInput(
                f"input {name!r}: shape {shape} needs {count} elements, data has {len(items)}"
            )
        array = np.empty(count, dtype=object)
        array[:] = items
        return array.reshape(shape)
    if datatype == "BF16":
        expected = count * 2
        if len(raw) != expected:
            raise _size_error(name, shape, datatype, expected, len(raw))
        upper = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
        return upper.view(np.float32).reshape(shape)
    dtype = dtype_for(datatype)
    expected = count * dtype.itemsize
    if len(raw) != expected:
        raise _size_error(name, shape, datatype, expected, len(raw))
    return np.frombuffer(raw, dtype=dtype).reshape(shape)


def to_bytes(array: np.ndarray, datatype: str) -> bytes:
    """Binary tensor data for ``array`` (row-major, little-endian)."""
    if datatype == "BYTES":
        parts: list[bytes] = []
        for item in array.reshape(-1):
            data = _as_bytes(item)
            parts.append(_LENGTH.pack(len(data)))
            parts.append(data)
        return b"".join(parts)
    if datatype == "BF16":
        as32 = np.ascontiguousarray(array, dtype="<f4").reshape(-1)
        return (as32.view("<u4") >> 16).astype("<u2").tobytes()
    return np.ascontiguousarray(array, dtype=dtype_for(datatype)).tobytes()


def _size_error(
    name: str, shape: list[int], datatype: str, expected: int, got: int
) -> InvalidInput:
    return InvalidInput(
        f"input {name!r}: {datatype} shape {shape} needs {expected} bytes of binary data, got {got}"
    )
