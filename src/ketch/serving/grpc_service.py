"""The Open Inference Protocol over gRPC: ``inference.GRPCInferenceService``.

Inputs come as typed ``contents`` or as ``raw_input_contents`` (one blob per
input, in order); outputs always go back as ``raw_output_contents``, as Triton
does. Errors abort the call with INVALID_ARGUMENT (400), NOT_FOUND (404),
UNAVAILABLE (503), UNIMPLEMENTED (501) or INTERNAL (500).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import grpc
import numpy as np

from ketch.core.errors import KetchError
from ketch.serving.dataplane import DataPlane
from ketch.serving.datatypes import dtype_for, element_count, from_bytes, to_bytes
from ketch.serving.errors import InferenceError, InvalidInput
from ketch.serving.protocol import inference_pb2 as pb
from ketch.serving.protocol.v2 import select_outputs
from ketch.serving.secret import HEADER, REFUSED, holds
from ketch.serving.types import InferRequest, InferResponse, RequestedOutput, Tensor

SERVICE = "inference.GRPCInferenceService"

_CONTENTS = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}

_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    404: grpc.StatusCode.NOT_FOUND,
    405: grpc.StatusCode.UNIMPLEMENTED,
    409: grpc.StatusCode.ALREADY_EXISTS,
    501: grpc.StatusCode.UNIMPLEMENTED,
    503: grpc.StatusCode.UNAVAILABLE,
}


def _parameters(values: Mapping[str, Any]) -> dict[str, Any]:
    return {
        key: getattr(value, value.WhichOneof("parameter_choice") or "string_param")
        for key, value in values.items()
    }


def _set_parameters(target: Any, values: Mapping[str, Any]) -> None:
    for key, value in values.items():
        slot = target[key]
        if isinstance(value, bool):
            slot.bool_param = value
        elif isinstance(value, int):
            slot.int64_param = value
        elif isinstance(value, float):
            slot.double_param = value
        else:
            slot.string_param = str(value)


def decode_request(message: Any) -> InferRequest:
    raw = message.raw_input_contents
    if raw and len(raw) != len(message.inputs):
        raise InvalidInput(
            f"raw_input_contents has {len(raw)} entries for {len(message.inputs)} inputs"
        )
    inputs = []
    for index, item in enumerate(message.inputs):
        shape = list(item.shape)
        if raw:
            data = from_bytes(item.name, item.datatype, shape, raw[index])
        else:
            data = _from_contents(item.name, item.datatype, shape, item.contents)
        parameters = _parameters(item.parameters) if item.parameters else None
        inputs.append(Tensor(item.name, data, item.datatype, parameters))
    if not inputs:
        raise InvalidInput("the inference request has no inputs")
    outputs = [
        RequestedOutput(o.name, _parameters(o.parameters) if o.parameters else None)
        for o in message.outputs
    ]
    return InferRequest(
        inputs=inputs,
        id=message.id or None,
        parameters=_parameters(message.parameters),
        outputs=outputs or None,
        model_name=message.model_name,
        model_version=message.model_version or None,
    )


def _from_contents(name: str, datatype: str, shape: list[int], contents: Any) -> np.ndarray:
    field = _CONTENTS.get(datatype)
    if field is None:
        dtype_for(datatype)  # unknown datatypes get their own message
        raise InvalidInput(f"input {name!r}: {datatype} data must come in raw_input_contents")
    values = getattr(contents, field)
    count = element_count(shape)
    if len(values) != count:
        raise InvalidInput(
            f"input {name!r}: shape {shape} needs {count} elements, contents has {len(values)}"
        )
    if datatype == "BYTES":
        array = np.empty(count, dtype=object)
        array[:] = list(values)
    else:
        array = np.array(values, dtype=dtype_for(datatype))
    return array.reshape(shape)


def encode_response(response: InferResponse, request: InferRequest) -> Any:
    message = pb.ModelInferResponse(
        model_name=response.model_name,
        model_version=response.model_version or "",
        id=response.id or "",
    )
    if response.parameters:
        _set_parameters(message.parameters, response.parameters)
    for tensor in select_outputs(response, request):
        output = message.outputs.add(
            name=tensor.name, datatype=tensor.datatype, shape=tensor.data.shape
        )
        if tensor.parameters:
            _set_parameters(output.parameters, tensor.parameters)
        message.raw_output_contents.append(to_bytes(tensor.data, tensor.datatype))
    return message


class InferenceServicer:
    def __init__(self, dataplane: DataPlane) -> None:
        self.dataplane = dataplane

    async def ServerLive(self, request: Any, context: Any) -> Any:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: Any, context: Any) -> Any:
        return pb.ServerReadyResponse(ready=self.dataplane.ready())

    async def ModelReady(self, request: Any, context: Any) -> Any:
        try:
            self.dataplane.model_ready(request.name, request.version or None)
        except KetchError as exc:
            if exc.http_status == 404:
                await _abort(context, exc)
            return pb.ModelReadyResponse(ready=False)
        return pb.ModelReadyResponse(ready=True)

    async def ServerMetadata(self, request: Any, context: Any) -> Any:
        return pb.ServerMetadataResponse(**self.dataplane.server_metadata())

    async def ModelMetadata(self, request: Any, context: Any) -> Any:
        try:
            meta = self.dataplane.metadata(request.name, request.version or None)
        except KetchError as exc:
            await _abort(context, exc)
        response = pb.ModelMetadataResponse(
            name=meta["name"], versions=meta["versions"], platform=meta["platform"]
        )
        for kind in ("inputs", "outputs"):
            for spec in meta[kind]:
                getattr(response, kind).add(**spec)
        return response

    async def ModelInfer(self, request: Any, context: Any) -> Any:
        started = time.perf_counter()
        status = 200
        try:
            infer_request = decode_request(request)
            response = await self.dataplane.infer(
                request.model_name, request.model_version or None, infer_request
            )
            return encode_response(response, infer_request)
        except KetchError as exc:
            status = exc.http_status
            await _abort(context, exc)
        except Exception as exc:  # noqa: BLE001 - the model's code may raise anything: answered INTERNAL with its type, not a dropped stream
            status = 500
            await _abort(context, InferenceError(f"internal error: {type(exc).__name__}: {exc}"))
        finally:
            self.dataplane.metrics.observe_request(
                request.model_name, "grpc", status, time.perf_counter() - started
            )

    async def RepositoryIndex(self, request: Any, context: Any) -> Any:
        response = pb.RepositoryIndexResponse()
        for entry in self.dataplane.repository.index(request.ready):
            response.models.add(
                name=entry["name"],
                version=entry.get("version", ""),
                state=entry["state"],
                reason=entry["reason"],
            )
        return response

    async def RepositoryModelLoad(self, request: Any, context: Any) -> Any:
        try:
            entry = await self.dataplane.repository.load(request.model_name)
            if entry.reason:
                raise InvalidInput(f"failed to load model {request.model_name!r}: {entry.reason}")
        except KetchError as exc:
            await _abort(context, exc)
        return pb.RepositoryModelLoadResponse()

    async def RepositoryModelUnload(self, request: Any, context: Any) -> Any:
        try:
            await self.dataplane.repository.unload(request.model_name)
        except KetchError as exc:
            await _abort(context, exc)
        return pb.RepositoryModelUnloadResponse()


async def _abort(context: Any, exc: KetchError) -> None:
    code = _CODES.get(exc.http_status, grpc.StatusCode.INTERNAL)
    await context.abort(code, str(exc))


_MESSAGES: dict[str, tuple[Any, Any]] = {
    "ServerLive": (pb.ServerLiveRequest, pb.ServerLiveResponse),
    "ServerReady": (pb.ServerReadyRequest, pb.ServerReadyResponse),
    "ModelReady": (pb.ModelReadyRequest, pb.ModelReadyResponse),
    "ServerMetadata": (pb.ServerMetadataRequest, pb.ServerMetadataResponse),
    "ModelMetadata": (pb.ModelMetadataRequest, pb.ModelMetadataResponse),
    "ModelInfer": (pb.ModelInferRequest, pb.ModelInferResponse),
    "RepositoryIndex": (pb.RepositoryIndexRequest, pb.RepositoryIndexResponse),
    "RepositoryModelLoad": (pb.RepositoryModelLoadRequest, pb.RepositoryModelLoadResponse),
    "RepositoryModelUnload": (pb.RepositoryModelUnloadRequest, pb.RepositoryModelUnloadResponse),
}


def rpc_handler(dataplane: DataPlane) -> grpc.GenericRpcHandler:
    """The generic handler serving every method of the service."""
    servicer = InferenceServicer(dataplane)
    handlers: dict[str, grpc.RpcMethodHandler] = {}
    for method, (request_type, response_type) in _MESSAGES.items():
        function: Callable[..., Any] = getattr(servicer, method)
        handlers[method] = grpc.unary_unary_rpc_method_handler(
            function,
            request_deserializer=request_type.FromString,
            response_serializer=response_type.SerializeToString,
        )
    return grpc.method_handlers_generic_handler(SERVICE, handlers)


class _SecretInterceptor(grpc.aio.ServerInterceptor):
    """Refuses (``PERMISSION_DENIED``) a call whose metadata lacks the replica's secret."""

    def __init__(self, secret: str) -> None:
        self._secret = secret.encode()
        self._refuse: grpc.RpcMethodHandler[Any, Any] = grpc.unary_unary_rpc_method_handler(_refuse)

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        for key, value in handler_call_details.invocation_metadata or ():
            if key == HEADER:
                if holds(value, self._secret):
                    return await continuation(handler_call_details)
                break
        return self._refuse


async def _refuse(_request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> None:
    await context.abort(grpc.StatusCode.PERMISSION_DENIED, REFUSED)


def secret_interceptor(secret: str) -> grpc.aio.ServerInterceptor:
    """What makes a gRPC server ask for ``secret`` in each call's ``ketch-replica-secret``
    metadata (see :mod:`ketch.serving.secret`)."""
    return _SecretInterceptor(secret)
