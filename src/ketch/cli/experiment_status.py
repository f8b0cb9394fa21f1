"""Reading Katib's Experiment and Trial status: states, objective values, durations.

Katib writes one condition per phase (``Created``, ``Running``, ``Succeeded`` …) and
flips ``Running`` to False when a run ends, so the state is the most decisive True
condition, not the newest. Metric values are strings in ``observation.metrics``
(``{name, min, max, latest}``); which of them counts is the metric's strategy:
``spec.objective.metricStrategies``, else Katib's defaults (the objective metric's
``max`` when maximizing, ``min`` when minimizing, ``latest`` for the others). Ketch's
multi-objective experiments list further objectives in ``spec.objective.objectives``
(``[{objectiveMetricName, type}]``); their metrics default like the primary one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ketch.core.conditions import Finished, get_condition, true_conditions
from ketch.core.timestamps import time_or_none

EXPERIMENT_LABEL = "katib.kubeflow.org/experiment"
EXPERIMENT_STATES = ("Failed", "Succeeded", "Restarting", "Running", "Created")
TRIAL_STATES = ("Killed", "Failed", "Succeeded", "EarlyStopped", "MetricsUnavailable", "Running")
FINISHED = (Finished.SUCCEEDED, Finished.FAILED)  # what ends an experiment
ACTIVE_TRIAL_STATES = ("Running", "Pending")
UNAVAILABLE = "unavailable"


def status_of(manifest: dict[str, Any]) -> dict[str, Any]:
    """``status`` of a manifest, ``{}`` when it has none."""
    status = manifest.get("status")
    return status if isinstance(status, dict) else {}


def spec_of(manifest: dict[str, Any]) -> dict[str, Any]:
    """``spec`` of a manifest, ``{}`` when it has none."""
    spec = manifest.get("spec")
    return spec if isinstance(spec, dict) else {}


def condition(manifest: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return get_condition(status_of(manifest), type_)


def _state(manifest: dict[str, Any], order: tuple[str, ...], default: str) -> str:
    true = {c.get("type") for c in true_conditions(status_of(manifest))}
    return next((type_ for type_ in order if type_ in true), default)


def experiment_state(experiment: dict[str, Any]) -> str:
    return _state(experiment, EXPERIMENT_STATES, "-")


def trial_state(trial: dict[str, Any]) -> str:
    """A trial's state; one that is not running yet is Pending, as Katib counts it."""
    return _state(trial, TRIAL_STATES, "Pending")


def short(text: Any) -> str:
    """A metric or parameter value for a table: numbers to 6 significant digits."""
    value = str(text)
    try:
        number = float(value)
    except ValueError:
        return value
    if number.is_integer() and abs(number) < 1e15 and "." not in value and "e" not in value.lower():
        return value
    return f"{number:.6g}"


def _number(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        number = float(text)
    except ValueError:
        return None
    return None if number != number else number  # NaN sorts nowhere


@dataclass(frozen=True)
class Objective:
    """``spec.objective`` of an Experiment (or its copy in a Trial)."""

    metric: str = ""
    type: str = ""
    goal: float | None = None
    additional: tuple[str, ...] = ()
    strategies: dict[str, str] = field(default_factory=dict)
    #: every objective's metric -> maximize|minimize, the primary first
    directions: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, manifest: dict[str, Any]) -> Objective:
        spec = spec_of(manifest).get("objective")
        if not isinstance(spec, dict):
            return cls()
        strategies = {
            str(s.get("name")): str(s.get("value"))
            for s in spec.get("metricStrategies") or []
            if isinstance(s, dict) and s.get("name") and s.get("value")
        }
        goal = spec.get("goal")
        metric, type_ = str(spec.get("objectiveMetricName") or ""), str(spec.get("type") or "")
        directions = {metric: type_} if metric else {}
        for extra in spec.get("objectives") or []:
            if isinstance(extra, dict) and extra.get("objectiveMetricName"):
                directions.setdefault(
                    str(extra["objectiveMetricName"]), str(extra.get("type") or "")
                )
        return cls(
            metric=metric,
            type=type_,
            goal=float(goal) if isinstance(goal, int | float) else None,
            additional=tuple(str(m) for m in spec.get("additionalMetricNames") or []),
            strategies=strategies,
            directions=directions,
        )

    @property
    def minimize(self) -> bool:
        return self.type == "minimize"

    def strategy(self, metric: str) -> str:
        if metric in self.strategies:
            return self.strategies[metric]
        direction = self.directions.get(metric)
        if direction in ("maximize", "minimize"):
            return "max" if direction == "maximize" else "min"
        return "latest"

    def value(self, metrics: list[dict[str, Any]], metric: str | None = None) -> str | None:
        """The metric's value under its strategy (``latest`` when that one is unavailable)."""
        name = metric or self.metric
        for item in metrics:
            if isinstance(item, dict) and item.get("name") == name:
                value = item.get(self.strategy(name))
                if value in (None, "", UNAVAILABLE):
                    value = item.get("latest")
                return None if value in (None, "", UNAVAILABLE) else str(value)
        return None

    def number(self, metrics: list[dict[str, Any]]) -> float | None:
        return _number(self.value(metrics))

    def shown(self, metrics: list[dict[str, Any]]) -> str:
        """``accuracy=0.93``, or ``-`` when the objective metric has no value."""
        value = self.value(metrics)
        return "-" if value is None or not self.metric else f"{self.metric}={short(value)}"


def observed(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """A Trial's ``status.observation.metrics``."""
    observation = status_of(manifest).get("observation")
    metrics = observation.get("metrics") if isinstance(observation, dict) else None
    return [m for m in metrics or [] if isinstance(m, dict)]


def optimal_metrics(experiment: dict[str, Any]) -> list[dict[str, Any]]:
    """``status.currentOptimalTrial.observation.metrics`` of an Experiment."""
    optimal = status_of(experiment).get("currentOptimalTrial")
    observation = optimal.get("observation") if isinstance(optimal, dict) else None
    metrics = observation.get("metrics") if isinstance(observation, dict) else None
    return [m for m in metrics or [] if isinstance(m, dict)]


def best_trial_name(experiment: dict[str, Any]) -> str:
    optimal = status_of(experiment).get("currentOptimalTrial")
    return str(optimal.get("bestTrialName") or "") if isinstance(optimal, dict) else ""


def assignments(trial: dict[str, Any]) -> dict[str, str]:
    """A Trial's ``spec.parameterAssignments`` as ``{name: value}``."""
    return {
        str(a.get("name")): str(a.get("value", ""))
        for a in spec_of(trial).get("parameterAssignments") or []
        if isinstance(a, dict) and a.get("name")
    }


def run_seconds(manifest: dict[str, Any], now: datetime | None = None) -> float | None:
    """``completionTime - startTime``; up to now while it runs; None before it starts."""
    status = status_of(manifest)
    start = time_or_none(status.get("startTime"))
    if start is None:
        return None
    end = time_or_none(status.get("completionTime"))
    if end is None:
        end = now or datetime.now(UTC)
    return max(0.0, (end - start).total_seconds())


def duration_text(seconds: float | None) -> str:
    """``0.4s``, ``12.3s``, ``4m5s``, ``2h10m``; ``-`` for none."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    if whole < 3600:
        return f"{whole // 60}m{whole % 60}s"
    return f"{whole // 3600}h{whole % 3600 // 60}m"
