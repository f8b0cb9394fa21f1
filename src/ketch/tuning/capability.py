"""The tuning capability: Katib's Experiments, Trials and Suggestions, and the
endpoint trials push their metrics to."""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import TYPE_CHECKING

from ketch.core.capability import Admission, Capability, Validator
from ketch.core.kinds import Column, Kind
from ketch.core.spec import model_schema
from ketch.tuning import suggestions
from ketch.tuning.controller import controllers
from ketch.tuning.spec import ExperimentSpec
from ketch.tuning.validation import validate_experiment, validate_trial

if TYPE_CHECKING:
    from fastapi import APIRouter

# Katib's CRDs: the last condition's type and status, then Age.
_CONDITION = (
    Column("Type", ".status.conditions[-1:].type"),
    Column("Status", ".status.conditions[-1:].status"),
)
_CATEGORIES = ("all", "kubeflow", "katib")

KINDS: tuple[Kind, ...] = (
    Kind(
        "Experiment",
        "kubeflow.org",
        ("v1beta1",),
        "experiments",
        columns=_CONDITION,
        categories=_CATEGORIES,
        spec_schema=model_schema(ExperimentSpec),
    ),
    Kind(
        "Trial", "kubeflow.org", ("v1beta1",), "trials", columns=_CONDITION, categories=_CATEGORIES
    ),
    Kind(
        suggestions.KIND,
        "kubeflow.org",
        ("v1beta1",),
        "suggestions",
        columns=(
            *_CONDITION,
            Column("Requested", ".spec.requests"),
            Column("Assigned", ".status.suggestionCount"),
        ),
        categories=_CATEGORIES,
    ),
)


def _validators(admission: Admission) -> Mapping[str, Validator]:
    # An experiment's trial template (and a trial's runSpec) is checked as the job it
    # makes, by that job kind's own validator.
    return {
        "Experiment": partial(validate_experiment, admission=admission),
        "Trial": partial(validate_trial, admission=admission),
        suggestions.KIND: suggestions.validate,
    }


def _push_router() -> APIRouter:
    from ketch.tuning.api import router

    return router


CAPABILITY = Capability(
    name="tuning",
    kinds=KINDS,
    controllers=(controllers,),
    validators=_validators,
    routers=(_push_router,),
)
