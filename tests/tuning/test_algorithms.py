"""Suggestions through real Optuna studies: every algorithm, restore, grid, Hyperband,
PBT, several objectives and the apply-time checks."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from ketch.core.errors import InvalidSpec
from ketch.tuning.algorithms import Suggester, TrialRecord, validate_algorithm
from ketch.tuning.hyperband import BRACKET_LABEL, PARENT_LABEL, RUNG_LABEL
from ketch.tuning.pbt import CHECKPOINT_ENV, GENERATION_LABEL, MEMBER_LABEL
from ketch.tuning.pbt import PARENT_LABEL as PBT_PARENT
from ketch.tuning.searchspace import SearchSpace
from ketch.tuning.spec import ExperimentSpec
from tests.tuning.spec_builders import GRID, make_spec

TYPES = {"double": float, "int": int, "categorical": str}

ALGORITHMS: list[tuple[str, dict[str, Any], int]] = [
    ("random", {}, 12),
    ("tpe", {"n_startup_trials": 4}, 12),
    ("tpe", {"gamma": 0.25, "n_EI_candidates": 8, "random_state": 3}, 12),
    ("multivariate-tpe", {"n_startup_trials": 4}, 12),
    ("cmaes", {"restart_strategy": "ipop", "sigma": 0.2}, 12),
    (
        "bayesianoptimization",
        {"n_initial_points": 3, "base_estimator": "GP", "acq_func": "gp_hedge"},
        6,
    ),
    ("sobol", {}, 12),
    ("nsga2", {"population_size": 4}, 12),
    ("pbt", {"n_population": 5, "truncation_threshold": 0.4, "suggestion_trial_dir": "/ckpt"}, 12),
]


def loss(parameters: dict[str, Any]) -> float:
    """A small objective over the mixed space (lower is better)."""
    return (
        (parameters.get("n", 3) - 3) ** 2
        + abs(parameters.get("x", 0.0) - 0.25)
        + parameters.get("z", 5.0) / 10
        + (parameters.get("opt") == "sgd")
        + math.log10(parameters.get("lr", 0.01)) ** 2 / 10
    )


def run(
    suggester: Suggester, count: int, *, batch: int = 3, start: int = 0, finish: bool = True
) -> list[TrialRecord]:
    """Ask in batches and tell each trial's loss; the records the controller would store."""
    records: list[TrialRecord] = []
    index = start
    while len(records) < count:
        names = [f"t{index + i}" for i in range(min(batch, count - len(records)))]
        index += len(names)
        suggestions = suggester.ask(names)
        if not suggestions:
            break
        for name, suggestion in suggestions.items():
            value = loss(suggestion.parameters)
            state = "succeeded" if finish else "running"
            if finish:
                suggester.tell(name, "succeeded", [value])
            records.append(
                TrialRecord(
                    name,
                    suggestion.parameters,
                    state,
                    [value] if finish else None,
                    [],
                    dict(suggestion.labels),
                )
            )
    return records


def assert_feasible(
    spec: ExperimentSpec, parameters: dict[str, Any], exempt: str | None = None
) -> None:
    assert set(parameters) == {p.name for p in spec.parameters}
    for parameter in spec.parameters:
        value = parameters[parameter.name]
        expected = TYPES.get(parameter.parameterType, (int, float))
        assert isinstance(value, expected), (parameter.name, value)
        if parameter.name != exempt:
            assert parameter.contains(value), (parameter.name, value)
        assert parameter.coerce(parameter.format(value)) == value


@pytest.mark.parametrize(("algorithm", "settings", "count"), ALGORITHMS)
def test_every_algorithm_suggests_within_the_feasible_space(
    algorithm: str, settings: dict[str, Any], count: int, tmp_path: Path
) -> None:
    spec = make_spec(algorithm, settings)
    suggester = Suggester(spec, seed=7, workdir=tmp_path)
    records = run(suggester, count)
    assert len(records) == count
    for record in records:
        assert_feasible(spec, record.parameters)
    assert len(suggester.study.trials) == count
    assert suggester.pareto_front()  # the best trial


