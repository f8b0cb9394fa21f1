"""Suggestions for an Experiment's trials, through an Optuna study.

The controller drives one :class:`Suggester` per experiment: :meth:`Suggester.ask`
for new trials, :meth:`Suggester.tell` when one ends, :meth:`Suggester.report` for
intermediate objective values (True: stop the trial early). The study lives in
memory; the controller stores trials as resources and, after a restart, rebuilds
the suggester from them with :meth:`Suggester.restore`.

Algorithms (``spec.algorithm.algorithmName``, Katib's names and settings):

- Optuna samplers: ``random``, ``tpe``, ``multivariate-tpe``,
  ``bayesianoptimization`` (Gaussian process) and, a Ketch extra, ``nsga2``; see
  :mod:`ketch.tuning.samplers`.
- Ketch's own, recorded in the same study: ``grid`` and ``sobol``
  (:mod:`ketch.tuning.strategies`), ``cmaes`` (:mod:`ketch.tuning.cma`),
  ``hyperband`` (:mod:`ketch.tuning.hyperband`) and ``pbt`` (:mod:`ketch.tuning.pbt`).
- Several objectives (``objective.objectives``, see :mod:`ketch.tuning.spec`):
  ``nsga2``, ``tpe``, ``multivariate-tpe``, ``bayesianoptimization``, ``random``,
  ``grid`` and ``sobol`` search for the Pareto front (:meth:`Suggester.pareto_front`).

Restoring: trials of algorithms whose sampler is a function of the trials (random,
TPE, Gaussian process) are added to a new study as they are, and the sampler is
seeded with the seed and the number of stored trials (so it does not draw the
first points again); NSGA-II, whose generations live in the study, replays them
through ask and tell; Ketch's own algorithms rebuild their state from the trials
and their labels. The same seed and the same stored trials give the same state.
"""

from __future__ import annotations

import math
import threading
import warnings
from pathlib import Path

import optuna
from optuna.trial import TrialState as OptunaState

from ketch.core.errors import InvalidSpec
from ketch.tuning.earlystopping import make_median_stop, make_pruner, validate_early_stopping
from ketch.tuning.records import FINISHED, Suggestion, TrialRecord, TrialState
from ketch.tuning.samplers import OPTUNA_ALGORITHMS, make_sampler
from ketch.tuning.searchspace import SearchSpace
from ketch.tuning.settings import ALGORITHM_SETTINGS, parse_settings
from ketch.tuning.spec import ExperimentSpec
from ketch.tuning.strategies import GridStrategy, SobolStrategy, Strategy

__all__ = [
    "ALGORITHMS",
    "MULTI_OBJECTIVE_ALGORITHMS",
    "Suggester",
    "Suggestion",
    "TrialRecord",
    "TrialState",
    "validate_algorithm",
]

FIELD = "spec.algorithm"
ALGORITHMS = tuple(ALGORITHM_SETTINGS)
MULTI_OBJECTIVE_ALGORITHMS = (
    "nsga2",
    "tpe",
    "multivariate-tpe",
    "bayesianoptimization",
    "random",
    "grid",
    "sobol",
)
_REPLAYED = ("nsga2",)
MAX_GRID_POINTS = 1_000_000  # samplers that keep state in the study's trials

_STATES = {
    "succeeded": OptunaState.COMPLETE,
    "failed": OptunaState.FAIL,
    "killed": OptunaState.FAIL,
    "early_stopped": OptunaState.PRUNED,
    "running": OptunaState.RUNNING,
}


