"""The Open Inference Protocol over REST, with plain HTTP (httpx)."""

from __future__ import annotations

import gzip
import struct
from collections.abc import Iterator

import httpx
import numpy as np
import orjson
import pytest

from ketch.serving.server import ModelServer
from tests.serving.conftest import MODELS, Iris, serving


@pytest.fixture(scope="module")
def server(iris: Iris) -> Iterator[ModelServer]:
    root = iris.folder.parent
    with serving(root / "iris", grpc=False) as server:
        yield server


@pytest.fixture(scope="module")
def http(server: ModelServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


def infer_body(rows: np.ndarray, **extra: object) -> dict[str, object]:
    return {
        "inputs": [
            {
                "name": "x",
                "datatype": "FP64",
                "shape": list(rows.shape),
                "data": rows.ravel().tolist(),
            }
        ],
        **extra,
    }


def test_server_metadata_and_health(http: httpx.Client) -> None:
    meta = http.get("/v2").json()
    assert meta["name"] == "ketch"
    assert "binary_tensor_data" in meta["extensions"]
    assert "model_repository" in meta["extensions"]
    assert http.get("/v2/health/live").status_code == 200
    ready = http.get("/v2/health/ready")
    assert ready.status_code == 200 and ready.json() == {"ready": True}


def test_model_metadata_has_variable_batch_dimension(http: httpx.Client) -> None:
    meta = http.get("/v2/models/iris").json()
    assert meta["name"] == "iris"
    assert meta["platform"] == "sklearn"
    assert meta["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": [-1, 4]}]
    assert {"name": "predict", "datatype": "INT64", "shape": [-1]} in meta["outputs"]
    assert http.get("/v2/models/iris/ready").json() == {"name": "iris", "ready": True}
    assert http.get("/v2/models/iris/versions/1/ready").status_code == 200


def test_infer_equals_in_process_predict(http: httpx.Client, iris: Iris) -> None:
    rows = iris.X[::10]
    # No Content-Type header at all, as tritonclient sends it.
    response = http.post(
        "/v2/models/iris/infer", content=orjson.dumps(infer_body(rows, id="req-7"))
    )
    assert response.status_code == 200, response.text
    doc = response.json()
    assert doc["model_name"] == "iris" and doc["id"] == "req-7"
    (output,) = doc["outputs"]
    assert output["name"] == "predict" and output["datatype"] == "INT64"
    assert output["shape"] == [len(rows)]
    assert output["data"] == iris.model.predict(rows).tolist()


def test_infer_with_version_and_nested_data(http: httpx.Client, iris: Iris) -> None:
    rows = iris.X[:3]
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [3, 4], "data": rows.tolist()}]}
    response = http.post("/v2/models/iris/versions/1/infer", json=body)
    assert response.status_code == 200, response.text
    assert (
        response.json()["outputs"][0]["data"]
        == iris.model.predict(rows.astype(np.float32)).tolist()
    )


def test_predict_proba_by_parameter_or_requested_output(http: httpx.Client, iris: Iris) -> None:
    rows = iris.X[:2]
    expected = iris.model.predict_proba(rows)
    by_parameter = http.post(
        "/v2/models/iris/infer", json=infer_body(rows, parameters={"method": "predict_proba"})
    ).json()
    by_output = http.post(
        "/v2/models/iris/infer", json=infer_body(rows, outputs=[{"name": "predict_proba"}])
    ).json()
    for doc in (by_parameter, by_output):
        (output,) = doc["outputs"]
        assert output["name"] == "predict_proba" and output["shape"] == [2, 3]
        np.testing.assert_allclose(np.reshape(output["data"], (2, 3)), expected)


