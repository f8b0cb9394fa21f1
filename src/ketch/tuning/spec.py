"""The typed spec of a Katib ``kubeflow.org/v1beta1`` Experiment, with Katib's field names.

This module holds the experiment as a whole (its objective, algorithm, counts);
the parts with rules of their own have their modules, named below.

:func:`parse_experiment` validates a manifest's ``spec`` the way Katib's validating
webhook does and applies the defaults of its mutating webhook:

- ``parallelTrialCount``: 3 (Ketch: never more than ``maxTrialCount``, which Katib
  would otherwise reject);
- ``resumePolicy``: ``Never``;
- ``objective.metricStrategies``: each objective metric not listed gets ``min`` when
  its objective minimizes and ``max`` when it maximizes; each additional metric gets
  ``min``/``max`` after the primary objective's type, as Katib's webhook does;
- ``parameters[].feasibleSpace.distribution``: ``uniform``
  (:mod:`ketch.tuning.parameters`);
- ``metricsCollectorSpec``: ``StdOut``; a ``File`` collector reads
  ``/var/log/katib/metrics.log`` (``TEXT``), a ``TensorFlowEvent`` collector the
  directory ``/var/log/katib/tfevent/``, a ``PrometheusMetric`` collector
  ``/metrics`` on port 8080 (:mod:`ketch.tuning.collector_spec`);
- ``trialTemplate``: Katib's ``successCondition``/``failureCondition`` and
  ``primaryPodLabels`` for a batch ``Job``, the Kubeflow training jobs and
  ``TrainJob`` (Ketch also knows ``JAXJob``, ``PaddleJob`` and ``MXJob``;
  :mod:`ketch.tuning.template`).

Not supported locally, with an error that says what to do: ``nasConfig`` (neural
architecture search), ``trialTemplate.configMap`` (put the template inline in
``trialTemplate.trialSpec``), trial jobs of kinds other than those of
:mod:`ketch.tuning.jobkinds` (an Argo ``Workflow``, a ``Pod``, …) and, through
:func:`ketch.tuning.collector_spec.check_runnable`, the ``Custom`` and
``PrometheusMetric`` metrics collectors (sidecar containers).

Multi-objective (a Ketch extension; Katib has one objective)::

    objective:
      type: minimize                   # the primary objective, as in Katib
      objectiveMetricName: loss
      objectives:                      # every objective, in order
        - {objectiveMetricName: loss, type: minimize}
        - {objectiveMetricName: latency, type: minimize}

``objective.objectives`` lists every objective; the primary one
(``objectiveMetricName``/``type``) is first and may be left out of the list (it is
put first) or, when ``objectiveMetricName`` is not set, is taken from the first
entry. A trial's values are reported in this order, ``goal`` applies to the
primary objective and the suggestion algorithm searches for the Pareto front.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator

from ketch.core.errors import InvalidSpec
from ketch.core.resource import DNS_1035_LABEL
from ketch.core.spec import SpecModel, field_path
from ketch.tuning.collector_spec import MetricsCollectorSpec, check_metrics_collector
from ketch.tuning.parameters import ParameterSpec, as_text, check_parameters
from ketch.tuning.template import TrialTemplate, check_trial_template

ObjectiveType = Literal["minimize", "maximize"]
MetricStrategyType = Literal["min", "max", "latest"]
ResumePolicy = Literal["Never", "LongRunning", "FromVolume"]

DEFAULT_PARALLEL_TRIAL_COUNT = 3


# -- objective ------------------------------------------------------------------------


class MetricStrategy(SpecModel):
    name: str
    value: MetricStrategyType


class ObjectiveTarget(SpecModel):
    """One objective of a multi-objective experiment (Ketch extension)."""

    objectiveMetricName: str
    type: ObjectiveType


class ObjectiveSpec(SpecModel):
    type: ObjectiveType | None = None
    goal: float | None = None
    objectiveMetricName: str | None = None
    additionalMetricNames: list[str] = Field(default_factory=list)
    metricStrategies: list[MetricStrategy] = Field(default_factory=list)
    objectives: list[ObjectiveTarget] = Field(default_factory=list)


# -- algorithm and early stopping ------------------------------------------------------


class AlgorithmSetting(SpecModel):
    name: str
    value: str = ""

    @field_validator("value", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        return as_text(value)


class AlgorithmSpec(SpecModel):
    algorithmName: str = ""
    algorithmSettings: list[AlgorithmSetting] = Field(default_factory=list)

    def settings(self) -> dict[str, str]:
        """``{name: value}`` of the settings (the last one wins for a repeated name)."""
        return {s.name: s.value for s in self.algorithmSettings}


class EarlyStoppingSpec(AlgorithmSpec):
    """Same shape as :class:`AlgorithmSpec` (``algorithmName``, ``algorithmSettings``)."""


# -- the experiment -------------------------------------------------------------------


class ExperimentSpec(SpecModel):
    parameters: list[ParameterSpec] = Field(default_factory=list)
    objective: ObjectiveSpec
    algorithm: AlgorithmSpec
    earlyStopping: EarlyStoppingSpec | None = None
    trialTemplate: TrialTemplate
    parallelTrialCount: int = DEFAULT_PARALLEL_TRIAL_COUNT
    maxTrialCount: int | None = None
    maxFailedTrialCount: int | None = None
    metricsCollectorSpec: MetricsCollectorSpec = Field(default_factory=MetricsCollectorSpec)
    resumePolicy: ResumePolicy = "Never"

    @property
    def objectives(self) -> list[ObjectiveTarget]:
        """Every objective, the primary first (one entry unless multi-objective)."""
        return list(self.objective.objectives)

    @property
    def multi_objective(self) -> bool:
        return len(self.objective.objectives) > 1

    @property
    def metric_names(self) -> list[str]:
        """The objective metric(s), then the additional metrics, each once."""
        names = [o.objectiveMetricName for o in self.objective.objectives]
        return list(dict.fromkeys([*names, *self.objective.additionalMetricNames]))

    def metric_strategy(self, name: str) -> MetricStrategyType:
        """How a trial's value of metric ``name`` is picked from its reports."""
        for strategy in self.objective.metricStrategies:
            if strategy.name == name:
                return strategy.value
        for target in self.objective.objectives:
            if target.objectiveMetricName == name:
                return "min" if target.type == "minimize" else "max"
        return "latest"

    def goal_reached(self, value: float) -> bool:
        """Whether the primary objective's ``value`` reaches ``objective.goal``."""
        goal = self.objective.goal
        if goal is None or value is None or math.isnan(value):
            return False
        return value >= goal if self.objective.type == "maximize" else value <= goal

    def parameter(self, name: str) -> ParameterSpec:
        for parameter in self.parameters:
            if parameter.name == name:
                return parameter
        raise KeyError(name)