def validate_algorithm(spec: ExperimentSpec) -> None:
    """Refuse, when the Experiment is applied, what the algorithm cannot run: an unknown
    algorithm or setting, a bad setting value, a grid over a continuous parameter or
    with more trials than points (Katib's check), CMA-ES over fewer than two numeric
    parameters, a Hyperband resource that is not a numeric parameter, an algorithm
    that cannot optimize several objectives, and the same for ``spec.earlyStopping``."""
    settings = parse_settings(spec.algorithm, ALGORITHM_SETTINGS, field=FIELD)
    name = spec.algorithm.algorithmName
    if spec.multi_objective and name not in MULTI_OBJECTIVE_ALGORITHMS:
        raise InvalidSpec(
            f"{name} optimizes one objective; with several objectives use one of "
            f"{', '.join(MULTI_OBJECTIVE_ALGORITHMS)}",
            field=f"{FIELD}.algorithmName",
        )
    if name == "grid":
        _check_grid(spec)
    elif name == "cmaes":
        numeric = [p for p in spec.parameters if p.parameterType in ("double", "int")]
        if len(numeric) < 2:
            raise InvalidSpec(
                "CMA-ES needs at least two double or int parameters; use tpe or "
                "bayesianoptimization for fewer",
                field="spec.parameters",
            )
    elif name == "hyperband":
        resource = settings["resource_name"]
        kinds = {p.name: p.parameterType for p in spec.parameters}
        if kinds.get(resource) not in ("int", "double"):
            index = next(
                i
                for i, s in enumerate(spec.algorithm.algorithmSettings)
                if s.name == "resource_name"
            )
            raise InvalidSpec(
                f"resource_name {resource!r} must name an int or double parameter in "
                "spec.parameters (the budget each trial gets, e.g. epochs)",
                field=f"{FIELD}.algorithmSettings[{index}].value",
            )
    elif name == "bayesianoptimization":
        _require("torch", "scipy", algorithm=name)
    elif name == "sobol":
        _require("scipy", algorithm=name)
    validate_early_stopping(spec)


def _check_grid(spec: ExperimentSpec) -> None:
    total = 1
    for index, parameter in enumerate(spec.parameters):
        if parameter.parameterType == "double" and parameter.step is None:
            raise InvalidSpec(
                f"grid needs a step for the continuous parameter {parameter.name!r}",
                field=f"spec.parameters[{index}].feasibleSpace.step",
            )
        size = SearchSpace([parameter]).grid_size()
        total *= size or 1
    if total > MAX_GRID_POINTS:
        raise InvalidSpec(
            f"the grid has {total} points, more than Ketch enumerates ({MAX_GRID_POINTS}); "
            "give larger steps or fewer values, or use random or sobol search",
            field="spec.parameters",
        )
    if spec.maxTrialCount is not None and spec.maxTrialCount > total:
        raise InvalidSpec(
            f"maxTrialCount {spec.maxTrialCount} is more than the {total} points of the grid; "
            f"set it to at most {total}",
            field="spec.maxTrialCount",
        )


def _require(*modules: str, algorithm: str) -> None:
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise InvalidSpec(
            f"algorithm {algorithm} needs {' and '.join(missing)}: pip install {' '.join(missing)}",
            field=f"{FIELD}.algorithmName",
        )


def _derived_seed(seed: int, stored: int) -> int:
    """The sampler's seed after ``stored`` trials (a restarted sampler must not draw the
    points it drew for them again)."""
    return seed if stored == 0 else (seed * 1_000_003 + stored * 7_919) % 2**31


