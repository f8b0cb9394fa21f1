"""Early stopping: the median stopping rule (a true median) and Optuna's pruners."""

from __future__ import annotations

from typing import Any

import pytest

from ketch.core.errors import InvalidSpec
from ketch.tuning.algorithms import Suggester, TrialRecord, validate_algorithm
from ketch.tuning.earlystopping import MedianStop
from tests.tuning.spec_builders import make_spec


def finished(suggester: Suggester, name: str, reports: list[float], final: float) -> None:
    suggester.ask([name])
    for step, value in enumerate(reports, start=1):
        assert not suggester.report(name, step, value)
    suggester.tell(name, "succeeded", [final])


def stopped_at(suggester: Suggester, name: str, reports: list[float]) -> int | None:
    """The step at which the trial is told to stop (None: never)."""
    suggester.ask([name])
    for step, value in enumerate(reports, start=1):
        if suggester.report(name, step, value):
            return step
    return None


def medianstop(objective: dict[str, Any] | None = None, **settings: Any) -> Suggester:
    spec = make_spec("random", early_stopping=("medianstop", settings), objective=objective)
    return Suggester(spec, seed=1)


def test_medianstop_uses_the_median_not_the_mean() -> None:
    suggester = medianstop()  # Katib's defaults: 3 trials, from the 4th report
    # running averages 1, 2 and 10: the median is 2, the mean 4.33
    finished(suggester, "a", [1, 1, 1, 1], 1)
    finished(suggester, "b", [2, 2, 2, 2], 2)
    finished(suggester, "c", [10, 10, 10, 10], 10)
    # best 3 is worse than the median (stopped) though better than the mean
    assert stopped_at(suggester, "worse", [3, 3, 3, 3, 3]) == 4
    assert stopped_at(suggester, "better", [1.5, 1.5, 1.5, 1.5, 1.5]) is None
    rule = MedianStop(min_trials_required=3, start_step=4)
    completed = [[(s, v) for s in range(1, 5)] for v in (1.0, 2.0, 10.0)]
    mean = sum((1.0, 2.0, 10.0)) / 3
    assert rule.should_stop([(s, 3.0) for s in range(1, 5)], completed)
    assert 3.0 < mean  # a mean rule would have kept the trial


def test_medianstop_waits_for_start_step_and_enough_trials() -> None:
    suggester = medianstop(min_trials_required=2, start_step=2)
    finished(suggester, "a", [1, 1], 1)
    assert stopped_at(suggester, "alone", [5, 5, 5]) is None  # one trial is not enough
    finished(suggester, "b", [1, 1], 1)
    assert stopped_at(suggester, "late", [5, 5, 5]) == 2


def test_medianstop_compares_running_averages_at_the_same_step() -> None:
    suggester = medianstop(start_step=2)
    for name in ("a", "b", "c"):  # poor at first, very good later
        finished(suggester, name, [10, 10, 0, 0, 0, 0], 0)
    # at step 2 the others' averages are 10: a trial at 8 is fine, though their
    # averages over all their steps (3.3) are better than it
    assert stopped_at(suggester, "same-step", [8, 8]) is None
    # at step 6 their averages are 3.3 and its best, 4, is worse (at step 5 both are 4)
    assert stopped_at(suggester, "later", [8, 8, 6, 5, 4, 4]) == 6


def test_medianstop_maximizing_and_best_so_far() -> None:
    suggester = medianstop(
        objective={"type": "maximize", "objectiveMetricName": "acc"}, start_step=3
    )
    for name, value in (("a", 0.5), ("b", 0.6), ("c", 0.7)):
        finished(suggester, name, [value] * 3, value)
    assert stopped_at(suggester, "low", [0.1, 0.2, 0.3]) == 3
    # its best so far (0.9) counts, not its latest report
    assert stopped_at(suggester, "dipped", [0.9, 0.2, 0.2, 0.2]) is None