def parse_experiment(
    spec: dict[str, Any], *, name: str, namespace: str = "default"
) -> ExperimentSpec:
    """Validate an Experiment's ``spec`` and apply Katib's webhook defaults.

    Raises :class:`InvalidSpec` naming the field (``spec.parameters[1].feasibleSpace.max``)
    and what to do. The search algorithm's settings are checked by
    :func:`ketch.tuning.algorithms.validate_algorithm`.
    """
    if not isinstance(spec, dict):
        raise InvalidSpec("an Experiment needs a spec (a mapping)", field="spec")
    _check_name(name)
    if spec.get("nasConfig") is not None:
        raise InvalidSpec(
            "neural architecture search is not supported by Ketch; "
            "search hyperparameters with spec.parameters instead",
            field="spec.nasConfig",
        )
    for required in ("objective", "algorithm", "trialTemplate"):
        if spec.get(required) is None:
            raise InvalidSpec(f"{_REQUIRED_HINTS[required]} is required", field=f"spec.{required}")
    data = dict(spec)
    for unset in ("parallelTrialCount", "resumePolicy", "metricsCollectorSpec", "earlyStopping"):
        if data.get(unset) in (None, ""):
            data.pop(unset, None)
    try:
        model = ExperimentSpec.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InvalidSpec(_problem(first), field=field_path(first["loc"], "spec")) from None
    _check_counts(model, spec)
    _check_objective(model)
    _check_algorithm_names(model)
    check_parameters(model.parameters)
    check_trial_template(model.trialTemplate, [p.name for p in model.parameters])
    check_metrics_collector(model.metricsCollectorSpec)
    return model


_REQUIRED_HINTS = {
    "objective": "an objective (type and objectiveMetricName)",
    "algorithm": "an algorithm (algorithmName, e.g. random or tpe)",
    "trialTemplate": "a trial template (trialSpec and trialParameters)",
}


def _problem(error: Mapping[str, Any]) -> str:
    """What pydantic found wrong, in Katib's words for a missing field."""
    if error.get("type") == "missing":
        return "is required"
    return str(error.get("msg", "is invalid"))


