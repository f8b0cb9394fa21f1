"""The serving capability: KServe's InferenceService, reconciled into model servers
behind a router (InferenceGraph is known, and refused until Ketch runs it)."""

from __future__ import annotations

from collections.abc import Mapping

from ketch.core.capability import Admission, Capability, Validator
from ketch.core.kinds import Column, Kind
from ketch.core.spec import model_schema
from ketch.serving.controller import KIND, controller_factory
from ketch.serving.spec import InferenceServiceSpec
from ketch.serving.validation import validate, validate_inference_graph

_URL = Column("URL", ".status.url")
_READY = Column("Ready", ".status.conditions[?(@.type=='Ready')].status")
_PREV = ".status.components.predictor.traffic[?(@.tag=='prev')]"
_LATEST = ".status.components.predictor.traffic[?(@.latestRevision==true)]"

KINDS: tuple[Kind, ...] = (
    # KServe's CRD columns: the URL, Ready, the traffic split of a canary rollout.
    Kind(
        KIND,
        "serving.kserve.io",
        ("v1beta1",),
        "inferenceservices",
        short_names=("isvc",),
        columns=(
            _URL,
            _READY,
            Column("Prev", f"{_PREV}.percent", "integer"),
            Column("Latest", f"{_LATEST}.percent", "integer"),
            Column("PrevRolledoutRevision", f"{_PREV}.revisionName", priority=1),
            Column("LatestReadyRevision", f"{_LATEST}.revisionName", priority=1),
        ),
        categories=("all", "kserve"),
        spec_schema=model_schema(InferenceServiceSpec),
    ),
    # Known so that applying one says it cannot run yet (its validator refuses it).
    Kind(
        "InferenceGraph",
        "serving.kserve.io",
        ("v1alpha1",),
        "inferencegraphs",
        short_names=("ig",),
        columns=(_URL, _READY),
        categories=("all", "kserve"),
    ),
)


def _validators(_admission: Admission) -> Mapping[str, Validator]:
    return {KIND: validate, "InferenceGraph": validate_inference_graph}


CAPABILITY = Capability(
    name="serving", kinds=KINDS, controllers=(controller_factory,), validators=_validators
)
