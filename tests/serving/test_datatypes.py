"""Every Open Inference Protocol datatype makes a round trip: JSON, binary, gRPC."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from ketch.serving import datatypes
from ketch.serving.errors import InvalidInput
from ketch.serving.server import ModelServer
from tests.serving.conftest import MODELS, serving

httpclient = pytest.importorskip("tritonclient.http")
grpcclient = pytest.importorskip("tritonclient.grpc")
ml_dtypes = pytest.importorskip("ml_dtypes")


def sample(datatype: str, binary: bool = True) -> np.ndarray:
    """A 2x3 tensor of ``datatype`` with edge values, as tritonclient wants it."""
    if datatype == "BYTES" and not binary:  # JSON carries text only
        return np.array([["a", "", "\u00fc"], ["long" * 10, "z", " "]], dtype=object)
    if datatype == "BOOL":
        return np.array([[True, False, True], [False, False, True]])
    if datatype == "BYTES":
        return np.array(
            [[b"a", b"", "\u00fc".encode()], [b"\x00\xff", b"long" * 10, b"z"]], dtype=object
        )
    if datatype == "BF16":
        return np.array([[1.5, -2.0, 0.0], [3.140625, 1e10, -1e-3]], dtype=ml_dtypes.bfloat16)
    dtype = np.dtype(datatypes.DTYPES[datatype])
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return np.array([[info.min, 0, info.max], [1, 2, 3]], dtype=dtype)
    return np.array([[0.5, -1.25, 65504.0], [1e-3, 0.0, -3.0]], dtype=dtype)


ALL = list(datatypes.DTYPES)
# tritonclient sends BF16 only as binary over HTTP.
JSON_TYPES = [t for t in ALL if t != "BF16"]


@pytest.fixture(scope="module")
def echo() -> Iterator[ModelServer]:
    with serving(MODELS / "echo.py", name="echo") as server:
        yield server


def assert_same(got: np.ndarray, sent: np.ndarray, datatype: str) -> None:
    assert got.shape == sent.shape
    if datatype == "BYTES":

        def to_bytes(values: np.ndarray) -> list[bytes]:
            return [x.encode() if isinstance(x, str) else bytes(x) for x in values.ravel()]

        assert to_bytes(got) == to_bytes(sent)
    elif datatype == "BF16":
        np.testing.assert_array_equal(got.astype(np.float32), sent.astype(np.float32))
    else:
        assert got.dtype == sent.dtype
        np.testing.assert_array_equal(got, sent)


@pytest.mark.parametrize("binary", [True, False])
def test_http_round_trip_every_datatype(echo: ModelServer, binary: bool) -> None:
    client = httpclient.InferenceServerClient(echo.url.removeprefix("http://"))
    try:
        types = ALL if binary else JSON_TYPES
        inputs, outputs, sent = [], [], {}
        for datatype in types:
            name = f"in_{datatype}"
            sent[name] = sample(datatype, binary)
            tensor = httpclient.InferInput(name, list(sent[name].shape), datatype)
            tensor.set_data_from_numpy(sent[name], binary_data=binary)
            inputs.append(tensor)
            outputs.append(
                httpclient.InferRequestedOutput(name, binary_data=binary or datatype == "BF16")
            )
        result = client.infer("echo", inputs, outputs=outputs)
        for datatype in types:
            name = f"in_{datatype}"
            assert result.get_output(name)["datatype"] == datatype
            assert_same(result.as_numpy(name), sent[name], datatype)
    finally:
        client.close()


def test_http_default_outputs_are_binary(echo: ModelServer) -> None:
    client = httpclient.InferenceServerClient(echo.url.removeprefix("http://"))
    try:
        data = sample("FP32")
        tensor = httpclient.InferInput("x", list(data.shape), "FP32")
        tensor.set_data_from_numpy(data)
        result = client.infer("echo", [tensor])  # no outputs named: binary_data_output
        assert "binary_data_size" in result.get_output("x")["parameters"]
        assert_same(result.as_numpy("x"), data, "FP32")
    finally:
        client.close()


def test_grpc_round_trip_every_datatype(echo: ModelServer) -> None:
    assert echo.grpc_address is not None
    client = grpcclient.InferenceServerClient(echo.grpc_address)
    try:
        inputs, sent = [], {}
        for datatype in ALL:
            name = f"in_{datatype}"
            sent[name] = sample(datatype)
            tensor = grpcclient.InferInput(name, list(sent[name].shape), datatype)
            tensor.set_data_from_numpy(sent[name])
            inputs.append(tensor)
        result = client.infer("echo", inputs, parameters={"tag": "x", "n": 2})
        for datatype in ALL:
            assert_same(result.as_numpy(f"in_{datatype}"), sent[f"in_{datatype}"], datatype)
        response = result.get_response()
        assert response.parameters["tag"].string_param == "x"
        assert response.parameters["n"].int64_param == 2
    finally:
        client.close()


def test_grpc_typed_contents(echo: ModelServer) -> None:
    """Inputs in ``contents`` (not raw), as other OIP clients send them."""
    from tritonclient.grpc import service_pb2

    assert echo.grpc_address is not None
    client = grpcclient.InferenceServerClient(echo.grpc_address)
    try:
        request = service_pb2.ModelInferRequest(model_name="echo")
        cases = {
            "BOOL": ("bool_contents", [True, False]),
            "INT8": ("int_contents", [-128, 127]),
            "INT32": ("int_contents", [-5, 7]),
            "INT64": ("int64_contents", [-(2**40), 2**40]),
            "UINT16": ("uint_contents", [0, 65535]),
            "UINT64": ("uint64_contents", [0, 2**63]),
            "FP32": ("fp32_contents", [0.5, -2.0]),
            "FP64": ("fp64_contents", [1e-300, 3.0]),
            "BYTES": ("bytes_contents", [b"x", b"yz"]),
        }
        for datatype, (field, values) in cases.items():
            tensor = request.inputs.add(name=datatype, datatype=datatype, shape=[2])
            getattr(tensor.contents, field).extend(values)
        response = client._client_stub.ModelInfer(request)
        for index, output in enumerate(response.outputs):
            datatype = output.datatype
            got = datatypes.from_bytes(
                output.name, datatype, list(output.shape), response.raw_output_contents[index]
            )
            assert (
                got.tolist() == cases[datatype][1]
                or datatype == "FP32"
                and np.allclose(got, cases[datatype][1])
            )
    finally:
        client.close()


def test_codec_rejects_inconsistent_data() -> None:
    with pytest.raises(InvalidInput, match="needs 8 bytes"):
        datatypes.from_bytes("x", "INT32", [2], b"\x00" * 7)
    with pytest.raises(InvalidInput, match="truncated"):
        datatypes.from_bytes("x", "BYTES", [1], b"\x01\x00")
    with pytest.raises(InvalidInput, match="overruns"):
        datatypes.from_bytes("x", "BYTES", [1], b"\x09\x00\x00\x00abc")
    with pytest.raises(InvalidInput, match="negative"):
        datatypes.from_json("x", "FP32", [-1, 2], [1, 2])


def test_bf16_is_the_upper_half_of_fp32() -> None:
    values = np.array([1.0, -2.5, 3.140625], dtype=np.float32)
    raw = datatypes.to_bytes(values, "BF16")
    assert len(raw) == 6
    np.testing.assert_array_equal(datatypes.from_bytes("x", "BF16", [3], raw), values)
    assert raw == np.array(values, dtype=ml_dtypes.bfloat16).tobytes()