class Suggester:
    """One experiment's search: see the module docstring."""

    def __init__(self, spec: ExperimentSpec, *, seed: int, workdir: Path | None = None) -> None:
        validate_algorithm(spec)
        self.spec = spec
        self.algorithm = spec.algorithm.algorithmName
        self.settings = parse_settings(spec.algorithm, ALGORITHM_SETTINGS, field=FIELD)
        self.seed = int(self.settings.get("seed", seed))
        self.workdir = workdir
        self.directions = [o.type for o in spec.objectives]
        self.median_stop = make_median_stop(spec)
        bounds = None
        if self.algorithm == "hyperband":
            bounds = self._resource_bounds()
        self.space = SearchSpace(spec.parameters, bounds=bounds)
        self._lock = threading.RLock()
        if optuna.logging.get_verbosity() == optuna.logging.INFO:
            optuna.logging.set_verbosity(optuna.logging.WARNING)  # not a line per trial
        self._reset(0)

    def _resource_bounds(self) -> dict[str, tuple[float, float]]:
        from ketch.tuning.hyperband import max_bracket

        name = self.settings["resource_name"]
        parameter = self.spec.parameter(name)
        r_l, eta = self.settings["r_l"], self.settings.get("eta", 3.0)
        smallest, largest = r_l / eta ** max_bracket(r_l, eta), r_l
        if parameter.parameterType == "int":
            smallest, largest = max(1, math.floor(smallest + 1e-9)), math.floor(r_l + 1e-9)
        return {name: (min(parameter.low, smallest), max(parameter.high, largest))}

    def _reset(self, stored: int) -> None:
        replayed = self.algorithm in _REPLAYED
        seed = self.seed if replayed else _derived_seed(self.seed, stored)
        self.strategy = self._make_strategy(seed)
        sampler = (
            optuna.samplers.RandomSampler(seed=seed)
            if self.strategy is not None
            else make_sampler(self.algorithm, self.settings, seed)
        )
        self.study = optuna.create_study(
            storage=optuna.storages.InMemoryStorage(),
            # Optuna's Hyperband assigns trials to brackets by hashing the study name:
            # a name fixed by the experiment's seed keeps the brackets the same from
            # run to run and across a restart (a random name would not).
            study_name=f"ketch-{self.seed}",
            sampler=sampler,
            pruner=make_pruner(self.spec) or optuna.pruners.NopPruner(),
            directions=self.directions,
        )
        self._trials: dict[str, optuna.trial.Trial] = {}
        self._names: dict[int, str] = {}
        self._suggestions: dict[str, Suggestion] = {}
        self._states: dict[str, TrialState] = {}
        self._intermediate: dict[str, list[tuple[int, float]]] = {}

    def _make_strategy(self, seed: int) -> Strategy | None:
        """``seed``: the restored sampler's seed; a grid's order and PBT's generations
        follow the experiment's seed alone."""
        name, settings = self.algorithm, self.settings
        maximize = self.directions[0] == "maximize"
        if name in OPTUNA_ALGORITHMS:
            return None
        if name == "grid":
            return GridStrategy(self.space, self.seed)
        if name == "sobol":
            return SobolStrategy(self.space)
        if name == "cmaes":
            from ketch.tuning.cma import CmaStrategy

            return CmaStrategy(
                self.space,
                maximize=maximize,
                seed=seed,
                sigma=settings.get("sigma"),
                restart_strategy=settings.get("restart_strategy"),
            )
        if name == "hyperband":
            from ketch.tuning.hyperband import HyperbandStrategy

            return HyperbandStrategy(
                self.space,
                resource_name=settings["resource_name"],
                r_l=settings["r_l"],
                eta=settings.get("eta", 3.0),
                maximize=maximize,
                seed=seed,
            )
        if name == "pbt":
            from ketch.tuning.pbt import PbtStrategy

            return PbtStrategy(
                self.space,
                maximize=maximize,
                seed=self.seed,
                n_population=settings["n_population"],
                truncation_threshold=settings["truncation_threshold"],
                resample_probability=settings.get("resample_probability"),
                workdir=self.workdir,
            )
        raise InvalidSpec(f"unknown algorithm {name!r}", field=f"{FIELD}.algorithmName")

    # -- restore ----------------------------------------------------------------------

    def restore(self, history: list[TrialRecord]) -> None:
        """Rebuild the study from stored trials, finished and running, in creation order
        (a suggester that was asked before is rebuilt from ``history`` alone)."""
        with self._lock:
            self._reset(len(history))
            if self.strategy is not None:
                self.strategy.restore(history)
            replay = self.algorithm in _REPLAYED
            for record in history:
                if record.name in self._suggestions:
                    continue
                if replay:
                    self._replay(record)
                else:
                    self._add(record)

    def _add(self, record: TrialRecord) -> None:
        parameters = {k: v for k, v in record.parameters.items() if k in self.space.codecs}
        state, values = self._final(record.state, record.values)
        intermediate = {
            int(step): float(value) for step, value in record.intermediate if math.isfinite(value)
        }
        # A pruner keeps its rungs in the trials: it sees each stored trial's reports
        # while the trial still runs, as it did when the trial ran.
        pruned = bool(intermediate) and not isinstance(self.study.pruner, optuna.pruners.NopPruner)
        frozen = optuna.trial.create_trial(
            state=OptunaState.RUNNING if pruned else state,
            values=None if pruned else values,
            params=self.space.internals(parameters),
            distributions={k: self.space.codecs[k].distribution for k in parameters},
            intermediate_values=intermediate if len(self.directions) == 1 else None,
        )
        self.study.add_trial(frozen)
        stored = self.study.trials[-1]
        self._register(record, stored.number, optuna.trial.Trial(self.study, stored._trial_id))
        if pruned:
            self.study.pruner.prune(self.study, stored)
            if state != OptunaState.RUNNING:
                self.study.tell(stored.number, values, state=state)

    def _replay(self, record: TrialRecord) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # fixed values out of a range
            self.study.enqueue_trial(self.space.internals(record.parameters))
            trial = self.study.ask(self.space.distributions)
        self._register(record, trial.number, trial)
        if record.state != "running":
            state, values = self._final(record.state, record.values)
            for step, value in record.intermediate:
                if len(self.directions) == 1 and math.isfinite(value):
                    trial.report(value, step)
            self.study.tell(trial, values, state=state)

    def _register(self, record: TrialRecord, number: int, trial: optuna.trial.Trial) -> None:
        self._trials[record.name] = trial
        self._names[number] = record.name
        self._suggestions[record.name] = Suggestion(dict(record.parameters), dict(record.labels))
        self._states[record.name] = record.state
        self._intermediate[record.name] = list(record.intermediate)

    def _final(
        self, state: TrialState, values: list[float] | None
    ) -> tuple[OptunaState, list[float] | None]:
        """Optuna's state and values for a trial; a success without usable values fails."""
        if state == "succeeded":
            if values is None or len(values) != len(self.directions):
                return OptunaState.FAIL, None
            if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
                return OptunaState.FAIL, None
            return OptunaState.COMPLETE, [float(v) for v in values]
        return _STATES[state], None

    # -- ask / tell / report ------------------------------------------------------------

    def ask(self, names: list[str]) -> dict[str, Suggestion]:
        """Suggestions for new trials called ``names`` (a name asked before gets its
        suggestion again); fewer when the algorithm has nothing more to run now."""
        out: dict[str, Suggestion] = {}
        with self._lock:
            for name in names:
                if name in self._suggestions:
                    out[name] = self._suggestions[name]
                    continue
                asked = self._ask_one(name)
                if asked is None:
                    break
                trial, suggestion = asked
                record = TrialRecord(name, suggestion.parameters, labels=suggestion.labels)
                self._register(record, trial.number, trial)
                self._suggestions[name] = suggestion
                out[name] = suggestion
        return out

    def _ask_one(self, name: str) -> tuple[optuna.trial.Trial, Suggestion] | None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            warnings.simplefilter("ignore", UserWarning)
            if self.strategy is None:
                trial = self.study.ask(self.space.distributions)
                return trial, Suggestion(self.space.values(trial.params))
            proposal = self.strategy.propose(name)
            if proposal is None:
                return None
            values, labels, env = proposal
            self.study.enqueue_trial(self.space.internals(values))
            trial = self.study.ask(self.space.distributions)
        return trial, Suggestion(values, labels, env)

    def tell(self, name: str, state: str, values: list[float] | None) -> None:
        """Trial ``name`` ended: ``state`` is succeeded, failed, killed or early_stopped;
        ``values`` its objective value(s) in objective order. Telling twice is a no-op."""
        if state not in FINISHED:
            raise ValueError(
                f"a trial ends succeeded, failed, killed or early_stopped, not {state!r}"
            )
        with self._lock:
            trial = self._trials.get(name)
            if trial is None:
                raise KeyError(f"trial {name!r} was not suggested by this experiment")
            if self._states[name] != "running":
                return
            self._states[name] = state
            optuna_state, told = self._final(state, values)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                self.study.tell(trial, told, state=optuna_state, skip_if_finished=True)
            if self.strategy is not None:
                self.strategy.finish(name, state, values)

    def report(self, name: str, step: int, value: float) -> bool:
        """An intermediate objective value of a running trial; True: stop it early
        (``spec.earlyStopping``). Repeated steps and non-numbers are ignored."""
        with self._lock:
            series = self._intermediate.get(name)
            if series is None or self._states.get(name) != "running":
                return False
            if not math.isfinite(value) or any(s == step for s, _ in series):
                return False
            series.append((int(step), float(value)))
            if self.median_stop is not None:
                completed = (
                    self._intermediate[n] for n, s in self._states.items() if s == "succeeded"
                )
                return self.median_stop.should_stop(series, completed)
            if isinstance(self.study.pruner, optuna.pruners.NopPruner):
                return False
            trial = self._trials[name]
            trial.report(float(value), int(step))
            return trial.should_prune()

    # -- results ----------------------------------------------------------------------

    @property
    def exhausted(self) -> bool:
        """Nothing will ever be suggested again (a grid done, Hyperband's last bracket
        handed out)."""
        with self._lock:
            return self.strategy is not None and self.strategy.exhausted

    def pareto_front(self) -> list[str]:
        """The trials on the Pareto front (several objectives), else the best trial."""
        with self._lock:
            if len(self.directions) > 1:
                return [self._names[t.number] for t in self.study.best_trials]
            completed = self.study.get_trials(deepcopy=False, states=(OptunaState.COMPLETE,))
            if not completed:
                return []
            return [self._names[self.study.best_trial.number]]
