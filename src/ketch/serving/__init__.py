"""Model serving: KServe's model server (V1, V2 REST and gRPC) with built-in runtimes.

``ketch serve MODEL`` serves a model file or folder; :class:`Model` is the base
class of custom models and transformers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ketch.serving.errors import InvalidInput
    from ketch.serving.model import ArrayModel, Model
    from ketch.serving.types import InferRequest, InferResponse, ModelMetadata, Tensor, TensorSpec

# The names below are loaded on first use, so that importing ``ketch.serving.cli``
# (every ``ketch`` start builds the ``serve`` command) does not import numpy.
_HOMES = {
    "InvalidInput": "ketch.serving.errors",
    "ArrayModel": "ketch.serving.model",
    "Model": "ketch.serving.model",
    "InferRequest": "ketch.serving.types",
    "InferResponse": "ketch.serving.types",
    "ModelMetadata": "ketch.serving.types",
    "Tensor": "ketch.serving.types",
    "TensorSpec": "ketch.serving.types",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'ketch.serving' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(home), name)


__all__ = [
    "ArrayModel",
    "InferRequest",
    "InferResponse",
    "InvalidInput",
    "Model",
    "ModelMetadata",
    "Tensor",
    "TensorSpec",
]
