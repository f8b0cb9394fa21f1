"""Optuna samplers for the algorithms Optuna drives, from Katib's settings.

- ``random``: ``RandomSampler``.
- ``tpe`` and ``multivariate-tpe``: ``TPESampler`` with ``constant_liar`` (as Katib's
  Optuna service). ``tpe`` is Optuna's default TPE, which since Optuna 5 models the
  parameters jointly for one objective and independently for several (Katib's
  hyperopt TPE is independent; the joint model finds better points, see
  ``benchmarks/tuning_quality.py``); ``multivariate-tpe`` is always joint. Optuna's names
  (``n_startup_trials``, ``n_ei_candidates``, ``prior_weight``,
  ``consider_magic_clip``, ``consider_endpoints``) and Katib's hyperopt names
  (``n_EI_candidates``; ``gamma``, the fraction of good trials, applied as hyperopt
  does: ``ceil(gamma * sqrt(n))`` of ``n`` trials, at most 25).
- ``bayesianoptimization``: ``GPSampler`` (Gaussian process, log expected
  improvement) for Katib's skopt settings: ``n_initial_points`` is
  ``n_startup_trials``; ``base_estimator`` GP, ``acq_func`` EI (or skopt's default
  ``gp_hedge``) and ``acq_optimizer`` auto/lbfgs are what it does; other values are
  refused when the spec is applied.
- ``nsga2`` (Ketch, for several objectives): ``NSGAIISampler``.

``random_state`` is the seed; without it the experiment's stored seed is used.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import optuna

OPTUNA_ALGORITHMS = ("random", "tpe", "multivariate-tpe", "bayesianoptimization", "nsga2")


def hyperopt_gamma(fraction: float) -> Callable[[int], int]:
    def gamma(n: int) -> int:
        return min(math.ceil(fraction * math.sqrt(n)), 25)

    return gamma


def make_sampler(name: str, settings: dict[str, Any], seed: int) -> optuna.samplers.BaseSampler:
    """The sampler of algorithm ``name`` (one of :data:`OPTUNA_ALGORITHMS`) with typed
    ``settings`` (see :mod:`ketch.tuning.settings`)."""
    options = dict(settings)
    seed = options.pop("seed", seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.simplefilter("ignore", FutureWarning)  # Optuna 4.9 deprecated ``gamma``
        if name == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        if name in ("tpe", "multivariate-tpe"):
            if "gamma" in options:
                options["gamma"] = hyperopt_gamma(options["gamma"])
            return optuna.samplers.TPESampler(
                seed=seed,
                constant_liar=True,
                multivariate=True if name == "multivariate-tpe" else None,
                **options,
            )
        if name == "bayesianoptimization":
            for done_by_gp in ("base_estimator", "acq_func", "acq_optimizer"):
                options.pop(done_by_gp, None)
            return optuna.samplers.GPSampler(seed=seed, **options)
        if name == "nsga2":
            return optuna.samplers.NSGAIISampler(seed=seed, **options)
    raise ValueError(f"{name} is not an Optuna-driven algorithm")