def test_grid_and_hyperband_suggest_within_the_feasible_space() -> None:
    spec = make_spec("grid", parameters=GRID)
    for record in run(Suggester(spec, seed=1), 12):
        assert_feasible(spec, record.parameters)
    spec = make_spec("hyperband", {"resource_name": "n", "r_l": 9})
    for record in run(Suggester(spec, seed=1), 23):
        assert_feasible(spec, record.parameters, exempt="n")


@pytest.mark.parametrize(("algorithm", "settings", "count"), ALGORITHMS)
def test_restore_continues_from_the_stored_trials(
    algorithm: str, settings: dict[str, Any], count: int, tmp_path: Path
) -> None:
    spec = make_spec(algorithm, settings)
    first = Suggester(spec, seed=11, workdir=tmp_path / "a")
    history = run(first, count - 2, batch=2)
    history += run(first, 2, start=100, finish=False)  # still running at the restart

    def restored() -> Suggester:
        suggester = Suggester(spec, seed=11, workdir=tmp_path / "b")
        suggester.restore(history)
        return suggester

    again = restored()
    assert len(again.study.trials) == len(history) == count
    assert [t.state.name for t in again.study.trials[-2:]] == ["RUNNING", "RUNNING"]
    # the running trials can still report and be told
    again.report(history[-1].name, 1, 0.5)
    again.tell(history[-1].name, "succeeded", [0.5])
    more = again.ask(["u0", "u1"])
    assert len(more) == 2 or algorithm == "pbt"
    for suggestion in more.values():
        assert_feasible(spec, suggestion.parameters)
    # the same seed and stored trials give the same next suggestions
    twin = restored()
    twin.tell(history[-1].name, "succeeded", [0.5])
    assert {k: v.parameters for k, v in twin.ask(["u0", "u1"]).items()} == {
        k: v.parameters for k, v in more.items()
    }


def test_restored_random_search_does_not_repeat_its_first_draws() -> None:
    spec = make_spec("random")
    history = run(Suggester(spec, seed=5), 6)
    again = Suggester(spec, seed=5)
    again.restore(history)
    fresh = [r.parameters for r in history]
    for suggestion in again.ask(["a", "b", "c"]).values():
        assert suggestion.parameters not in fresh


def test_seed_makes_suggestions_reproducible() -> None:
    spec = make_spec("tpe", {"n_startup_trials": 3})
    one = [r.parameters for r in run(Suggester(spec, seed=3), 8)]
    two = [r.parameters for r in run(Suggester(spec, seed=3), 8)]
    other = [r.parameters for r in run(Suggester(spec, seed=4), 8)]
    assert one == two
    assert one != other


def test_ask_and_tell_are_idempotent() -> None:
    suggester = Suggester(make_spec("random"), seed=1)
    first = suggester.ask(["a"])["a"]
    assert suggester.ask(["a"])["a"] is first
    suggester.tell("a", "succeeded", [1.0])
    suggester.tell("a", "failed", None)  # already finished: ignored
    assert suggester.study.trials[0].state.name == "COMPLETE"
    with pytest.raises(KeyError):
        suggester.tell("never-asked", "succeeded", [1.0])
    suggester.ask(["b", "c", "d"])
    suggester.tell("b", "succeeded", None)  # no metrics: a failure
    suggester.tell("c", "succeeded", [math.nan])
    suggester.tell("d", "early_stopped", None)
    assert [t.state.name for t in suggester.study.trials] == ["COMPLETE", "FAIL", "FAIL", "PRUNED"]


# -- grid -------------------------------------------------------------------------------


def test_grid_visits_every_point_once_and_is_exhausted() -> None:
    spec = make_spec("grid", parameters=GRID)  # 3 x 2 x 2 points
    suggester = Suggester(spec, seed=2)
    records = run(suggester, 20)
    points = [tuple(sorted(r.parameters.items())) for r in records]
    assert len(points) == 12 == len(set(points))
    assert {r.parameters["x"] for r in records} == {0.1, 0.2, 0.3}  # exact decimal steps
    assert {r.parameters["n"] for r in records} == {1, 3}
    assert suggester.exhausted
    assert suggester.ask(["more"]) == {}