def test_binary_input_and_output(http: httpx.Client, iris: Iris) -> None:
    rows = np.ascontiguousarray(iris.X[:5], dtype="<f8")
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "datatype": "FP64",
                    "shape": [5, 4],
                    "parameters": {"binary_data_size": rows.nbytes},
                }
            ],
            "outputs": [{"name": "predict", "parameters": {"binary_data": True}}],
        }
    )
    response = http.post(
        "/v2/models/iris/infer",
        content=header + rows.tobytes(),
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    assert response.status_code == 200, response.text
    length = int(response.headers["inference-header-content-length"])
    doc = orjson.loads(response.content[:length])
    (output,) = doc["outputs"]
    assert output["parameters"]["binary_data_size"] == 5 * 8
    values = np.frombuffer(response.content[length:], dtype="<i8")
    assert values.tolist() == iris.model.predict(rows).tolist()


def test_gzip_request_body(http: httpx.Client, iris: Iris) -> None:
    body = gzip.compress(orjson.dumps(infer_body(iris.X[:1])))
    response = http.post(
        "/v2/models/iris/infer", content=body, headers={"Content-Encoding": "gzip"}
    )
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"not json", "not valid JSON"),
        (b"[]", "JSON object"),
        (b'{"inputs": []}', "non-empty"),
        (
            b'{"inputs": [{"name": "x", "datatype": "FP64", "shape": [1, 4], "data": [1, 2]}]}',
            "needs 4 elements",
        ),
        (
            b'{"inputs": [{"name": "x", "datatype": "FP99", "shape": [1], "data": [1]}]}',
            "unknown datatype",
        ),
        (b'{"inputs": [{"name": "x", "datatype": "FP64", "shape": "1x4", "data": [1]}]}', "shape"),
        (
            b'{"inputs": [{"name": "x", "datatype": "INT32", "shape": [1], "data": ["a"]}]}',
            "does not fit",
        ),
        (
            b'{"inputs": [{"name": "x", "datatype": "FP64", "shape": [1, 3], "data": [1, 2, 3]}]}',
            "cannot predict",
        ),
        (
            b'{"inputs": [{"name": "x", "datatype": "FP64", "shape": [1, 4], "data": [1, 2, 3, 4]}], "outputs": [{"name": "nope"}]}',
            "no output 'nope'",
        ),
        (
            b'{"inputs": [{"name": "x", "datatype": "FP64", "shape": [1, 4], "data": [1, 2, 3, 4]}], "parameters": {"method": "fit"}}',
            "no method 'fit'",
        ),
    ],
)
def test_bad_requests_answer_400_with_error(http: httpx.Client, body: bytes, fragment: str) -> None:
    response = http.post("/v2/models/iris/infer", content=body)
    assert response.status_code == 400, response.text
    assert fragment in response.json()["error"]


def test_binary_size_mismatch_is_400(http: httpx.Client) -> None:
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "datatype": "FP64",
                    "shape": [1, 4],
                    "parameters": {"binary_data_size": 32},
                }
            ]
        }
    )
    response = http.post(
        "/v2/models/iris/infer",
        content=header + struct.pack("<3d", 1, 2, 3),
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    assert response.status_code == 400
    assert "binary_data_size" in response.json()["error"]
    response = http.post(
        "/v2/models/iris/infer", content=header, headers={"Inference-Header-Content-Length": "999"}
    )
    assert response.status_code == 400


def test_unknown_model_route_and_version_are_404(http: httpx.Client) -> None:
    for method, path in [
        ("GET", "/v2/models/nope"),
        ("GET", "/v2/models/nope/ready"),
        ("POST", "/v2/models/nope/infer"),
        ("POST", "/v2/models/iris/versions/7/infer"),
        ("GET", "/v2/nothing"),
    ]:
        response = http.request(method, path, content=b'{"inputs": []}')
        assert response.status_code == 404, (path, response.text)
        assert "error" in response.json()
    assert http.delete("/v2/models/iris").status_code == 405


def test_custom_model_parameters_round_trip(tmp_path: object) -> None:
    with serving(MODELS / "echo.py", grpc=False, name="echo") as server:
        body = {
            "id": "1",
            "parameters": {"temperature": 0.5, "tag": "a", "flag": True, "count": 3},
            "inputs": [{"name": "t", "datatype": "BYTES", "shape": [2], "data": ["hi", "ü"]}],
        }
        doc = httpx.post(f"{server.url}/v2/models/echo/infer", json=body).json()
        assert doc["parameters"] == body["parameters"]
        assert doc["outputs"][0]["data"] == ["hi", "ü"]
        assert doc["outputs"][0]["datatype"] == "BYTES"
