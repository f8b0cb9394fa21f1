"""Custom models: a Python file that defines a subclass of :class:`ketch.serving.Model`."""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import sys
from pathlib import Path
from typing import Any

from ketch.serving.errors import InvalidSpec
from ketch.serving.model import ArrayModel, Model


def _module_file(path: Path) -> Path:
    if path.is_file():
        return path
    preferred = path / "model.py"
    if preferred.is_file():
        return preferred
    found = sorted(p for p in path.glob("*.py") if not p.name.startswith("_"))
    if len(found) != 1:
        raise InvalidSpec(f"{path}: name the custom model's file model.py")
    return found[0]


def model_classes(file: Path) -> list[type[Model]]:
    """The Model subclasses defined in ``file`` (imported as a fresh module)."""
    digest = hashlib.sha256(str(file.resolve()).encode()).hexdigest()[:12]
    module_name = f"ketch_custom_model_{digest}"
    spec = importlib.util.spec_from_file_location(module_name, file)
    if spec is None or spec.loader is None:
        raise InvalidSpec(f"cannot import {file}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    folder = str(file.parent)
    added = folder not in sys.path
    if added:
        sys.path.insert(0, folder)
    try:
        spec.loader.exec_module(module)
    finally:
        if added:
            sys.path.remove(folder)
    return [
        value
        for value in vars(module).values()
        if inspect.isclass(value)
        and issubclass(value, Model)
        and value not in (Model, ArrayModel)
        and value.__module__ == module_name
    ]


def load_custom_model(
    name: str, path: Path, settings: dict[str, Any], predictor_url: str | None
) -> Model:
    file = _module_file(path)
    classes = model_classes(file)
    wanted = settings.get("model_class")
    if wanted:
        classes = [c for c in classes if c.__name__ == wanted]
        if not classes:
            raise InvalidSpec(f"{file} defines no Model subclass named {wanted!r}")
    if not classes:
        raise InvalidSpec(f"{file} defines no subclass of ketch.serving.Model")
    if len(classes) > 1:
        names = ", ".join(c.__name__ for c in classes)
        raise InvalidSpec(f"{file} defines several models ({names}); pick one with --model-class")
    model = classes[0](name)
    if predictor_url:
        model.predictor_url = predictor_url.rstrip("/")
    model.model_dir = path if path.is_dir() else path.parent
    model.settings = {**model.settings, **settings}
    if settings.get("predictor_name"):
        model.predictor_name = str(settings["predictor_name"])
    return model
