"""What the array runtimes share: locating the model file, stacking inputs as columns."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ketch.serving.errors import InvalidInput, InvalidSpec
from ketch.serving.model import ArrayModel
from ketch.serving.types import ModelMetadata, TensorSpec


def model_file(path: Path, suffixes: tuple[str, ...]) -> Path:
    """``path`` itself, or the one file in folder ``path`` with one of ``suffixes``."""
    if path.is_file():
        return path
    found = sorted(p for p in path.iterdir() if p.is_file() and p.name.lower().endswith(suffixes))
    if not found:
        raise InvalidSpec(f"no {'/'.join(suffixes)} model file in {path}")
    preferred = [p for p in found if p.name.lower().startswith("model")]
    if len(found) > 1 and len(preferred) != 1:
        names = ", ".join(p.name for p in found)
        raise InvalidSpec(f"several model files in {path} ({names}); keep one or name it model.*")
    return preferred[0] if len(found) > 1 else found[0]


def as_matrix(inputs: dict[str, np.ndarray]) -> np.ndarray:
    """One input as is; several inputs as the columns of one matrix, in input order."""
    if len(inputs) == 1:
        return next(iter(inputs.values()))
    arrays = list(inputs.values())
    rows = arrays[0].shape[0] if arrays[0].ndim else 1
    try:
        return np.hstack([np.asarray(a).reshape(rows, -1) for a in arrays])
    except ValueError as exc:
        raise InvalidInput(f"inputs cannot be combined column-wise: {exc}") from None


class FileArrayModel(ArrayModel):
    """An array model loaded from a file by a runtime."""

    suffixes: tuple[str, ...] = ()

    def __init__(
        self,
        name: str,
        path: Path,
        settings: dict[str, Any] | None = None,
        predictor_url: str | None = None,
    ) -> None:
        super().__init__(name, predictor_url)
        self.path = path
        self.model_dir = path if path.is_dir() else path.parent
        self.settings = dict(settings or {})


class BoosterModel(FileArrayModel):
    """A gradient-boosted trees booster (XGBoost, LightGBM): labels or probabilities."""

    float_type = "FP64"
    methods: tuple[str, ...] = ("predict",)

    def _predict_raw(self, matrix: np.ndarray) -> Any:
        raise NotImplementedError

    def _num_features(self) -> int:
        raise NotImplementedError

    def _set_methods(self, classifier: bool) -> None:
        self.methods = ("predict", "predict_proba") if classifier else ("predict",)
        self.ready = True

    def infer_arrays(self, inputs: dict[str, np.ndarray], method: str) -> dict[str, np.ndarray]:
        raw = np.asarray(self._predict_raw(as_matrix(inputs)))
        if method == "predict_proba" or self.methods == ("predict",):
            return {method: raw}
        if raw.ndim == 2:  # class probabilities: the label is the most likely class
            return {method: raw.argmax(axis=1)}
        return {method: (raw > 0.5).astype(np.int64)}  # binary: probability of class 1

    def metadata(self) -> ModelMetadata:
        return ModelMetadata(
            platform=self.platform,
            inputs=[TensorSpec("input-0", self.float_type, (-1, self._num_features()))],
            outputs=[
                TensorSpec(m, self.float_type if m == "predict_proba" else "INT64", (-1,))
                for m in self.methods
            ],
        )
