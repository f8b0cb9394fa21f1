"""XGBoost boosters saved with ``save_model`` (.json, .ubj, .bst)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from ketch.serving.runtimes.base import FileArrayModel, as_matrix, model_file
from ketch.serving.types import ModelMetadata, TensorSpec


class XGBoostModel(FileArrayModel):
    platform = "xgboost"
    suffixes = (".json", ".ubj", ".bst", ".model")

    def load(self) -> bool:
        import xgboost as xgb

        self._booster: Any = xgb.Booster()
        self._booster.load_model(str(model_file(self.path, self.suffixes)))
        config = json.loads(self._booster.save_config())
        self.objective = str(config["learner"]["objective"]["name"])
        classifier = self.objective.startswith(("binary:logistic", "multi:softprob"))
        self.methods = ("predict", "predict_proba") if classifier else ("predict",)
        self.ready = True
        return True

    def infer_arrays(self, inputs: dict[str, np.ndarray], method: str) -> dict[str, np.ndarray]:
        raw = np.asarray(self._booster.inplace_predict(as_matrix(inputs)))
        if method == "predict_proba" or self.methods == ("predict",):
            return {method: raw}
        if raw.ndim == 2:
            return {method: raw.argmax(axis=1)}
        return {method: (raw > 0.5).astype(np.int64)}

    def metadata(self) -> ModelMetadata:
        features = self._booster.num_features()
        return ModelMetadata(
            platform=self.platform,
            inputs=[TensorSpec("input-0", "FP32", (-1, int(features)))],
            outputs=[
                TensorSpec(m, "FP32" if m == "predict_proba" else "INT64", (-1,))
                for m in self.methods
            ],
        )
