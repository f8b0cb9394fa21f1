"""Model serving: KServe's model server (V1, V2 REST and gRPC) with built-in runtimes.

``ketch serve MODEL`` serves a model file or folder; :class:`Model` is the base
class of custom models and transformers.
"""

from __future__ import annotations

from ketch.serving.errors import InvalidInput
from ketch.serving.model import ArrayModel, Model
from ketch.serving.types import InferRequest, InferResponse, ModelMetadata, Tensor, TensorSpec

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
