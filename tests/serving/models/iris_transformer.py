"""A transformer: named iris features in, rows to the predictor, class names out."""

from __future__ import annotations

from typing import Any

from ketch.serving import InferRequest, Model

FEATURES = ("sepal_length", "sepal_width", "petal_length", "petal_width")
NAMES = ("setosa", "versicolor", "virginica")


class IrisTransformer(Model):
    def load(self) -> bool:
        self.ready = True
        return True

    async def preprocess(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        if isinstance(payload, InferRequest):  # V2 goes to the predictor as is
            return payload
        return {"instances": [[row[f] for f in FEATURES] for row in payload["instances"]]}

    def postprocess(self, result: Any, headers: dict[str, str] | None = None) -> Any:
        if not isinstance(result, dict):
            return result
        return {"predictions": [NAMES[i] for i in result["predictions"]]}
