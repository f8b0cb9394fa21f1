"""Katib Experiments end to end: trials as real batch Jobs, metrics from their output."""

from __future__ import annotations

from typing import Any

import pytest

from ketch.core.errors import InvalidSpec
from ketch.tuning.client import TuningClient
from tests.tuning.conftest import experiment, run_local

XY = ["${trialParameters.x}", "${trialParameters.y}"]


def _score(trial: Any) -> float:
    return float(trial.metrics["score"]["max"])


def test_random_experiment_runs_trials_and_finds_the_best(local: TuningClient) -> None:
    done = run_local(local, experiment("rand", max_trials=4, parallel=2))
    status = done.status
    assert done.succeeded, status
    reason = [c for c in status["conditions"] if c["type"] == "Succeeded"][0]["reason"]
    assert reason == "ExperimentMaxTrialsReached"
    assert status["trials"] == 4 and status["trialsSucceeded"] == 4
    trials = local.list_trials("rand")
    assert len(trials) == 4 and {t.state for t in trials} == {"Succeeded"}
    best = max(trials, key=_score)
    optimal = local.get_optimal_hyperparameters("rand")
    assert optimal["bestTrialName"] == best.name
    assigned = {a["name"]: a["value"] for a in optimal["parameterAssignments"]}
    assert assigned == best.parameters
    x, y = float(assigned["x"]), float(assigned["y"])
    assert _score(best) == pytest.approx(-((x - 0.3) ** 2) - (y - 0.7) ** 2, abs=1e-5)
    metrics = {m["name"]: m for m in optimal["observation"]["metrics"]}
    assert set(metrics) == {"score", "loss"}
    for trial in trials:  # the jobs of finished trials are cleaned up (retain: false)
        assert 0 <= float(trial.parameters["x"]) <= 1


def test_goal_ends_the_experiment_early(local: TuningClient) -> None:
    manifest = experiment("goal", max_trials=20, parallel=1)
    manifest["spec"]["objective"]["goal"] = -10.0  # any trial reaches it
    done = run_local(local, manifest)
    succeeded = [c for c in done.status["conditions"] if c["type"] == "Succeeded"][0]
    assert succeeded["reason"] == "ExperimentGoalReached"
    assert done.status["trials"] < 20


def test_failing_trials_count_toward_max_failed(local: TuningClient) -> None:
    manifest = experiment(
        "fails",
        max_trials=10,
        parallel=1,
        command=["python", "-c", "raise SystemExit(3)", *XY],
        maxFailedTrialCount=1,
    )
    done = run_local(local, manifest)
    failed = [c for c in done.status["conditions"] if c["type"] == "Failed"][0]
    assert failed["status"] == "True"
    assert failed["reason"] == "ExperimentFailed"  # Katib's reason for this case
    assert done.status["trialsFailed"] == 2


def test_missing_metric_is_metrics_unavailable(local: TuningClient) -> None:
    manifest = experiment(
        "nometric",
        max_trials=1,
        parallel=1,
        maxFailedTrialCount=1,
        command=["python", "-c", "print('hello')", *XY],
    )
    done = run_local(local, manifest)
    assert done.status["trialMetricsUnavailable"] == 1
    [trial] = local.list_trials("nometric")
    assert trial.state == "MetricsUnavailable"


def test_bad_algorithm_is_refused_before_it_is_stored(local: TuningClient) -> None:
    with pytest.raises(InvalidSpec) as info:
        local.create_experiment(experiment("bad", algorithm="simulated-annealing"))
    assert "algorithm" in (info.value.field or "")
    with pytest.raises(InvalidSpec):
        local.create_experiment(experiment("bad2", algorithm="tpe", settings={"no_such": 1}))
    assert local.list_experiments() == []


def test_tune_calls_the_function_with_typed_parameters(local: TuningClient) -> None:
    import ketch

    def objective(parameters):  # noqa: ANN001, ANN202 - the user's function
        assert isinstance(parameters["lr"], float)
        assert isinstance(parameters["layers"], int)
        assert isinstance(parameters["optimizer"], str)
        from ketch.tuning import report_metrics

        score = parameters["lr"] * parameters["layers"] + (parameters["optimizer"] == "adam")
        report_metrics({"score": score})

    done = ketch.tune(
        "fn",
        objective,
        {
            "lr": ketch.search.double(min=0.01, max=0.1),
            "layers": ketch.search.int(min=1, max=4),
            "optimizer": ketch.search.categorical(["sgd", "adam"]),
        },
        objective_metric_name="score",
        algorithm_name="tpe",
        max_trial_count=5,
        parallel_trial_count=2,
        server=False,
    )
    assert done.succeeded, done.status
    assert done.status["trialsSucceeded"] == 5
    best = done.optimal()
    values = {a["name"]: a["value"] for a in best["parameterAssignments"]}
    expected = float(values["lr"]) * int(values["layers"]) + (values["optimizer"] == "adam")
    score = [m for m in best["observation"]["metrics"] if m["name"] == "score"][0]
    assert float(score["latest"]) == pytest.approx(expected, rel=1e-6)
