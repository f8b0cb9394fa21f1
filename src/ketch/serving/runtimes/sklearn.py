"""scikit-learn models (and anything with ``predict``) saved with joblib or pickle."""

from __future__ import annotations

from typing import Any

import numpy as np

from ketch.serving.runtimes.base import FileArrayModel, as_matrix, model_file
from ketch.serving.types import ModelMetadata, TensorSpec

_METHODS = ("predict", "predict_proba", "predict_log_proba", "decision_function", "transform")


class SKLearnModel(FileArrayModel):
    platform = "sklearn"
    suffixes = (".joblib", ".pkl", ".pickle")

    def load(self) -> bool:
        import joblib

        self._estimator: Any = joblib.load(model_file(self.path, self.suffixes))
        self.methods = tuple(m for m in _METHODS if hasattr(self._estimator, m))
        self.ready = True
        return True

    def infer_arrays(self, inputs: dict[str, np.ndarray], method: str) -> dict[str, np.ndarray]:
        result = getattr(self._estimator, method)(as_matrix(inputs))
        return {method: np.asarray(result)}

    def metadata(self) -> ModelMetadata:
        features = getattr(self._estimator, "n_features_in_", None)
        shape = (-1, int(features)) if features else (-1, -1)
        outputs = []
        classes = getattr(self._estimator, "classes_", None)
        if classes is not None:
            from ketch.serving.datatypes import datatype_of

            outputs.append(TensorSpec("predict", datatype_of(np.asarray(classes)), (-1,)))
            if "predict_proba" in self.methods:
                outputs.append(TensorSpec("predict_proba", "FP64", (-1, len(classes))))
        return ModelMetadata(
            platform=self.platform, inputs=[TensorSpec("input-0", "FP64", shape)], outputs=outputs
        )
