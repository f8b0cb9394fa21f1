"""XGBoost, LightGBM, ONNX and TorchScript models trained here on tiny data, then served."""

from __future__ import annotations

import warnings
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.serving.conftest import Iris, serving


def infer(url: str, name: str, rows: np.ndarray, **extra: object) -> dict[str, object]:
    body = {
        "inputs": [
            {
                "name": "input-0",
                "datatype": "FP32",
                "shape": list(rows.shape),
                "data": rows.astype(np.float32).ravel().tolist(),
            }
        ],
        **extra,
    }
    response = httpx.post(f"{url}/v2/models/{name}/infer", json=body)
    assert response.status_code == 200, response.text
    doc: dict[str, object] = response.json()
    return doc


def outputs(doc: dict[str, object]) -> dict[str, np.ndarray]:
    return {
        o["name"]: np.reshape(o["data"], o["shape"])  # type: ignore[index]
        for o in doc["outputs"]  # type: ignore[union-attr]
    }


def test_xgboost(iris: Iris, tmp_path: Path) -> None:
    xgb = pytest.importorskip("xgboost")
    y = np.array([0] * 50 + [1] * 50 + [2] * 50)
    booster = xgb.XGBClassifier(n_estimators=8, max_depth=2).fit(iris.X, y)
    folder = tmp_path / "xgb"
    folder.mkdir()
    booster.save_model(folder / "model.json")
    rows = iris.X[::20].astype(np.float32)
    with serving(folder, grpc=False) as server:
        meta = httpx.get(f"{server.url}/v2/models/xgb").json()
        assert meta["platform"] == "xgboost" and meta["inputs"][0]["shape"] == [-1, 4]
        got = outputs(infer(server.url, "xgb", rows))["predict"]
        np.testing.assert_array_equal(got, booster.predict(rows))
        proba = outputs(infer(server.url, "xgb", rows, parameters={"method": "predict_proba"}))
        np.testing.assert_allclose(proba["predict_proba"], booster.predict_proba(rows), rtol=1e-5)


def test_lightgbm(iris: Iris, tmp_path: Path) -> None:
    lgb = pytest.importorskip("lightgbm")
    y = np.array([0] * 50 + [1] * 50 + [2] * 50)
    model = lgb.LGBMClassifier(n_estimators=10, num_leaves=4, min_child_samples=5, verbose=-1)
    model.fit(iris.X, y)
    folder = tmp_path / "lgb"
    folder.mkdir()
    model.booster_.save_model(str(folder / "model.txt"))
    rows = iris.X[::20]
    with serving(folder, grpc=False) as server:
        got = outputs(infer(server.url, "lgb", rows))["predict"]
        np.testing.assert_array_equal(got, model.predict(rows.astype(np.float32)))
        proba = outputs(infer(server.url, "lgb", rows, outputs=[{"name": "predict_proba"}]))
        np.testing.assert_allclose(
            proba["predict_proba"], model.predict_proba(rows.astype(np.float32)), rtol=1e-6
        )


def test_onnx_from_sklearn(iris: Iris, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    skl2onnx = pytest.importorskip("skl2onnx")
    from skl2onnx.common.data_types import FloatTensorType

    onx = skl2onnx.convert_sklearn(
        iris.model,
        initial_types=[("float_input", FloatTensorType([None, 4]))],
        options={id(iris.model): {"zipmap": False}},
    )
    folder = tmp_path / "onnx"
    folder.mkdir()
    (folder / "model.onnx").write_bytes(onx.SerializeToString())
    rows = iris.X[::10].astype(np.float32)
    with serving(folder, grpc=False) as server:
        meta = httpx.get(f"{server.url}/v2/models/onnx").json()
        assert meta["inputs"] == [{"name": "float_input", "datatype": "FP32", "shape": [-1, 4]}]
        got = outputs(infer(server.url, "onnx", rows))
        np.testing.assert_array_equal(got["label"], iris.model.predict(rows))
        np.testing.assert_allclose(got["probabilities"], iris.model.predict_proba(rows), atol=1e-5)
        v1 = httpx.post(f"{server.url}/v1/models/onnx:predict", json={"instances": rows.tolist()})
        assert v1.json()["predictions"] == iris.model.predict(rows).tolist()


def test_torchscript(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch", reason="the PyTorch runtime needs torch installed")
    warnings.filterwarnings("ignore", category=DeprecationWarning, module="torch")
    module = torch.nn.Linear(3, 2)
    with torch.no_grad():
        module.weight.copy_(torch.tensor([[1.0, 0.0, 2.0], [0.0, -1.0, 0.5]]))
        module.bias.copy_(torch.tensor([0.5, 0.0]))
    folder = tmp_path / "linear"
    folder.mkdir()
    torch.jit.save(torch.jit.script(module), str(folder / "model.pt"))
    rows = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]], dtype=np.float32)
    with serving(folder, grpc=False) as server:
        got = outputs(infer(server.url, "linear", rows))["output-0"]
        expected = rows @ np.array([[1.0, 0.0, 2.0], [0.0, -1.0, 0.5]]).T + [0.5, 0.0]
        np.testing.assert_allclose(got, expected, rtol=1e-6)
