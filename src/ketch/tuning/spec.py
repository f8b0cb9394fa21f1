"""The typed spec of a Katib ``kubeflow.org/v1beta1`` Experiment, with Katib's field names.

:func:`parse_experiment` validates a manifest's ``spec`` the way Katib's validating
webhook does and applies the defaults of its mutating webhook:

- ``parallelTrialCount``: 3 (Ketch: never more than ``maxTrialCount``, which Katib
  would otherwise reject);
- ``resumePolicy``: ``Never``;
- ``objective.metricStrategies``: each objective metric not listed gets ``min`` when
  its objective minimizes and ``max`` when it maximizes; each additional metric gets
  ``min``/``max`` after the primary objective's type, as Katib's webhook does;
- ``parameters[].feasibleSpace.distribution``: ``uniform``;
- ``metricsCollectorSpec``: ``StdOut``; a ``File`` collector reads
  ``/var/log/katib/metrics.log`` (``TEXT``), a ``TensorFlowEvent`` collector the
  directory ``/var/log/katib/tfevent/``, a ``PrometheusMetric`` collector
  ``/metrics`` on port 8080;
- ``trialTemplate``: Katib's ``successCondition``/``failureCondition`` and
  ``primaryPodLabels`` for a batch ``Job``, the Kubeflow training jobs and
  ``TrainJob`` (Ketch also knows ``JAXJob``, ``PaddleJob`` and ``MXJob``).

Not supported locally, with an error that says what to do: ``nasConfig`` (neural
architecture search), ``trialTemplate.configMap`` (put the template inline in
``trialTemplate.trialSpec``), trial jobs of kinds other than :data:`TRIAL_KINDS`
(an Argo ``Workflow``, a ``Pod``, …) and, through :func:`check_runnable`, the
``Custom`` and ``PrometheusMetric`` metrics collectors (sidecar containers).

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

import json
import math
import re
from collections.abc import Mapping
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ketch.core.errors import InvalidSpec
from ketch.core.resource import DNS_1035_LABEL

ObjectiveType = Literal["minimize", "maximize"]
MetricStrategyType = Literal["min", "max", "latest"]
ParameterType = Literal["double", "int", "discrete", "categorical"]
Distribution = Literal["uniform", "logUniform", "normal", "logNormal"]
CollectorKind = Literal[
    "StdOut", "File", "TensorFlowEvent", "PrometheusMetric", "Custom", "None", "Push"
]
ResumePolicy = Literal["Never", "LongRunning", "FromVolume"]

DEFAULT_PARALLEL_TRIAL_COUNT = 3
DEFAULT_FILE_PATH = "/var/log/katib/metrics.log"
DEFAULT_TFEVENT_DIR = "/var/log/katib/tfevent/"
DEFAULT_PROMETHEUS_PATH = "/metrics"
DEFAULT_PROMETHEUS_PORT = 8080

_JOB_CONDITIONS = (
    'status.conditions.#(type=="Complete")#|#(status=="True")#',
    'status.conditions.#(type=="Failed")#|#(status=="True")#',
)
_KUBEFLOW_CONDITIONS = (
    'status.conditions.#(type=="Succeeded")#|#(status=="True")#',
    'status.conditions.#(type=="Failed")#|#(status=="True")#',
)
_KUBEFLOW_JOB_KINDS = (
    "TFJob",
    "PyTorchJob",
    "XGBoostJob",
    "MPIJob",
    "JAXJob",
    "PaddleJob",
    "MXJob",
)
_KUBEFLOW_PRIMARY_POD_LABELS = {"training.kubeflow.org/job-role": "master"}
_TRAINJOB_PRIMARY_POD_LABELS = {
    "jobset.sigs.k8s.io/replicatedjob-name": "node",
    "batch.kubernetes.io/job-completion-index": "0",
}
#: the job kinds a trial may run on Ketch, with the apiVersion each is served at
TRIAL_KINDS: dict[str, str] = {
    "Job": "batch/v1",
    **{kind: "kubeflow.org/v1" for kind in _KUBEFLOW_JOB_KINDS},
    "TrainJob": "trainer.kubeflow.org/v1alpha1",
}
#: metrics collectors Katib knows that need a sidecar container Ketch cannot run
UNRUNNABLE_COLLECTORS = ("Custom", "PrometheusMetric")
_PARAM_PLACEHOLDER = re.compile(r"\$\{trialParameters\.(.+?)\}")
_META_REFERENCE = re.compile(
    r"^\$\{trialSpec\.(Name|Namespace|Kind|APIVersion|(?:Labels|Annotations)\[.+\])\}$"
)
_INT = re.compile(r"^[+-]?\d+$")
_Texts = list[str]  # FeasibleSpace has a field named ``list``


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


def _as_text(value: Any) -> Any:
    """Katib's quantities are strings; accept the numbers YAML makes of them."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return repr(value) if isinstance(value, float) else str(value)
    return value


