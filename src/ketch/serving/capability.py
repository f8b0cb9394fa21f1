"""The serving capability: KServe's InferenceService, reconciled into model servers
behind a router (InferenceGraph is known, and refused until Ketch runs it)."""

from __future__ import annotations

from collections.abc import Mapping

from ketch.core.capability import Admission, Capability, Validator
from ketch.core.kinds import Kind
from ketch.serving.controller import KIND, controller_factory
from ketch.serving.validation import validate, validate_inference_graph

KINDS: tuple[Kind, ...] = (
    Kind(KIND, "serving.kserve.io", ("v1beta1",), "inferenceservices", short_names=("isvc",)),
    # Known so that applying one says it cannot run yet (its validator refuses it).
    Kind(
        "InferenceGraph", "serving.kserve.io", ("v1alpha1",), "inferencegraphs", short_names=("ig",)
    ),
)


def _validators(_admission: Admission) -> Mapping[str, Validator]:
    return {KIND: validate, "InferenceGraph": validate_inference_graph}


CAPABILITY = Capability(
    name="serving", kinds=KINDS, controllers=(controller_factory,), validators=_validators
)
