"""The V1 protocol, custom models and a transformer in front of a predictor."""

from __future__ import annotations

import httpx
import numpy as np

from tests.serving.conftest import MODELS, Iris, serving


def test_v1_list_status_predict(iris: Iris) -> None:
    with serving(iris.folder, grpc=False) as server:
        with httpx.Client(base_url=server.url) as http:
            assert http.get("/v1/models").json() == {"models": ["iris"]}
            assert http.get("/v1/models/iris").json() == {"name": "iris", "ready": True}
            rows = iris.X[::15]
            for key in ("instances", "inputs"):
                response = http.post("/v1/models/iris:predict", json={key: rows.tolist()})
                assert response.status_code == 200, response.text
                assert response.json() == {"predictions": iris.model.predict(rows).tolist()}
            proba = http.post(
                "/v1/models/iris:predict",
                json={"instances": rows.tolist(), "parameters": {"method": "predict_proba"}},
            ).json()["predictions"]
            np.testing.assert_allclose(proba, iris.model.predict_proba(rows))


def test_v1_errors(iris: Iris) -> None:
    with serving(iris.folder, grpc=False) as server:
        with httpx.Client(base_url=server.url) as http:
            explain = http.post("/v1/models/iris:explain", json={"instances": [[1, 2, 3, 4]]})
            assert explain.status_code == 501
            assert "no explainer" in explain.json()["error"]
            missing = http.post("/v1/models/nope:predict", json={"instances": [[1, 2, 3, 4]]})
            assert missing.status_code == 404 and "error" in missing.json()
            assert http.get("/v1/models/nope").status_code == 404
            for body in (
                b"{",
                b'{"rows": []}',
                b'{"instances": [[1, 2], [3]]}',
                b'{"instances": [[1, 2]]}',
            ):
                response = http.post("/v1/models/iris:predict", content=body)
                assert response.status_code == 400, (body, response.text)
                assert response.json()["error"]
            assert http.post("/v1/models/iris:train", json={}).status_code == 404


def test_custom_python_model_v1_gets_headers() -> None:
    with serving(MODELS / "echo.py", grpc=False, name="echo") as server:
        response = httpx.post(f"{server.url}/v1/models/echo:predict", json={"instances": [1, "a"]})
        assert response.json() == {"predictions": [1, "a"], "saw_headers": True}


def test_transformer_forwards_to_predictor(iris: Iris) -> None:
    with serving(iris.folder, grpc=False) as predictor:
        with serving(
            MODELS / "iris_transformer.py",
            grpc=False,
            name="iris",
            predictor_url=predictor.url,
        ) as transformer:
            rows = iris.X[[0, 60, 120]]
            features = ("sepal_length", "sepal_width", "petal_length", "petal_width")
            instances = [dict(zip(features, row.tolist(), strict=True)) for row in rows]
            response = httpx.post(
                f"{transformer.url}/v1/models/iris:predict", json={"instances": instances}
            )
            assert response.status_code == 200, response.text
            names = ["setosa", "versicolor", "virginica"]
            assert response.json() == {"predictions": [names[i] for i in iris.model.predict(rows)]}
            # V2 through the transformer: forwarded as a V2 request.
            body = {
                "inputs": [
                    {
                        "name": "x",
                        "datatype": "FP64",
                        "shape": [3, 4],
                        "data": rows.ravel().tolist(),
                    }
                ]
            }
            v2 = httpx.post(f"{transformer.url}/v2/models/iris/infer", json=body)
            assert v2.status_code == 200, v2.text
            assert v2.json()["outputs"][0]["data"] == iris.model.predict(rows).tolist()