def test_restored_grid_does_not_repeat_points() -> None:
    spec = make_spec("grid", parameters=GRID)
    first = Suggester(spec, seed=2)
    history = run(first, 4) + run(first, 1, start=4, finish=False)
    again = Suggester(spec, seed=2)
    again.restore(history)
    assert len(again.study.trials) == 5 and not again.exhausted
    rest = run(again, 20, start=5)
    seen = [tuple(sorted(r.parameters.items())) for r in history + rest]
    assert len(seen) == 12 == len(set(seen))
    assert again.exhausted


def test_grid_rejects_impossible_budgets() -> None:
    with pytest.raises(InvalidSpec) as caught:
        validate_algorithm(make_spec("grid", parameters=GRID, maxTrialCount=13))
    assert caught.value.field == "spec.maxTrialCount" and "12" in caught.value.message
    validate_algorithm(make_spec("grid", parameters=GRID, maxTrialCount=12))
    huge = [dict(GRID[1], feasibleSpace={"min": "0", "max": "10000000"}), *GRID[2:]]
    with pytest.raises(InvalidSpec) as caught:
        validate_algorithm(make_spec("grid", parameters=huge))
    assert caught.value.field == "spec.parameters"
    continuous = [dict(GRID[0], feasibleSpace={"min": "0", "max": "1"}), *GRID[1:]]
    with pytest.raises(InvalidSpec) as caught:
        validate_algorithm(make_spec("grid", parameters=continuous))
    assert caught.value.field == "spec.parameters[0].feasibleSpace.step"


# -- settings ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("algorithm", "settings", "field"),
    [
        ("annealing", {}, "spec.algorithm.algorithmName"),
        ("tpe", {"n_startup_trials": 3, "n_trees": 5}, "spec.algorithm.algorithmSettings[1].name"),
        ("random", {"random_state": "-1"}, "spec.algorithm.algorithmSettings[0].value"),
        ("tpe", {"gamma": "1.5"}, "spec.algorithm.algorithmSettings[0].value"),
        ("cmaes", {"restart_strategy": "sometimes"}, "spec.algorithm.algorithmSettings[0].value"),
        (
            "bayesianoptimization",
            {"base_estimator": "RF"},
            "spec.algorithm.algorithmSettings[0].value",
        ),
        ("bayesianoptimization", {"acq_func": "LCB"}, "spec.algorithm.algorithmSettings[0].value"),
        ("hyperband", {"resource_name": "n"}, "spec.algorithm.algorithmSettings"),
        (
            "hyperband",
            {"resource_name": "opt", "r_l": 9},
            "spec.algorithm.algorithmSettings[0].value",
        ),
        (
            "hyperband",
            {"resource_name": "n", "r_l": 9, "eta": 1},
            "spec.algorithm.algorithmSettings[2].value",
        ),
        (
            "pbt",
            {"n_population": 4, "truncation_threshold": 0.2, "suggestion_trial_dir": "/c"},
            "spec.algorithm.algorithmSettings[0].value",
        ),
        ("sobol", {"random_state": 1}, "spec.algorithm.algorithmSettings[0].name"),
    ],
)
def test_bad_algorithms_and_settings_name_the_field(
    algorithm: str, settings: dict[str, Any], field: str
) -> None:
    spec = make_spec(algorithm, settings)
    with pytest.raises(InvalidSpec) as caught:
        validate_algorithm(spec)
    assert caught.value.field == field
    with pytest.raises(InvalidSpec):
        Suggester(spec, seed=1)


def test_cmaes_needs_two_numeric_parameters() -> None:
    with pytest.raises(InvalidSpec) as caught:
        validate_algorithm(make_spec("cmaes", parameters=GRID[1:]))
    assert caught.value.field == "spec.parameters"


def test_cmaes_restarts_with_a_larger_population() -> None:
    spec = make_spec("cmaes", {"restart_strategy": "ipop", "random_state": 1}, parameters=GRID[:2])
    suggester = Suggester(spec, seed=1)
    run(suggester, 400)
    assert suggester.strategy is not None and suggester.strategy.run > 1


