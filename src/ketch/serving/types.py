"""The server's own view of a V2 inference request and response, protocol-neutral.

REST (JSON or binary) and gRPC requests decode into these; models see them; the
codecs encode them back. Tensor data is always a numpy array of the tensor's
shape (see :mod:`ketch.serving.datatypes` for BYTES and BF16).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ketch.serving.datatypes import datatype_of
from ketch.serving.errors import InvalidInput

Parameters = dict[str, Any]


@dataclass(slots=True)
class Tensor:
    """A named tensor: ``data`` is a numpy array of ``shape``."""

    name: str
    data: np.ndarray
    datatype: str = ""
    parameters: Parameters | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.data, np.ndarray):
            self.data = np.asarray(self.data)
        if not self.datatype:
            self.datatype = datatype_of(self.data)

    @property
    def shape(self) -> list[int]:
        return list(self.data.shape)

    def as_numpy(self) -> np.ndarray:
        return self.data


@dataclass(slots=True)
class RequestedOutput:
    name: str
    parameters: Parameters | None = None


@dataclass(slots=True)
class InferRequest:
    inputs: list[Tensor]
    id: str | None = None
    parameters: Parameters = field(default_factory=dict)
    outputs: list[RequestedOutput] | None = None
    model_name: str = ""
    model_version: str | None = None

    def input(self, name: str) -> Tensor:
        for tensor in self.inputs:
            if tensor.name == name:
                return tensor
        raise InvalidInput(f"the request has no input named {name!r}")


@dataclass(slots=True)
class InferResponse:
    model_name: str
    outputs: list[Tensor]
    id: str | None = None
    model_version: str | None = None
    parameters: Parameters | None = None

    def output(self, name: str) -> Tensor:
        for tensor in self.outputs:
            if tensor.name == name:
                return tensor
        raise KeyError(name)


@dataclass(slots=True, frozen=True)
class TensorSpec:
    """A tensor in model metadata; ``-1`` marks a variable dimension."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


@dataclass(slots=True)
class ModelMetadata:
    inputs: list[TensorSpec] = field(default_factory=list)
    outputs: list[TensorSpec] = field(default_factory=list)
    platform: str = ""
