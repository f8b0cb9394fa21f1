"""LightGBM boosters saved with ``save_model`` (text format, model.txt)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ketch.serving.runtimes.base import FileArrayModel, as_matrix, model_file
from ketch.serving.types import ModelMetadata, TensorSpec


class LightGBMModel(FileArrayModel):
    platform = "lightgbm"
    suffixes = (".txt", ".lgb", ".lightgbm")

    def load(self) -> bool:
        import lightgbm as lgb

        file = model_file(self.path, self.suffixes)
        self._booster: Any = lgb.Booster(model_file=str(file))
        self.objective = ""
        with file.open() as handle:
            for line in handle:
                if line.startswith("objective="):
                    self.objective = line.split("=", 1)[1].strip()
                    break
        classifier = self.objective.startswith(("binary", "multiclass"))
        self.methods = ("predict", "predict_proba") if classifier else ("predict",)
        self.ready = True
        return True

    def infer_arrays(self, inputs: dict[str, np.ndarray], method: str) -> dict[str, np.ndarray]:
        raw = np.asarray(self._booster.predict(as_matrix(inputs)))
        if method == "predict_proba" or self.methods == ("predict",):
            return {method: raw}
        if raw.ndim == 2:
            return {method: raw.argmax(axis=1)}
        return {method: (raw > 0.5).astype(np.int64)}

    def metadata(self) -> ModelMetadata:
        features = self._booster.num_feature()
        return ModelMetadata(
            platform=self.platform,
            inputs=[TensorSpec("input-0", "FP64", (-1, int(features)))],
            outputs=[
                TensorSpec(m, "FP64" if m == "predict_proba" else "INT64", (-1,))
                for m in self.methods
            ],
        )
