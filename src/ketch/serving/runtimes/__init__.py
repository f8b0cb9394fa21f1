"""Built-in model runtimes, imported only when a model of that format is loaded."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from ketch.serving.errors import InvalidSpec
from ketch.serving.model import Model

# format -> (module, class, the package a user must install)
RUNTIMES: dict[str, tuple[str, str, str]] = {
    "sklearn": ("ketch.serving.runtimes.sklearn", "SKLearnModel", "scikit-learn"),
    "xgboost": ("ketch.serving.runtimes.xgboost", "XGBoostModel", "xgboost"),
    "lightgbm": ("ketch.serving.runtimes.lightgbm", "LightGBMModel", "lightgbm"),
    "onnx": ("ketch.serving.runtimes.onnx", "ONNXModel", "onnxruntime"),
    "pytorch": ("ketch.serving.runtimes.pytorch", "TorchScriptModel", "torch"),
    "python": ("ketch.serving.runtimes.python", "load_custom_model", ""),
}

FORMATS = tuple(RUNTIMES)


def create_model(
    format: str,
    name: str,
    path: Path,
    settings: dict[str, Any],
    predictor_url: str | None = None,
) -> Model:
    """The (not yet loaded) model of ``format`` for the file or folder at ``path``."""
    try:
        module_name, attribute, package = RUNTIMES[format]
    except KeyError:
        raise InvalidSpec(
            f"unknown model format {format!r}; use one of {', '.join(FORMATS)}", field="--format"
        ) from None
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise InvalidSpec(
            f"serving a {format} model needs the {package!r} package ({exc})",
            hint=f"pip install {package}",
        ) from None
    factory = getattr(module, attribute)
    model: Model = factory(name, path, settings, predictor_url)
    return model