# -- hyperband --------------------------------------------------------------------------


def test_hyperband_runs_brackets_of_successive_halving() -> None:
    spec = make_spec("hyperband", {"resource_name": "n", "r_l": 9, "eta": 3})
    suggester = Suggester(spec, seed=4)
    rungs: dict[tuple[int, int], list[TrialRecord]] = {}
    index = 0
    while not suggester.exhausted:
        names = [f"t{index + i}" for i in range(4)]
        index += 4
        out = suggester.ask(names)
        for name, suggestion in out.items():
            key = (int(suggestion.labels[BRACKET_LABEL]), int(suggestion.labels[RUNG_LABEL]))
            record = TrialRecord(name, suggestion.parameters, "running", labels=suggestion.labels)
            rungs.setdefault(key, []).append(record)
        # a rung's next one waits for all of its trials: finish them in order
        for name in out:
            record = next(r for group in rungs.values() for r in group if r.name == name)
            record.values = [loss(record.parameters)]
            suggester.tell(name, "succeeded", record.values)
    # (bracket, rung) -> (trials, resource); s_max = 2 for r_l = 9 and eta = 3
    expected = {
        (2, 0): (9, 1),
        (2, 1): (3, 3),
        (2, 2): (1, 9),
        (1, 0): (5, 3),
        (1, 1): (2, 9),
        (0, 0): (3, 9),
    }
    assert {k: (len(v), {r.parameters["n"] for r in v}) for k, v in rungs.items()} == {
        k: (size, {resource}) for k, (size, resource) in expected.items()
    }
    # each retrained configuration is one of the best of the rung before, with its parameters
    for (bracket, rung), records in rungs.items():
        if rung == 0:
            continue
        before = sorted(rungs[(bracket, rung - 1)], key=lambda r: r.values[0])
        best = {r.name for r in before[: len(records)]}
        for record in records:
            parent = next(r for r in before if r.name == record.labels[PARENT_LABEL])
            assert parent.name in best
            assert {k: v for k, v in record.parameters.items() if k != "n"} == {
                k: v for k, v in parent.parameters.items() if k != "n"
            }
    assert suggester.ask(["late"]) == {}


def test_hyperband_waits_for_a_rung_and_restores_mid_bracket() -> None:
    spec = make_spec("hyperband", {"resource_name": "n", "r_l": 4, "eta": 2})  # s_max = 2
    suggester = Suggester(spec, seed=9)
    first = run(suggester, 4, batch=4, finish=False)  # bracket 2, rung 0 is 4 trials
    assert suggester.ask(["wait"]) == {}  # rung 1 needs all of rung 0 to end
    for record in first[:3]:
        record.state, record.values = "succeeded", [loss(record.parameters)]
        suggester.tell(record.name, "succeeded", record.values)
    again = Suggester(spec, seed=9)
    again.restore(first)
    assert again.ask(["wait"]) == {}
    first[3].state, first[3].values = "succeeded", [loss(first[3].parameters)]
    again.tell(first[3].name, "succeeded", first[3].values)
    suggester.tell(first[3].name, "succeeded", first[3].values)
    following = again.ask(["r1", "r2", "r3"])
    assert len(following) == 2  # ceil(4 / 2) retrained with resource 2
    assert {s.parameters["n"] for s in following.values()} == {2}
    assert {s.labels[RUNG_LABEL] for s in following.values()} == {"1"}
    best = sorted(first, key=lambda r: r.values[0])[:2]
    assert {s.labels[PARENT_LABEL] for s in following.values()} == {r.name for r in best}
    assert [s.parameters for s in following.values()] == [
        s.parameters for s in suggester.ask(["r1", "r2"]).values()
    ]


# -- population based training ---------------------------------------------------------