def _check_name(name: str) -> None:
    if not DNS_1035_LABEL.fullmatch(name or "") or len(name) > 40:
        raise InvalidSpec(
            f"experiment name {name!r} must be lower case letters, digits or '-', start with "
            "a letter, end with a letter or digit and be at most 40 characters",
            field="metadata.name",
        )


def _check_counts(model: ExperimentSpec, raw: dict[str, Any]) -> None:
    if model.maxTrialCount is not None and model.maxTrialCount <= 0:
        raise InvalidSpec("must be greater than 0", field="spec.maxTrialCount")
    if model.parallelTrialCount <= 0:
        raise InvalidSpec("must be greater than 0", field="spec.parallelTrialCount")
    if model.maxFailedTrialCount is not None and model.maxFailedTrialCount < 0:
        raise InvalidSpec("must not be less than 0", field="spec.maxFailedTrialCount")
    if model.maxTrialCount is not None:
        if (
            model.maxFailedTrialCount is not None
            and model.maxFailedTrialCount > model.maxTrialCount
        ):
            raise InvalidSpec(
                "must be less than or equal to spec.maxTrialCount",
                field="spec.maxFailedTrialCount",
            )
        if raw.get("parallelTrialCount") in (None, ""):
            model.parallelTrialCount = min(model.parallelTrialCount, model.maxTrialCount)
        elif model.parallelTrialCount > model.maxTrialCount:
            raise InvalidSpec(
                "must be less than or equal to spec.maxTrialCount",
                field="spec.parallelTrialCount",
            )


def _check_objective(model: ExperimentSpec) -> None:
    objective = model.objective
    field = "spec.objective"
    targets = list(objective.objectives)
    if targets:
        if not objective.objectiveMetricName:
            objective.objectiveMetricName = targets[0].objectiveMetricName
            objective.type = objective.type or targets[0].type
        primary = [t for t in targets if t.objectiveMetricName == objective.objectiveMetricName]
        if objective.type is None and primary:
            objective.type = primary[0].type
    if not objective.objectiveMetricName:
        raise InvalidSpec(
            "is required (the metric to optimize)", field=f"{field}.objectiveMetricName"
        )
    if objective.type is None:
        raise InvalidSpec("is required: minimize or maximize", field=f"{field}.type")
    seen: dict[str, ObjectiveType] = {}
    ordered = [
        ObjectiveTarget(objectiveMetricName=objective.objectiveMetricName, type=objective.type)
    ]
    for index, target in enumerate(targets):
        if target.objectiveMetricName == objective.objectiveMetricName:
            if target.type != objective.type:
                raise InvalidSpec(
                    f"objective {target.objectiveMetricName!r} is to {target.type} here but "
                    f"spec.objective.type is {objective.type}; make them agree",
                    field=f"{field}.objectives[{index}].type",
                )
            continue
        if target.objectiveMetricName in seen:
            raise InvalidSpec(
                f"objective {target.objectiveMetricName!r} is listed twice",
                field=f"{field}.objectives[{index}].objectiveMetricName",
            )
        seen[target.objectiveMetricName] = target.type
        ordered.append(target)
    objective.objectives = ordered
    names = {t.objectiveMetricName for t in ordered}
    for index, metric in enumerate(objective.additionalMetricNames):
        if metric in names:
            raise InvalidSpec(
                f"{metric!r} is an objective metric; list it only as an objective",
                field=f"{field}.additionalMetricNames[{index}]",
            )
    # Katib's mutating webhook: a strategy for every objective and additional metric.
    strategies = {s.name for s in objective.metricStrategies}
    for target in ordered:
        if target.objectiveMetricName not in strategies:
            value: MetricStrategyType = "min" if target.type == "minimize" else "max"
            objective.metricStrategies.append(
                MetricStrategy(name=target.objectiveMetricName, value=value)
            )
    for metric in objective.additionalMetricNames:
        if metric not in strategies:
            value = "min" if objective.type == "minimize" else "max"
            objective.metricStrategies.append(MetricStrategy(name=metric, value=value))


def _check_algorithm_names(model: ExperimentSpec) -> None:
    if not model.algorithm.algorithmName:
        raise InvalidSpec(
            "is required (e.g. random, tpe, grid, cmaes, bayesianoptimization, hyperband)",
            field="spec.algorithm.algorithmName",
        )
    if model.earlyStopping is not None and not model.earlyStopping.algorithmName:
        raise InvalidSpec(
            "is required (medianstop, successivehalving or hyperband)",
            field="spec.earlyStopping.algorithmName",
        )
