"""XGBoost boosters saved with ``save_model`` (.json, .ubj, .bst)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from ketch.serving.runtimes.base import BoosterModel, model_file


class XGBoostModel(BoosterModel):
    platform = "xgboost"
    suffixes = (".json", ".ubj", ".bst", ".model")
    float_type = "FP32"

    def load(self) -> bool:
        import xgboost as xgb

        self._booster: Any = xgb.Booster()
        self._booster.load_model(str(model_file(self.path, self.suffixes)))
        config = json.loads(self._booster.save_config())
        self.objective = str(config["learner"]["objective"]["name"])
        self._set_methods(self.objective.startswith(("binary:logistic", "multi:softprob")))
        return True

    def _predict_raw(self, matrix: np.ndarray) -> Any:
        return self._booster.inplace_predict(matrix)

    def _num_features(self) -> int:
        return int(self._booster.num_features())
