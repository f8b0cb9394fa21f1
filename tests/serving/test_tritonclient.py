"""The real tritonclient (HTTP and gRPC) against a sklearn iris model and a repository."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from ketch.serving.server import ModelServer
from tests.serving.conftest import Iris, serving

httpclient = pytest.importorskip("tritonclient.http")
grpcclient = pytest.importorskip("tritonclient.grpc")
from tritonclient.utils import InferenceServerException  # noqa: E402


@pytest.fixture(scope="module")
def server(iris: Iris) -> Iterator[ModelServer]:
    with serving(iris.folder) as server:
        yield server


@pytest.fixture
def http(server: ModelServer) -> Iterator[object]:
    client = httpclient.InferenceServerClient(server.url.removeprefix("http://"))
    yield client
    client.close()


@pytest.fixture
def grpc(server: ModelServer) -> Iterator[object]:
    assert server.grpc_address is not None
    client = grpcclient.InferenceServerClient(server.grpc_address)
    yield client
    client.close()


@pytest.mark.parametrize("binary", [True, False])
def test_http_infer_matches_sklearn(http: object, iris: Iris, binary: bool) -> None:
    rows = iris.X[::7]
    tensor = httpclient.InferInput("input-0", list(rows.shape), "FP64")
    tensor.set_data_from_numpy(rows, binary_data=binary)
    outputs = [
        httpclient.InferRequestedOutput("predict", binary_data=binary),
    ]
    result = http.infer("iris", [tensor], outputs=outputs, request_id="abc")  # type: ignore[attr-defined]
    np.testing.assert_array_equal(result.as_numpy("predict"), iris.model.predict(rows))
    assert result.get_response()["id"] == "abc"
    proba = http.infer(  # type: ignore[attr-defined]
        "iris",
        [tensor],
        outputs=[httpclient.InferRequestedOutput("predict_proba", binary_data=binary)],
    )
    np.testing.assert_allclose(proba.as_numpy("predict_proba"), iris.model.predict_proba(rows))


def test_http_health_metadata_and_errors(http: object) -> None:
    assert http.is_server_live() and http.is_server_ready()  # type: ignore[attr-defined]
    assert http.is_model_ready("iris")  # type: ignore[attr-defined]
    assert not http.is_model_ready("nope")  # type: ignore[attr-defined]
    meta = http.get_model_metadata("iris")  # type: ignore[attr-defined]
    assert meta["inputs"][0]["shape"] == [-1, 4]
    assert http.get_server_metadata()["name"] == "ketch"  # type: ignore[attr-defined]
    tensor = httpclient.InferInput("input-0", [1, 3], "FP64")
    tensor.set_data_from_numpy(np.ones((1, 3)))
    with pytest.raises(InferenceServerException, match="cannot predict"):
        http.infer("iris", [tensor])  # type: ignore[attr-defined]


def test_grpc_infer_matches_sklearn(grpc: object, iris: Iris) -> None:
    rows = iris.X[1::9].astype(np.float32)
    tensor = grpcclient.InferInput("input-0", list(rows.shape), "FP32")
    tensor.set_data_from_numpy(rows)
    result = grpc.infer("iris", [tensor], request_id="g1")  # type: ignore[attr-defined]
    np.testing.assert_array_equal(result.as_numpy("predict"), iris.model.predict(rows))
    assert result.get_response().id == "g1"
    proba = grpc.infer(  # type: ignore[attr-defined]
        "iris", [tensor], outputs=[grpcclient.InferRequestedOutput("predict_proba")]
    )
    np.testing.assert_allclose(proba.as_numpy("predict_proba"), iris.model.predict_proba(rows))


def test_grpc_health_metadata_and_errors(grpc: object) -> None:
    assert grpc.is_server_live() and grpc.is_server_ready()  # type: ignore[attr-defined]
    assert grpc.is_model_ready("iris")  # type: ignore[attr-defined]
    meta = grpc.get_model_metadata("iris", as_json=True)  # type: ignore[attr-defined]
    assert meta["platform"] == "sklearn"
    assert grpc.get_server_metadata(as_json=True)["name"] == "ketch"  # type: ignore[attr-defined]
    tensor = grpcclient.InferInput("input-0", [1, 4], "FP64")
    tensor.set_data_from_numpy(np.ones((1, 4)))
    with pytest.raises(InferenceServerException, match="not served"):
        grpc.infer("nope", [tensor])  # type: ignore[attr-defined]
    bad = grpcclient.InferInput("input-0", [1, 3], "FP64")
    bad.set_data_from_numpy(np.ones((1, 3)))
    with pytest.raises(InferenceServerException) as info:
        grpc.infer("iris", [bad])  # type: ignore[attr-defined]
    assert "INVALID_ARGUMENT" in str(info.value.status())


def test_repository_load_unload_with_both_clients(iris: Iris, tmp_path: Path) -> None:
    import shutil

    repo = tmp_path / "repo"
    shutil.copytree(iris.folder, repo / "first")
    shutil.copytree(iris.folder, repo / "second")
    with serving(repo) as server:
        assert server.grpc_address is not None
        h = httpclient.InferenceServerClient(server.url.removeprefix("http://"))
        g = grpcclient.InferenceServerClient(server.grpc_address)
        try:
            index = {m["name"]: m["state"] for m in h.get_model_repository_index()}
            assert index == {"first": "READY", "second": "READY"}
            h.unload_model("first")
            assert not h.is_model_ready("first")
            assert h.is_model_ready("second")
            g.load_model("first")
            assert g.is_model_ready("first")
            g.unload_model("second")
            states = {m.name: m.state for m in g.get_model_repository_index().models}
            assert states == {"first": "READY", "second": "UNLOADED"}
            shutil.copytree(iris.folder, repo / "third")  # added while serving
            h.load_model("third")
            assert h.is_model_ready("third")
            with pytest.raises(InferenceServerException):
                h.load_model("missing")
        finally:
            h.close()
            g.close()
