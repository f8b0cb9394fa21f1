"""The ``algorithmSettings`` each search and early-stopping algorithm accepts.

Names are Katib's (its suggestion services': hyperopt, Optuna, goptuna, skopt,
Hyperband, PBT, and its median-stopping service); the few Ketch extras are Optuna's
own argument names. Values are text in a manifest; :func:`parse_settings` turns them
into typed values and raises :class:`InvalidSpec` naming the setting.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ketch.core.errors import InvalidSpec
from ketch.tuning.spec import AlgorithmSpec


@dataclass(frozen=True)
class Setting:
    """One setting: how its text is read (``parse`` raises ``ValueError`` with the
    reason) and under which key it is handed to the algorithm."""

    parse: Callable[[str], Any]
    key: str
    required: bool = False


def integer(low: int | None = None) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            number = float(text)
        except ValueError:
            raise ValueError(f"{text!r} is not an integer") from None
        if not number.is_integer():
            raise ValueError(f"{text!r} is not an integer")
        if low is not None and number < low:
            raise ValueError(f"must be at least {low} (got {text})")
        return int(number)

    return parse


def number(
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a number") from None
        if low is not None and (value < low or (low_open and value == low)):
            raise ValueError(
                f"must be {'greater than' if low_open else 'at least'} {low} (got {text})"
            )
        if high is not None and (value > high or (high_open and value == high)):
            raise ValueError(
                f"must be {'less than' if high_open else 'at most'} {high} (got {text})"
            )
        return value

    return parse


def choice(*allowed: str, refused: dict[str, str] | None = None) -> Callable[[str], str]:
    """One of ``allowed``; ``refused`` maps values Katib knows but Ketch cannot honor to why."""

    def parse(text: str) -> str:
        if refused and text in refused:
            raise ValueError(refused[text])
        if text not in allowed:
            raise ValueError(f"{text!r} is not one of {', '.join(allowed)}")
        return text

    return parse


def boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise ValueError(f"{text!r} is not true or false")


def text(value: str) -> str:
    if not value:
        raise ValueError("must not be empty")
    return value


def auto_or_integer(low: int) -> Callable[[str], int | str]:
    def parse(value: str) -> int | str:
        return "auto" if value == "auto" else integer(low)(value)

    return parse


_SEED = Setting(integer(0), "seed")
_TPE = {
    "random_state": _SEED,
    "n_startup_trials": Setting(integer(0), "n_startup_trials"),
    "n_ei_candidates": Setting(integer(1), "n_ei_candidates"),
    "n_EI_candidates": Setting(integer(1), "n_ei_candidates"),
    "gamma": Setting(number(0, 1, low_open=True, high_open=True), "gamma"),
    "prior_weight": Setting(number(0, low_open=True), "prior_weight"),
    "consider_magic_clip": Setting(boolean, "consider_magic_clip"),
    "consider_endpoints": Setting(boolean, "consider_endpoints"),
}

ALGORITHM_SETTINGS: dict[str, dict[str, Setting]] = {
    "random": {"random_state": _SEED},
    "grid": {"random_state": _SEED},
    "sobol": {},
    "tpe": _TPE,
    "multivariate-tpe": _TPE,
    "cmaes": {
        "random_state": _SEED,
        "sigma": Setting(number(0, low_open=True), "sigma"),
        "restart_strategy": Setting(choice("none", "None", "ipop", "bipop"), "restart_strategy"),
    },
    "bayesianoptimization": {
        "random_state": _SEED,
        "n_initial_points": Setting(integer(0), "n_startup_trials"),
        "base_estimator": Setting(
            choice(
                "GP",
                refused={
                    other: f"base_estimator {other} is not available: Ketch's Bayesian "
                    "optimization is Optuna's Gaussian process; use GP, or the tpe "
                    "algorithm for a tree-based model"
                    for other in ("RF", "ET", "GBRT")
                },
            ),
            "base_estimator",
        ),
        # gp_hedge (skopt's default portfolio) is served by log expected improvement
        "acq_func": Setting(
            choice(
                "gp_hedge",
                "EI",
                refused={
                    other: f"acq_func {other} is not available: Optuna's Gaussian process "
                    "uses (log) expected improvement; use EI or gp_hedge"
                    for other in ("LCB", "PI", "EIps", "PIps")
                },
            ),
            "acq_func",
        ),
        "acq_optimizer": Setting(
            choice(
                "auto",
                "lbfgs",
                refused={
                    "sampling": "acq_optimizer sampling is not available: Optuna optimizes the "
                    "acquisition function with L-BFGS-B from sampled starts; use auto or lbfgs"
                },
            ),
            "acq_optimizer",
        ),
    },
    "hyperband": {
        "resource_name": Setting(text, "resource_name", required=True),
        "r_l": Setting(number(1), "r_l", required=True),
        "eta": Setting(number(1, low_open=True), "eta"),
    },
    "pbt": {
        "suggestion_trial_dir": Setting(text, "suggestion_trial_dir", required=True),
        "n_population": Setting(integer(5), "n_population", required=True),
        "truncation_threshold": Setting(number(0, 1), "truncation_threshold", required=True),
        "resample_probability": Setting(number(0, 1), "resample_probability"),
    },
    # Ketch: NSGA-II (multi-objective), with Optuna's argument names
    "nsga2": {
        "random_state": _SEED,
        "population_size": Setting(integer(2), "population_size"),
        "mutation_prob": Setting(number(0, 1), "mutation_prob"),
        "crossover_prob": Setting(number(0, 1), "crossover_prob"),
        "swapping_prob": Setting(number(0, 1), "swapping_prob"),
    },
}

EARLY_STOPPING_SETTINGS: dict[str, dict[str, Setting]] = {
    "medianstop": {
        "min_trials_required": Setting(integer(1), "min_trials_required"),
        "start_step": Setting(integer(1), "start_step"),
    },
    # Ketch: Optuna's pruners, with their argument names
    "successivehalving": {
        "min_resource": Setting(auto_or_integer(1), "min_resource"),
        "reduction_factor": Setting(integer(2), "reduction_factor"),
        "min_early_stopping_rate": Setting(integer(0), "min_early_stopping_rate"),
        "bootstrap_count": Setting(integer(0), "bootstrap_count"),
    },
    "hyperband": {
        "min_resource": Setting(integer(1), "min_resource"),
        "max_resource": Setting(auto_or_integer(1), "max_resource"),
        "reduction_factor": Setting(integer(2), "reduction_factor"),
        "bootstrap_count": Setting(integer(0), "bootstrap_count"),
    },
}


def parse_settings(
    spec: AlgorithmSpec, known: dict[str, dict[str, Setting]], *, field: str
) -> dict[str, Any]:
    """The typed settings of ``spec`` (``field``: ``spec.algorithm`` or ``spec.earlyStopping``),
    keyed by :attr:`Setting.key`. Unknown algorithm or setting names, bad values and
    missing required settings raise :class:`InvalidSpec`."""
    name = spec.algorithmName
    schema = known.get(name)
    if schema is None:
        raise InvalidSpec(
            f"unknown algorithm {name!r}; use one of {', '.join(known)}",
            field=f"{field}.algorithmName",
        )
    typed: dict[str, Any] = {}
    for index, setting in enumerate(spec.algorithmSettings):
        where = f"{field}.algorithmSettings[{index}]"
        entry = schema.get(setting.name)
        if entry is None:
            hint = f"known: {', '.join(schema)}" if schema else f"{name} takes no settings"
            raise InvalidSpec(
                f"unknown setting {setting.name!r} for algorithm {name} ({hint})",
                field=f"{where}.name",
            )
        try:
            typed[entry.key] = entry.parse(setting.value)
        except ValueError as exc:
            raise InvalidSpec(f"{setting.name}: {exc}", field=f"{where}.value") from None
    given = {s.name for s in spec.algorithmSettings}
    for setting_name, entry in schema.items():
        if entry.required and setting_name not in given:
            raise InvalidSpec(
                f"algorithm {name} needs the setting {setting_name}",
                field=f"{field}.algorithmSettings",
            )
    return typed