def test_pbt_exploits_the_best_and_explores(tmp_path: Path) -> None:
    spec = make_spec(
        "pbt",
        {
            "n_population": 5,
            "truncation_threshold": 0.4,
            "suggestion_trial_dir": "/var/log/katib/checkpoints/",
        },
    )
    suggester = Suggester(spec, seed=3, workdir=tmp_path)
    generation0 = suggester.ask([f"g0m{i}" for i in range(6)])
    assert len(generation0) == 5  # the population
    scores = {}
    for index, (name, suggestion) in enumerate(generation0.items()):
        assert suggestion.labels[GENERATION_LABEL] == "0"
        assert PBT_PARENT not in suggestion.labels
        directory = Path(suggestion.env[CHECKPOINT_ENV])
        assert directory == tmp_path / name and directory.is_dir()
        (directory / "model.ckpt").write_text(name)
        scores[name] = float(index)  # g0m0 is best (minimize), g0m4 worst
    assert suggester.ask(["early"]) == {}  # the generation is not done
    suggester.tell("g0m4", "failed", None)  # a failed member runs again
    retry = suggester.ask(["g0m4b"])["g0m4b"]
    assert retry.parameters == generation0["g0m4"].parameters
    assert retry.labels[MEMBER_LABEL] == generation0["g0m4"].labels[MEMBER_LABEL]
    scores["g0m4b"] = scores.pop("g0m4")
    (tmp_path / "g0m4b" / "model.ckpt").write_text("g0m4b")
    for name, score in scores.items():
        suggester.tell(name, "succeeded", [score])
    generation1 = suggester.ask([f"g1m{i}" for i in range(5)])
    assert {s.labels[GENERATION_LABEL] for s in generation1.values()} == {"1"}
    by_member = {s.labels[MEMBER_LABEL]: s for s in generation1.values()}
    previous = {s.labels[MEMBER_LABEL]: name for name, s in generation0.items()}
    previous[generation0["g0m4"].labels[MEMBER_LABEL]] = "g0m4b"
    top = {"g0m0", "g0m1"}
    exploited = 0
    for member, suggestion in by_member.items():
        parent = suggestion.labels[PBT_PARENT]
        own = previous[member]
        copied = Path(suggestion.env[CHECKPOINT_ENV]) / "model.ckpt"
        assert copied.read_text() == parent  # the parent's checkpoint was copied
        if own in ("g0m3", "g0m4b"):  # the bottom 40% exploit a top member and explore
            exploited += 1
            assert parent in top
            assert suggestion.parameters != generation0[parent].parameters
            assert_feasible(spec, suggestion.parameters)
        else:  # the others continue from their own checkpoint
            assert parent == own
            assert suggestion.parameters == generation0[own].parameters
    assert exploited == 2


def test_restored_pbt_continues_the_same_population(tmp_path: Path) -> None:
    spec = make_spec(
        "pbt", {"n_population": 5, "truncation_threshold": 0.4, "suggestion_trial_dir": "/c"}
    )
    live = Suggester(spec, seed=5, workdir=tmp_path / "live")
    history = run(live, 5, batch=5) + run(live, 2, batch=2, start=10, finish=False)
    restored = Suggester(spec, seed=5, workdir=tmp_path / "restored")
    restored.restore(history)

    def advance(suggester: Suggester, start: int) -> dict[str, Any]:
        for record in history[5:]:
            suggester.tell(record.name, "succeeded", [loss(record.parameters)])
        rest = run(suggester, 3, batch=3, start=start)  # the generation's last members
        following = suggester.ask([f"n{i}" for i in range(5)])
        return {
            "rest": [(r.parameters, r.labels) for r in rest],
            "next": [(s.parameters, s.labels) for s in following.values()],
        }

    assert advance(restored, 20) == advance(live, 20)


