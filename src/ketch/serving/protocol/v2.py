"""The Open Inference Protocol (V2) REST codec, with the binary tensor data extension.

A request body is JSON, or JSON followed by binary tensor data when the
``Inference-Header-Content-Length`` header gives the JSON's length; an input
with ``parameters.binary_data_size`` takes its bytes from there, in input order.
Outputs are written as binary when the requested output says
``binary_data: true``, or, for outputs without that parameter, when the request
says ``binary_data_output: true``. Content-Type is not required (tritonclient
sends none).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from ketch.serving.datatypes import from_bytes, from_json, to_bytes, to_json
from ketch.serving.errors import InvalidInput
from ketch.serving.types import InferRequest, InferResponse, RequestedOutput, Tensor

HEADER_LENGTH = "inference-header-content-length"
_DUMPS = orjson.OPT_SERIALIZE_NUMPY


def parse_header_length(value: str | None, body_size: int) -> int | None:
    if value is None:
        return None
    try:
        length = int(value)
    except ValueError:
        raise InvalidInput(f"Inference-Header-Content-Length {value!r} is not a number") from None
    if length < 0 or length > body_size:
        raise InvalidInput(
            f"Inference-Header-Content-Length {length} is outside the body ({body_size} bytes)"
        )
    return length


def load_json(data: bytes | memoryview) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"the request body is not valid JSON: {exc}") from None


def decode_request(body: bytes, header_length: int | None) -> InferRequest:
    """An :class:`InferRequest` from a V2 REST body."""
    if header_length is None or header_length == len(body):
        doc = load_json(body)
        binary = memoryview(b"")
    else:
        view = memoryview(body)
        doc = load_json(view[:header_length])
        binary = view[header_length:]
    if not isinstance(doc, dict):
        raise InvalidInput("the inference request must be a JSON object")
    items = doc.get("inputs")
    if not isinstance(items, list) or not items:
        raise InvalidInput('the inference request needs "inputs": a non-empty list')
    inputs: list[Tensor] = []
    offset = 0
    for index, item in enumerate(items):
        tensor, offset = _decode_input(index, item, binary, offset)
        inputs.append(tensor)
    if offset != len(binary):
        raise InvalidInput(
            f"the body has {len(binary) - offset} bytes of binary data no input claims"
        )
    parameters = doc.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise InvalidInput('"parameters" must be a JSON object')
    request_id = doc.get("id")
    return InferRequest(
        inputs=inputs,
        id=str(request_id) if request_id is not None else None,
        parameters=parameters,
        outputs=_decode_outputs(doc.get("outputs")),
    )


def _decode_input(index: int, item: Any, binary: memoryview, offset: int) -> tuple[Tensor, int]:
    if not isinstance(item, dict):
        raise InvalidInput(f"input {index} must be a JSON object")
    name = item.get("name")
    datatype = item.get("datatype")
    shape = item.get("shape")
    if not isinstance(name, str) or not name:
        raise InvalidInput(f'input {index} needs a "name"')
    if not isinstance(datatype, str):
        raise InvalidInput(f'input {name!r} needs a "datatype"')
    if not isinstance(shape, list) or not all(type(d) is int for d in shape):
        raise InvalidInput(f'input {name!r} needs a "shape": a list of integers')
    parameters = item.get("parameters") or None
    size = parameters.get("binary_data_size") if isinstance(parameters, dict) else None
    if size is not None:
        if type(size) is not int or size < 0 or offset + size > len(binary):
            raise InvalidInput(
                f"input {name!r}: binary_data_size {size} does not fit the binary data "
                f"({len(binary) - offset} bytes left)"
            )
        data = from_bytes(name, datatype, shape, binary[offset : offset + size])
        offset += size
    else:
        if "data" not in item:
            raise InvalidInput(f'input {name!r} needs "data" or a binary_data_size parameter')
        data = from_json(name, datatype, shape, item["data"])
    return Tensor(name, data, datatype, parameters), offset


def _decode_outputs(items: Any) -> list[RequestedOutput] | None:
    if items is None:
        return None
    if not isinstance(items, list):
        raise InvalidInput('"outputs" must be a list')
    outputs = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise InvalidInput('each requested output needs a "name"')
        parameters = item.get("parameters")
        outputs.append(RequestedOutput(item["name"], parameters if parameters else None))
    return outputs


def select_outputs(response: InferResponse, request: InferRequest) -> list[Tensor]:
    """The response outputs the request asked for (all when it named none)."""
    if not request.outputs:
        return response.outputs
    by_name = {tensor.name: tensor for tensor in response.outputs}
    selected = []
    for wanted in request.outputs:
        tensor = by_name.get(wanted.name)
        if tensor is None:
            raise InvalidInput(
                f"the model has no output {wanted.name!r}; it returns "
                f"{', '.join(by_name) or 'nothing'}"
            )
        selected.append(tensor)
    return selected


def encode_response(response: InferResponse, request: InferRequest) -> tuple[bytes, int | None]:
    """The body for ``response``, and the JSON length when binary data follows it."""
    default_binary = bool(request.parameters.get("binary_data_output", False))
    wanted: dict[str, Mapping[str, Any]] = {}
    if request.outputs:
        wanted = {o.name: o.parameters or {} for o in request.outputs}
    outputs: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for tensor in select_outputs(response, request):
        binary = bool(wanted.get(tensor.name, {}).get("binary_data", default_binary))
        entry: dict[str, Any] = {
            "name": tensor.name,
            "datatype": tensor.datatype,
            "shape": list(tensor.data.shape),
        }
        parameters = dict(tensor.parameters) if tensor.parameters else {}
        if binary:
            blob = to_bytes(tensor.data, tensor.datatype)
            blobs.append(blob)
            parameters["binary_data_size"] = len(blob)
        else:
            entry["data"] = to_json(tensor.data, tensor.datatype)
        if parameters:
            entry["parameters"] = parameters
        outputs.append(entry)
    doc: dict[str, Any] = {"model_name": response.model_name}
    if response.model_version:
        doc["model_version"] = response.model_version
    if response.id is not None:
        doc["id"] = response.id
    if response.parameters:
        doc["parameters"] = response.parameters
    doc["outputs"] = outputs
    header = orjson.dumps(doc, option=_DUMPS)
    if not blobs:
        return header, None
    return b"".join([header, *blobs]), len(header)


# -- the client side (a transformer forwarding to its predictor) ---------------------


def encode_request(request: InferRequest) -> tuple[bytes, dict[str, str]]:
    """A JSON V2 body for ``request`` and the headers to send with it."""
    inputs = [
        {
            "name": t.name,
            "datatype": t.datatype,
            "shape": list(t.data.shape),
            "data": to_json(t.data, t.datatype),
            **({"parameters": t.parameters} if t.parameters else {}),
        }
        for t in request.inputs
    ]
    doc: dict[str, Any] = {"inputs": inputs}
    if request.id is not None:
        doc["id"] = request.id
    if request.parameters:
        doc["parameters"] = request.parameters
    if request.outputs:
        doc["outputs"] = [
            {"name": o.name, **({"parameters": o.parameters} if o.parameters else {})}
            for o in request.outputs
        ]
    return orjson.dumps(doc, option=_DUMPS), {"content-type": "application/json"}


def decode_response(body: bytes, headers: Mapping[str, str]) -> InferResponse:
    """An :class:`InferResponse` from a V2 REST response body."""
    length = parse_header_length(headers.get(HEADER_LENGTH), len(body))
    view = memoryview(body)
    doc = load_json(view[:length] if length is not None else view)
    binary = view[length:] if length is not None else memoryview(b"")
    outputs = []
    offset = 0
    for index, item in enumerate(doc.get("outputs") or []):
        tensor, offset = _decode_input(index, item, binary, offset)
        if tensor.parameters:
            tensor.parameters.pop("binary_data_size", None)
        outputs.append(tensor)
    return InferResponse(
        model_name=doc.get("model_name", ""),
        model_version=doc.get("model_version"),
        id=doc.get("id"),
        parameters=doc.get("parameters"),
        outputs=outputs,
    )