# -- objective ------------------------------------------------------------------------


class MetricStrategy(_Model):
    name: str
    value: MetricStrategyType


class ObjectiveTarget(_Model):
    """One objective of a multi-objective experiment (Ketch extension)."""

    objectiveMetricName: str
    type: ObjectiveType


class ObjectiveSpec(_Model):
    type: ObjectiveType | None = None
    goal: float | None = None
    objectiveMetricName: str | None = None
    additionalMetricNames: list[str] = Field(default_factory=list)
    metricStrategies: list[MetricStrategy] = Field(default_factory=list)
    objectives: list[ObjectiveTarget] = Field(default_factory=list)


# -- algorithm and early stopping ------------------------------------------------------


class AlgorithmSetting(_Model):
    name: str
    value: str = ""

    @field_validator("value", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        return _as_text(value)


class AlgorithmSpec(_Model):
    algorithmName: str = ""
    algorithmSettings: list[AlgorithmSetting] = Field(default_factory=list)

    def settings(self) -> dict[str, str]:
        """``{name: value}`` of the settings (the last one wins for a repeated name)."""
        return {s.name: s.value for s in self.algorithmSettings}


class EarlyStoppingSpec(AlgorithmSpec):
    """Same shape as :class:`AlgorithmSpec` (``algorithmName``, ``algorithmSettings``)."""


# -- parameters -----------------------------------------------------------------------


class FeasibleSpace(_Model):
    min: str | None = None
    max: str | None = None
    step: str | None = None
    list: _Texts | None = None
    distribution: Distribution = "uniform"

    @field_validator("min", "max", "step", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        return _as_text(value)

    @field_validator("list", mode="before")
    @classmethod
    def _texts(cls, value: Any) -> Any:
        if isinstance(value, (tuple, list)):
            return [_as_text(v) for v in value]
        return value

    @field_validator("distribution", mode="before")
    @classmethod
    def _default_distribution(cls, value: Any) -> Any:
        return "uniform" if value in (None, "") else value


class ParameterSpec(_Model):
    name: str
    parameterType: ParameterType
    feasibleSpace: FeasibleSpace = Field(default_factory=FeasibleSpace)

    # numeric bounds (double and int); valid after parse_experiment
    @property
    def low(self) -> float:
        return float(self.feasibleSpace.min or 0)

    @property
    def high(self) -> float:
        return float(self.feasibleSpace.max or 0)

    @property
    def step(self) -> float | None:
        """The step of a numeric parameter (an int parameter's default step is 1)."""
        raw = self.feasibleSpace.step
        if raw not in (None, ""):
            return float(raw)
        return 1.0 if self.parameterType == "int" else None

    @property
    def choices(self) -> list[str]:
        return list(self.feasibleSpace.list or [])

    @property
    def distribution(self) -> Distribution:
        return self.feasibleSpace.distribution

    def coerce(self, value: str) -> Any:
        """The typed value of an assignment (Katib stores ``parameterAssignments`` as text):
        ``int`` for int, ``float`` for double, ``int``/``float`` for discrete, ``str`` for
        categorical. Raises ``ValueError`` when the text does not fit the type."""
        text = str(value).strip()
        if self.parameterType == "int":
            number = float(text)
            if not number.is_integer():
                raise ValueError(f"parameter {self.name!r} is an int; got {value!r}")
            return int(number)
        if self.parameterType == "double":
            return float(text)
        if self.parameterType == "discrete":
            return _number(text)
        return str(value)

    def format(self, value: Any) -> str:
        """The text Katib stores for ``value``: ints as ``"3"``, doubles round-trip exact
        (``repr``), a discrete value as it is written in ``feasibleSpace.list``."""
        if self.parameterType == "int":
            return str(int(value))
        if self.parameterType == "double":
            return repr(float(value))
        if self.parameterType == "discrete":
            for entry in self.choices:
                if _number(entry) == value:
                    return entry
            return repr(value) if isinstance(value, float) else str(value)
        return str(value)

    def sample_value(self) -> Any:
        """One value from the feasible space (its lower bound, or its first choice):
        what stands in for a suggestion when a trial template is checked."""
        if self.parameterType in ("categorical", "discrete"):
            return self.coerce(self.choices[0]) if self.choices else ""
        return int(self.low) if self.parameterType == "int" else self.low

    def contains(self, value: Any) -> bool:
        """Whether ``value`` (typed) lies in the feasible space."""
        if self.parameterType in ("categorical", "discrete"):
            return any(self.coerce(entry) == value for entry in self.choices)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.parameterType == "int" and not float(value).is_integer():
            return False
        tolerance = 1e-9 * max(1.0, abs(self.low), abs(self.high))
        return self.low - tolerance <= value <= self.high + tolerance


def _number(text: str) -> int | float:
    return int(text) if _INT.match(text.strip()) else float(text)


# -- trial template and metrics collector -------------------------------------------------


class TrialParameterSpec(_Model):
    name: str = ""
    description: str | None = None
    reference: str = ""


class ConfigMapSource(_Model):
    configMapName: str | None = None
    configMapNamespace: str | None = None
    templatePath: str | None = None


class TrialTemplate(_Model):
    retain: bool = False
    trialSpec: dict[str, Any] | None = None
    configMap: ConfigMapSource | None = None
    trialParameters: list[TrialParameterSpec] = Field(default_factory=list)
    primaryPodLabels: dict[str, str] = Field(default_factory=dict)
    primaryContainerName: str | None = None
    successCondition: str | None = None
    failureCondition: str | None = None


class FileSystemPath(_Model):
    path: str | None = None
    kind: Literal["File", "Directory"] | None = None
    format: Literal["TEXT", "JSON"] | None = None


class FilterSpec(_Model):
    metricsFormat: list[str] = Field(default_factory=list)


class HttpGetAction(_Model):
    path: str | None = None
    port: int | str | None = None
    host: str | None = None
    scheme: str | None = None


class SourceSpec(_Model):
    httpGet: HttpGetAction | None = None
    fileSystemPath: FileSystemPath | None = None
    filter: FilterSpec | None = None


class CollectorSpec(_Model):
    kind: CollectorKind = "StdOut"
    customCollector: dict[str, Any] | None = None


class MetricsCollectorSpec(_Model):
    source: SourceSpec | None = None
    collector: CollectorSpec = Field(default_factory=CollectorSpec)


# -- the experiment -------------------------------------------------------------------


class ExperimentSpec(_Model):
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
        raise InvalidSpec(_pydantic_message(first), field=_path(first["loc"])) from None
    _check_counts(model, spec)
    _check_objective(model)
    _check_algorithm_names(model)
    _check_parameters(model)
    _check_trial_template(model)
    _check_metrics_collector(model)
    return model


_REQUIRED_HINTS = {
    "objective": "an objective (type and objectiveMetricName)",
    "algorithm": "an algorithm (algorithmName, e.g. random or tpe)",
    "trialTemplate": "a trial template (trialSpec and trialParameters)",
}


def _path(loc: tuple[Any, ...]) -> str:
    text = "spec"
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text


def _pydantic_message(error: Mapping[str, Any]) -> str:
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


def _check_parameters(model: ExperimentSpec) -> None:
    if not model.parameters:
        raise InvalidSpec(
            "at least one parameter is required (name, parameterType, feasibleSpace)",
            field="spec.parameters",
        )
    seen: set[str] = set()
    for index, parameter in enumerate(model.parameters):
        where = f"spec.parameters[{index}]"
        if not parameter.name:
            raise InvalidSpec("is required", field=f"{where}.name")
        if parameter.name in seen:
            raise InvalidSpec(
                f"parameter {parameter.name!r} is defined twice", field=f"{where}.name"
            )
        seen.add(parameter.name)
        if parameter.parameterType in ("double", "int"):
            _check_numeric(parameter, f"{where}.feasibleSpace")
        else:
            _check_listed(parameter, f"{where}.feasibleSpace")


def _check_numeric(parameter: ParameterSpec, where: str) -> None:
    space = parameter.feasibleSpace
    kind = parameter.parameterType
    if space.list:
        raise InvalidSpec(
            f"feasibleSpace.list is not supported for parameterType {kind}; give min and max",
            field=f"{where}.list",
        )
    bounds: dict[str, float] = {}
    for key in ("min", "max"):
        text = getattr(space, key)
        if text in (None, ""):
            raise InvalidSpec(
                f"is required for parameterType {kind} (feasibleSpace.min and max)",
                field=f"{where}.{key}",
            )
        try:
            bounds[key] = float(text)
        except ValueError:
            raise InvalidSpec(f"{text!r} is not a number", field=f"{where}.{key}") from None
        if not math.isfinite(bounds[key]):
            raise InvalidSpec(f"{text!r} must be a finite number", field=f"{where}.{key}")
        if kind == "int" and not bounds[key].is_integer():
            raise InvalidSpec(f"{text!r} is not an integer", field=f"{where}.{key}")
    if bounds["min"] > bounds["max"]:
        raise InvalidSpec(f"max {space.max} is less than min {space.min}", field=f"{where}.max")
    if space.step not in (None, ""):
        try:
            step = float(space.step)
        except ValueError:
            raise InvalidSpec(f"{space.step!r} is not a number", field=f"{where}.step") from None
        if not step > 0 or not math.isfinite(step):
            raise InvalidSpec("must be greater than 0", field=f"{where}.step")
        if kind == "int" and not step.is_integer():
            raise InvalidSpec(f"{space.step!r} is not an integer", field=f"{where}.step")
    if space.distribution in ("logUniform", "logNormal") and bounds["min"] <= 0:
        raise InvalidSpec(
            f"a {space.distribution} parameter needs min > 0 (got {space.min})",
            field=f"{where}.min",
        )


def _check_listed(parameter: ParameterSpec, where: str) -> None:
    space = parameter.feasibleSpace
    kind = parameter.parameterType
    for key in ("min", "max", "step"):
        if getattr(space, key) not in (None, ""):
            raise InvalidSpec(
                f"feasibleSpace.{key} is not supported for parameterType {kind}; "
                "give the values in feasibleSpace.list",
                field=f"{where}.{key}",
            )
    if not space.list:
        raise InvalidSpec(
            f"is required for parameterType {kind} (the values to choose from)",
            field=f"{where}.list",
        )
    if len(set(space.list)) != len(space.list):
        raise InvalidSpec("has a value listed twice", field=f"{where}.list")
    if kind == "discrete":
        for index, entry in enumerate(space.list):
            try:
                value = _number(entry)
            except ValueError:
                raise InvalidSpec(
                    f"{entry!r} is not a number; use parameterType categorical for text values",
                    field=f"{where}.list[{index}]",
                ) from None
            if not math.isfinite(value):
                raise InvalidSpec(f"{entry!r} must be finite", field=f"{where}.list[{index}]")


def _check_trial_template(model: ExperimentSpec) -> None:
    template = model.trialTemplate
    where = "spec.trialTemplate"
    if template.configMap is not None and template.trialSpec:
        raise InvalidSpec(
            "give either trialSpec or configMap, not both",
            field=f"{where}.configMap",
        )
    if template.configMap is not None:
        source = template.configMap
        named = f" {source.configMapName!r}" if source.configMapName else ""
        raise InvalidSpec(
            f"Ketch cannot read trial templates from ConfigMaps (ConfigMap{named}"
            f"{', path ' + repr(source.templatePath) if source.templatePath else ''}); "
            "put the template inline in spec.trialTemplate.trialSpec",
            field=f"{where}.configMap",
        )
    if not template.trialSpec:
        raise InvalidSpec(
            "is required (the job manifest each trial runs)", field=f"{where}.trialSpec"
        )
    trial_spec = template.trialSpec
    if not trial_spec.get("apiVersion") or not trial_spec.get("kind"):
        raise InvalidSpec(
            "apiVersion and kind of the trial's job are required", field=f"{where}.trialSpec"
        )
    check_trial_kind(trial_spec, f"{where}.trialSpec")
    metadata = trial_spec.get("metadata") or {}
    if isinstance(metadata, dict) and (metadata.get("name") or metadata.get("namespace")):
        raise InvalidSpec(
            "metadata.name and metadata.namespace must be omitted (each trial names its job)",
            field=f"{where}.trialSpec.metadata",
        )
    text = json.dumps(trial_spec)
    names = {p.name for p in model.parameters}
    declared: set[str] = set()
    references: set[str] = set()
    for index, entry in enumerate(template.trialParameters):
        at = f"{where}.trialParameters[{index}]"
        if not entry.name or "{" in entry.name or "}" in entry.name:
            raise InvalidSpec(
                "name is required and must not contain '{' or '}'", field=f"{at}.name"
            )
        if not entry.reference:
            raise InvalidSpec(
                "is required (a parameter name or a ${trialSpec.…} reference)",
                field=f"{at}.reference",
            )
        if entry.name in declared:
            raise InvalidSpec(
                f"trial parameter {entry.name!r} is declared twice", field=f"{at}.name"
            )
        if entry.reference in references:
            raise InvalidSpec(
                f"reference {entry.reference!r} is used twice", field=f"{at}.reference"
            )
        declared.add(entry.name)
        references.add(entry.reference)
        if entry.reference not in names and not _META_REFERENCE.match(entry.reference):
            raise InvalidSpec(
                f"reference {entry.reference!r} is neither a parameter in spec.parameters "
                f"({', '.join(sorted(names))}) nor a ${{trialSpec.Name}}-style reference",
                field=f"{at}.reference",
            )
        if "${trialParameters." + entry.name + "}" not in text:
            raise InvalidSpec(
                f"${{trialParameters.{entry.name}}} is not used in spec.trialTemplate.trialSpec",
                field=f"{at}.name",
            )
    for used in _PARAM_PLACEHOLDER.findall(text):
        if used not in declared:
            raise InvalidSpec(
                f"${{trialParameters.{used}}} is used in the trial spec but not declared in "
                "spec.trialTemplate.trialParameters",
                field=f"{where}.trialParameters",
            )
    kind = str(trial_spec.get("kind"))
    if kind == "Job":
        defaults, labels = _JOB_CONDITIONS, {}
    elif kind == "TrainJob":
        defaults, labels = _JOB_CONDITIONS, _TRAINJOB_PRIMARY_POD_LABELS
    elif kind in _KUBEFLOW_JOB_KINDS:
        defaults, labels = _KUBEFLOW_CONDITIONS, _KUBEFLOW_PRIMARY_POD_LABELS
    else:
        return
    template.successCondition = template.successCondition or defaults[0]
    template.failureCondition = template.failureCondition or defaults[1]
    if not template.primaryPodLabels:
        template.primaryPodLabels = dict(labels)


def check_trial_kind(trial_spec: dict[str, Any], where: str) -> None:
    """Refuse a trial job of a kind Ketch does not run (an Argo Workflow, a Pod, a
    custom resource): its trials would never start."""
    kind, api_version = str(trial_spec.get("kind")), str(trial_spec.get("apiVersion"))
    supported = ", ".join(f"{k} ({v})" for k, v in TRIAL_KINDS.items())
    expected = TRIAL_KINDS.get(kind)
    if expected is None:
        what = "an Argo Workflow" if kind == "Workflow" else f"kind {kind!r} ({api_version})"
        raise InvalidSpec(
            f"Ketch cannot run trials as {what}; the trial's job must be one of: {supported}",
            field=f"{where}.kind",
        )
    if api_version != expected:
        raise InvalidSpec(
            f"{kind} is served at {expected}, not {api_version!r}", field=f"{where}.apiVersion"
        )


def check_runnable(model: ExperimentSpec) -> None:
    """Refuse what Katib accepts but Ketch cannot run: metrics collectors that are
    sidecar containers (``Custom``, ``PrometheusMetric``)."""
    kind = model.metricsCollectorSpec.collector.kind
    if kind in UNRUNNABLE_COLLECTORS:
        runnable = ", ".join(k for k in get_args(CollectorKind) if k not in UNRUNNABLE_COLLECTORS)
        raise InvalidSpec(
            f"the {kind} metrics collector runs a sidecar container, which Ketch cannot run; "
            f"use one of {runnable} (Push: call ketch.tuning.report_metrics in the trial)",
            field="spec.metricsCollectorSpec.collector.kind",
        )


def _check_metrics_collector(model: ExperimentSpec) -> None:
    spec = model.metricsCollectorSpec
    kind = spec.collector.kind
    where = "spec.metricsCollectorSpec"
    if kind == "PrometheusMetric":
        source = spec.source = spec.source or SourceSpec()
        http = source.httpGet = source.httpGet or HttpGetAction()
        http.path = http.path or DEFAULT_PROMETHEUS_PATH
        http.port = http.port or DEFAULT_PROMETHEUS_PORT
        try:
            port = int(http.port)
        except (TypeError, ValueError):
            port = 0
        if port <= 0:
            raise InvalidSpec("must be a positive integer", field=f"{where}.source.httpGet.port")
        if not http.path.startswith("/"):
            raise InvalidSpec("must start with '/'", field=f"{where}.source.httpGet.path")
    elif kind in ("File", "TensorFlowEvent"):
        source = spec.source = spec.source or SourceSpec()
        fs = source.fileSystemPath = source.fileSystemPath or FileSystemPath()
        at = f"{where}.source.fileSystemPath"
        if kind == "File":
            fs.kind = fs.kind or "File"
            fs.path = fs.path or DEFAULT_FILE_PATH
            fs.format = fs.format or "TEXT"
            if fs.kind != "File":
                raise InvalidSpec("must be File for a File collector", field=f"{at}.kind")
            if fs.format == "JSON" and source.filter is not None:
                raise InvalidSpec(
                    "a filter does not apply to JSON metrics files; remove it",
                    field=f"{where}.source.filter",
                )
        else:
            fs.kind = fs.kind or "Directory"
            fs.path = fs.path or DEFAULT_TFEVENT_DIR
            if fs.kind != "Directory":
                raise InvalidSpec(
                    "must be Directory for a TensorFlowEvent collector", field=f"{at}.kind"
                )
            if fs.format is not None:
                raise InvalidSpec(
                    "must be empty for a TensorFlowEvent collector", field=f"{at}.format"
                )
        if not fs.path.startswith("/"):
            raise InvalidSpec(f"{fs.path!r} must be an absolute path", field=f"{at}.path")
    elif kind == "Custom":
        if not spec.collector.customCollector:
            raise InvalidSpec(
                "a Custom collector needs collector.customCollector (a container)",
                field=f"{where}.collector.customCollector",
            )
        custom_fs = spec.source.fileSystemPath if spec.source else None
        if custom_fs is not None and (
            not (custom_fs.path or "").startswith("/") or custom_fs.kind is None
        ):
            raise InvalidSpec(
                "needs an absolute path and kind File or Directory",
                field=f"{where}.source.fileSystemPath",
            )
    filters = spec.source.filter.metricsFormat if spec.source and spec.source.filter else []
    for index, pattern in enumerate(filters):
        at = f"{where}.source.filter.metricsFormat[{index}]"
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            raise InvalidSpec(f"{pattern!r} is not a regular expression: {exc}", field=at) from None
        if compiled.groups < 2:
            raise InvalidSpec(
                f"{pattern!r} needs two groups: the metric name, then its value", field=at
            )