def test_pbt_perturbs_by_katib_factors_or_resamples() -> None:
    params = [
        {"name": "lr", "parameterType": "double", "feasibleSpace": {"min": "0.0001", "max": "1"}},
        {"name": "opt", "parameterType": "categorical", "feasibleSpace": {"list": ["a", "b", "c"]}},
    ]
    spec = make_spec(
        "pbt",
        {"n_population": 5, "truncation_threshold": 0.2, "suggestion_trial_dir": "/c"},
        parameters=params,
    )
    suggester = Suggester(spec, seed=8)
    first = suggester.ask([f"a{i}" for i in range(5)])
    for score, name in enumerate(first):
        suggester.tell(name, "succeeded", [float(score)])
    following = suggester.ask([f"b{i}" for i in range(5)])
    changed = [
        s
        for s in following.values()
        if s.labels[PBT_PARENT] == "a0" and s.parameters != first["a0"].parameters
    ]
    assert len(changed) == 1  # the worst member copied the best and perturbed it
    donor, explored = first["a0"].parameters, changed[0].parameters
    assert explored["lr"] in (
        pytest.approx(donor["lr"] * 0.8),
        pytest.approx(donor["lr"] * 1.2),
        1.0,
    )
    order = ["a", "b", "c"]
    assert abs(order.index(explored["opt"]) - order.index(donor["opt"])) in (1, 2)


# -- several objectives ------------------------------------------------------------------


def dominates(a: list[float], b: list[float]) -> bool:
    return all(x <= y for x, y in zip(a, b, strict=True)) and a != b


@pytest.mark.parametrize("algorithm", ["nsga2", "tpe"])
def test_several_objectives_give_a_pareto_front(algorithm: str) -> None:
    spec = make_spec(
        algorithm,
        objective={
            "objectives": [
                {"objectiveMetricName": "loss", "type": "minimize"},
                {"objectiveMetricName": "cost", "type": "minimize"},
            ]
        },
    )
    suggester = Suggester(spec, seed=6)
    values: dict[str, list[float]] = {}
    for index in range(8):
        names = [f"t{index * 3 + i}" for i in range(3)]
        for name, suggestion in suggester.ask(names).items():
            p = suggestion.parameters
            values[name] = [loss(p), p["n"] + p["lr"]]
            suggester.tell(name, "succeeded", values[name])
    front = set(suggester.pareto_front())
    assert front
    for name in front:
        assert not any(dominates(values[other], values[name]) for other in values)
    for name in set(values) - front:
        assert any(dominates(values[other], values[name]) for other in front)


def test_single_objective_algorithms_refuse_several_objectives() -> None:
    objective = {
        "objectives": [
            {"objectiveMetricName": "loss", "type": "minimize"},
            {"objectiveMetricName": "cost", "type": "minimize"},
        ]
    }
    with pytest.raises(InvalidSpec) as caught:
        validate_algorithm(make_spec("cmaes", objective=objective))
    assert caught.value.field == "spec.algorithm.algorithmName"


# -- distributions ---------------------------------------------------------------------


def test_normal_distributions_are_truncated_to_the_feasible_space() -> None:
    spec = make_spec(
        "random",
        parameters=[
            {
                "name": "z",
                "parameterType": "double",
                "feasibleSpace": {"min": "0", "max": "6", "distribution": "normal"},
            },
            {
                "name": "w",
                "parameterType": "double",
                "feasibleSpace": {"min": "0.001", "max": "1000", "distribution": "logNormal"},
            },
            {
                "name": "k",
                "parameterType": "int",
                "feasibleSpace": {"min": "0", "max": "12", "distribution": "normal"},
            },
        ],
    )
    records = run(Suggester(spec, seed=2), 300, batch=30)
    z = [r.parameters["z"] for r in records]
    w = [r.parameters["w"] for r in records]
    assert all(0 <= v <= 6 for v in z) and all(0.001 <= v <= 1000 for v in w)
    assert all(isinstance(r.parameters["k"], int) and 0 <= r.parameters["k"] <= 12 for r in records)
    # mean 3 and sigma 1: about 68% within one sigma, against a third for a uniform draw
    assert 0.55 < sum(2 <= v <= 4 for v in z) / len(z) < 0.8
    assert 0.55 < sum(0.1 <= v <= 10 for v in w) / len(w) < 0.8
    codec = SearchSpace(spec.parameters).codecs["z"]
    for u in (0.0, 0.1, 0.5, 0.77, 1.0):
        assert codec.to_unit(codec.from_unit(u)) == pytest.approx(u, abs=1e-9)
