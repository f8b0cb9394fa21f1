"""The InferenceService spec (``serving.kserve.io/v1beta1``) as typed models with
KServe's field names.

Only what runs locally is interpreted; every other field is kept as is. The
predictor names its model by framework key (``sklearn``, ``xgboost``,
``lightgbm``, ``onnx``, ``pytorch``) or by ``model.modelFormat.name`` and a
``storageUri``. What a component of the spec runs is read from these models in
:mod:`ketch.serving.components`; the apply-time checks are in
:mod:`ketch.serving.validation`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from ketch.core.spec import SpecModel
from ketch.core.spec import parse as parse_model

#: the frameworks Ketch has a local runtime for, as KServe names the predictor keys
FRAMEWORKS = ("sklearn", "xgboost", "lightgbm", "onnx", "pytorch")
#: names a transformer class (``FILE.py:Class``) in the annotations
TRANSFORMER_ANNOTATION = "serving.ketch.dev/transformer"
#: names a transformer class in a transformer container's args
TRANSFORMER_ARG = "--ketch-transformer"
#: Knative's scale-down window
WINDOW_ANNOTATION = "autoscaling.knative.dev/window"


class LoggerSpec(SpecModel):
    url: str | None = None
    mode: Literal["all", "request", "response"] = "all"


class ModelFormat(SpecModel):
    name: str
    version: str | None = None


class ModelSpec(SpecModel):
    modelFormat: ModelFormat
    storageUri: str | None = None
    protocolVersion: Literal["v1", "v2"] | None = None
    runtime: str | None = None


class FrameworkSpec(SpecModel):
    storageUri: str | None = None
    protocolVersion: Literal["v1", "v2"] | None = None
    runtimeVersion: str | None = None


class Container(SpecModel):
    name: str | None = None
    image: str | None = None
    command: list[str] = Field(default_factory=list)
    args: list[str] = Field(default_factory=list)
    env: list[dict[str, Any]] = Field(default_factory=list)


class ComponentSpec(SpecModel):
    minReplicas: int | None = Field(default=None, ge=0)
    maxReplicas: int | None = Field(default=None, ge=0)
    containerConcurrency: int | None = Field(default=None, ge=0)
    scaleTarget: int | None = Field(default=None, ge=1)
    scaleMetric: Literal["concurrency", "rps", "cpu", "memory"] | None = None
    canaryTrafficPercent: int | None = Field(default=None, ge=0, le=100)
    logger: LoggerSpec | None = None
    timeout: int | None = Field(default=None, ge=1)  # seconds a request may take
    containers: list[Container] = Field(default_factory=list)


class PredictorSpec(ComponentSpec):
    sklearn: FrameworkSpec | None = None
    xgboost: FrameworkSpec | None = None
    lightgbm: FrameworkSpec | None = None
    onnx: FrameworkSpec | None = None
    pytorch: FrameworkSpec | None = None
    model: ModelSpec | None = None

    def frameworks(self) -> dict[str, FrameworkSpec]:
        """The framework keys that are set (``sklearn``, ...), in :data:`FRAMEWORKS` order."""
        named = {
            "sklearn": self.sklearn,
            "xgboost": self.xgboost,
            "lightgbm": self.lightgbm,
            "onnx": self.onnx,
            "pytorch": self.pytorch,
        }
        return {key: value for key, value in named.items() if value is not None}


class TransformerSpec(ComponentSpec):
    pass


class InferenceServiceSpec(SpecModel):
    predictor: PredictorSpec
    transformer: TransformerSpec | None = None


def parse(spec: Any) -> InferenceServiceSpec:
    """``spec`` as an :class:`InferenceServiceSpec`; ``InvalidSpec`` names the field
    (``spec.predictor.containers[0].image``)."""
    return parse_model(InferenceServiceSpec, spec)


def parse_predictor(predictor: Any) -> PredictorSpec:
    """A predictor spec (a revision's stored record) as a :class:`PredictorSpec`."""
    return parse_model(PredictorSpec, predictor, "spec.predictor")
