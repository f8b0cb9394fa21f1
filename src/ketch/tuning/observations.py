"""A trial's metric reports and what Katib makes of them.

An :class:`Observation` is one reported value of one metric, as a collector reads
it. A trial's ``status.observation.metrics`` is Katib's summary of them: the min,
max and latest value of each metric, as text (:func:`summarize`); an objective's
value is the one its metric strategy picks from that summary
(:func:`objective_value`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ketch.core.errors import InvalidSpec

UNAVAILABLE = "unavailable"  # what Katib writes for a metric that was never reported


@dataclass(frozen=True)
class Observation:
    """One reported value of one metric (Katib's metric log entry)."""

    name: str
    value: float
    timestamp: float | None = None  # seconds since the epoch; None: the report had no time
    step: int | None = None


def metric_number(value: Any) -> float | None:
    """A metric value as a float: a number or numeric text (never a bool); None otherwise."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        try:
            return float(value)
        except OverflowError:
            return None
    if isinstance(value, str) and value.strip():
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def format_value(value: float) -> str:
    """A value as Katib writes it in ``observation.metrics``: ``0.71``, ``3``, ``1e-05``."""
    if math.isfinite(value) and value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    return repr(value)


def summarize(
    observations: list[Observation], strategies: Mapping[str, str]
) -> list[dict[str, str]]:
    """Katib's ``observation.metrics``: min, max and latest of each metric in ``strategies``.

    Values are strings; a metric never reported has ``unavailable`` in all three. The
    latest is the value with the newest timestamp (a report without one counts as
    oldest); among equal timestamps, the one reported last. NaN never is a min or max.
    """
    summaries = []
    for name in strategies:
        values = [obs for obs in observations if obs.name == name]
        numbers = [obs.value for obs in values if not math.isnan(obs.value)]
        latest: Observation | None = None
        for obs in values:
            if latest is None or _time_key(obs) >= _time_key(latest):
                latest = obs
        summaries.append(
            {
                "name": name,
                "min": format_value(min(numbers)) if numbers else UNAVAILABLE,
                "max": format_value(max(numbers)) if numbers else UNAVAILABLE,
                "latest": format_value(latest.value) if latest is not None else UNAVAILABLE,
            }
        )
    return summaries


def _time_key(obs: Observation) -> float:
    return obs.timestamp if obs.timestamp is not None else -math.inf


def objective_value(metrics: list[dict[str, str]], name: str, strategy: str) -> float | None:
    """The value of metric ``name`` that ``strategy`` (min, max or latest) picks.

    None when the metric is missing, unavailable or not a number (NaN).
    """
    if strategy not in ("min", "max", "latest"):
        raise InvalidSpec(
            f"unknown metric strategy {strategy!r} for {name!r}",
            field="spec.objective.metricStrategies",
            hint="min, max or latest",
        )
    for metric in metrics:
        if metric.get("name") == name:
            value = metric_number(metric.get(strategy))
            return None if value is None or math.isnan(value) else value
    return None
