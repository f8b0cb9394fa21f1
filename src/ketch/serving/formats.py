"""Which runtime serves a model: its ``--format``, its settings, or its files.

A model folder may hold ``model-settings.json`` (``{"format": ..., "method": ...,
"model_class": ..., "max_batch_size": ...}``), which wins over file inference.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ketch.serving.errors import InvalidSpec

SETTINGS_FILE = "model-settings.json"

_SUFFIXES: tuple[tuple[str, str], ...] = (
    (".joblib", "sklearn"),
    (".pkl", "sklearn"),
    (".pickle", "sklearn"),
    (".onnx", "onnx"),
    (".ubj", "xgboost"),
    (".bst", "xgboost"),
    (".pt", "pytorch"),
    (".pth", "pytorch"),
    (".torchscript", "pytorch"),
    (".lgb", "lightgbm"),
    (".py", "python"),
)


def read_settings(folder: Path) -> dict[str, Any]:
    file = folder / SETTINGS_FILE
    if not file.is_file():
        return {}
    try:
        settings = json.loads(file.read_text())
    except (OSError, ValueError) as exc:
        raise InvalidSpec(f"{file} is not valid JSON: {exc}") from None
    if not isinstance(settings, dict):
        raise InvalidSpec(f"{file} must hold a JSON object")
    return settings


def format_of_file(path: Path) -> str | None:
    name = path.name.lower()
    if name.startswith((".", "_")) or name == SETTINGS_FILE:
        return None
    for suffix, format in _SUFFIXES:
        if name.endswith(suffix):
            return format
    if name.endswith(".json"):
        return "xgboost" if _starts_with(path, b'{"learner"') else None
    if name.endswith(".txt"):
        return "lightgbm" if _starts_with(path, b"tree") else None
    return None


def _starts_with(path: Path, prefix: bytes) -> bool:
    try:
        with path.open("rb") as handle:
            head = handle.read(4096).lstrip()
    except OSError:
        return False
    return head.startswith(prefix) or (prefix.startswith(b"{") and b'"learner"' in head)


def infer_format(path: Path) -> str | None:
    """The format of the model at ``path`` (a file or a folder of model files)."""
    if path.is_file():
        return format_of_file(path)
    if not path.is_dir():
        return None
    formats = {f for p in path.iterdir() if p.is_file() and (f := format_of_file(p))}
    if "python" in formats:  # a custom model loads its own weights
        return "python"
    if len(formats) > 1:
        raise InvalidSpec(
            f"{path} holds models of several formats ({', '.join(sorted(formats))}); "
            "pass --format or add model-settings.json"
        )
    return formats.pop() if formats else None


def version_folders(path: Path) -> list[Path]:
    """Triton-style numbered version folders (``model/1/``, ``model/2/``), oldest first."""
    if not path.is_dir():
        return []
    return sorted(
        (p for p in path.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name)
    )
