"""LightGBM boosters saved with ``save_model`` (text format, model.txt)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ketch.serving.runtimes.base import BoosterModel, model_file


class LightGBMModel(BoosterModel):
    platform = "lightgbm"
    suffixes = (".txt", ".lgb", ".lightgbm")
    float_type = "FP64"

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
        self._set_methods(self.objective.startswith(("binary", "multiclass")))
        return True

    def _predict_raw(self, matrix: np.ndarray) -> Any:
        return self._booster.predict(matrix)

    def _num_features(self) -> int:
        return int(self._booster.num_feature())
