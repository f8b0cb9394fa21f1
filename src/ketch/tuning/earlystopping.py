"""Early stopping (``spec.earlyStopping``): Katib's ``medianstop`` and Optuna's pruners.

``medianstop`` (settings ``min_trials_required``, default 3, and ``start_step``,
default 4, as Katib's service): once a running trial has reported ``start_step``
values, it is stopped at step ``s`` when its best value so far is strictly worse
than the *median* of the running averages, up to step ``s``, of the succeeded
trials' reports — the median stopping rule of Google Vizier, which Katib documents.
Katib's service takes the mean of those averages (and averages only the first
``start_step`` reports); Ketch takes the median, which one bad trial cannot drag.
At least ``min_trials_required`` succeeded trials must have reported by step ``s``.

Ketch extras, Optuna's pruners with their argument names:

- ``successivehalving``: ``min_resource`` (``auto`` or an int), ``reduction_factor``,
  ``min_early_stopping_rate``, ``bootstrap_count``;
- ``hyperband``: ``min_resource``, ``max_resource`` (``auto`` or an int),
  ``reduction_factor``, ``bootstrap_count``.

Steps are the integers the trial reports with (or its reports' order). Pruners need
a single objective; ``medianstop`` watches the primary objective.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import optuna

from ketch.core.errors import InvalidSpec
from ketch.tuning.settings import EARLY_STOPPING_SETTINGS, parse_settings
from ketch.tuning.spec import ExperimentSpec

FIELD = "spec.earlyStopping"
EARLY_STOPPING_ALGORITHMS = tuple(EARLY_STOPPING_SETTINGS)


@dataclass(frozen=True)
class MedianStop:
    """The median stopping rule; see the module docstring."""

    min_trials_required: int = 3
    start_step: int = 4
    maximize: bool = False

    def should_stop(
        self,
        series: Sequence[tuple[int, float]],
        completed: Iterable[Sequence[tuple[int, float]]],
    ) -> bool:
        """Whether a running trial that reported ``series`` (``(step, value)`` in order)
        should stop, given the reports of the succeeded trials."""
        if len(series) < self.start_step:
            return False
        step = series[-1][0]
        seen = [v for _, v in series if math.isfinite(v)]
        if not seen:
            return False
        best = max(seen) if self.maximize else min(seen)
        averages = []
        for reports in completed:
            upto = [v for s, v in reports if s <= step and math.isfinite(v)]
            if upto:
                averages.append(sum(upto) / len(upto))
        if len(averages) < self.min_trials_required:
            return False
        median = statistics.median(averages)
        return best < median if self.maximize else best > median


def validate_early_stopping(spec: ExperimentSpec) -> None:
    """Raise :class:`InvalidSpec` for an unknown early-stopping algorithm or setting."""
    if spec.earlyStopping is None:
        return
    parse_settings(spec.earlyStopping, EARLY_STOPPING_SETTINGS, field=FIELD)
    name = spec.earlyStopping.algorithmName
    if name != "medianstop" and spec.multi_objective:
        raise InvalidSpec(
            f"the {name} pruner needs a single objective; use medianstop, which watches "
            "the primary objective",
            field=f"{FIELD}.algorithmName",
        )


def make_median_stop(spec: ExperimentSpec) -> MedianStop | None:
    if spec.earlyStopping is None or spec.earlyStopping.algorithmName != "medianstop":
        return None
    settings = parse_settings(spec.earlyStopping, EARLY_STOPPING_SETTINGS, field=FIELD)
    return MedianStop(maximize=spec.objective.type == "maximize", **settings)


def make_pruner(spec: ExperimentSpec) -> optuna.pruners.BasePruner | None:
    """Optuna's pruner for ``successivehalving`` or ``hyperband`` (None otherwise)."""
    if spec.earlyStopping is None:
        return None
    name = spec.earlyStopping.algorithmName
    if name == "medianstop":
        return None
    settings = parse_settings(spec.earlyStopping, EARLY_STOPPING_SETTINGS, field=FIELD)
    if name == "successivehalving":
        return optuna.pruners.SuccessiveHalvingPruner(**settings)
    return optuna.pruners.HyperbandPruner(**settings)