def test_medianstop_is_rebuilt_from_stored_reports() -> None:
    spec = make_spec("random", early_stopping=("medianstop", {}))
    first = Suggester(spec, seed=1)
    history = []
    for name, value in (("a", 1.0), ("b", 2.0), ("c", 10.0)):
        suggestion = first.ask([name])[name]
        history.append(
            TrialRecord(
                name, suggestion.parameters, "succeeded", [value], [(s, value) for s in range(1, 5)]
            )
        )
    again = Suggester(spec, seed=1)
    again.restore(history)
    assert stopped_at(again, "worse", [3, 3, 3, 3]) == 4


def test_without_early_stopping_nothing_is_stopped() -> None:
    suggester = Suggester(make_spec("random"), seed=1)
    for name in ("a", "b", "c"):
        finished(suggester, name, [1, 1, 1, 1], 1)
    assert stopped_at(suggester, "bad", [100] * 10) is None


@pytest.mark.parametrize(
    ("name", "settings"),
    [
        ("successivehalving", {"min_resource": 1, "reduction_factor": 2}),
        ("hyperband", {"min_resource": 1, "max_resource": 8, "reduction_factor": 2}),
    ],
)
def test_optuna_pruners_stop_bad_trials(name: str, settings: dict[str, Any]) -> None:
    spec = make_spec("random", early_stopping=(name, settings))
    suggester = Suggester(spec, seed=3)
    for index in range(12):
        finished(suggester, f"good{index}", [1.0 - index / 100] * 8, 1.0)
    assert stopped_at(suggester, "bad", [50.0] * 8) is not None
    assert stopped_at(suggester, "best", [0.1] * 8) is None


def test_pruner_rungs_are_rebuilt_from_stored_reports() -> None:
    spec = make_spec(
        "random", early_stopping=("successivehalving", {"min_resource": 1, "reduction_factor": 2})
    )
    first = Suggester(spec, seed=1)
    history = []
    for index in range(6):
        name = f"good{index}"
        suggestion = first.ask([name])[name]
        value = 1.0 - index / 100
        history.append(
            TrialRecord(
                name, suggestion.parameters, "succeeded", [value], [(s, value) for s in range(1, 5)]
            )
        )
    suggestion = first.ask(["bad"])["bad"]
    history.append(TrialRecord("bad", suggestion.parameters, "running", None, [(1, 50.0)]))
    again = Suggester(spec, seed=1)
    again.restore(history)
    assert again.report("bad", 2, 50.0)  # its rivals' rungs came back with them


@pytest.mark.parametrize(
    ("early_stopping", "field"),
    [
        (("truncation", {}), "spec.earlyStopping.algorithmName"),
        (("medianstop", {"min_trials": 3}), "spec.earlyStopping.algorithmSettings[0].name"),
        (("medianstop", {"start_step": 0}), "spec.earlyStopping.algorithmSettings[0].value"),
        (
            ("medianstop", {"min_trials_required": "x"}),
            "spec.earlyStopping.algorithmSettings[0].value",
        ),
        (
            ("successivehalving", {"reduction_factor": 1}),
            "spec.earlyStopping.algorithmSettings[0].value",
        ),
    ],
)
def test_bad_early_stopping_names_the_field(
    early_stopping: tuple[str, dict[str, Any]], field: str
) -> None:
    with pytest.raises(InvalidSpec) as caught:
        validate_algorithm(make_spec("random", early_stopping=early_stopping))
    assert caught.value.field == field


def test_pruners_need_a_single_objective() -> None:
    objective = {
        "objectives": [
            {"objectiveMetricName": "loss", "type": "minimize"},
            {"objectiveMetricName": "cost", "type": "minimize"},
        ]
    }
    with pytest.raises(InvalidSpec) as caught:
        validate_algorithm(
            make_spec("random", objective=objective, early_stopping=("successivehalving", {}))
        )
    assert caught.value.field == "spec.earlyStopping.algorithmName"
    spec = make_spec("nsga2", objective=objective, early_stopping=("medianstop", {}))
    suggester = Suggester(spec, seed=1)
    for name, value in (("a", 1.0), ("b", 2.0), ("c", 10.0)):
        suggester.ask([name])
        for step in range(1, 5):
            suggester.report(name, step, value)
        suggester.tell(name, "succeeded", [value, 1.0])
    assert stopped_at(suggester, "worse", [3, 3, 3, 3]) == 4
