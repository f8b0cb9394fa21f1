"""Search quality of Ketch's suggestion algorithms against plain Optuna, in one script run.

Each case runs the algorithm through :class:`ketch.tuning.algorithms.Suggester` (the
code path Experiments use: a Katib spec, typed suggestions, ask and tell) and plain
Optuna's sampler with the same seeds, asking ``parallel`` trials at a time and then
telling them (as an experiment with that ``parallelTrialCount`` does):

- ``tpe``, 100 trials on Branin (2-d, optimum 0.397887; target: median best <= 0.45);
- ``cmaes``, 1,000 trials on Hartmann6 (6-d, optimum -3.32237; target: median best
  <= -3.30). Ketch's ``cmaes`` runs the ``cmaes`` library itself (Katib's
  ``restart_strategy`` included); the peer is Optuna's ``CmaEsSampler``.

The table shows the median over seeds of the best value found, the target, and the
ask+tell time per trial (the objective's own time left out; one untimed warm-up run
each, then the seeds interleaved) with the ratio Optuna / Ketch (above 1: Ketch is
faster). The script exits 1 when Ketch misses a target::

    python benchmarks/tuning_quality.py [--seeds 10] [--parallel 1 2] [--only tpe|cmaes]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SRC = Path(__file__).resolve().parents[1] / "src"
if (SRC / "ketch").is_dir() and str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))  # run from a checkout without `pip install -e .`

import numpy as np  # noqa: E402
import optuna  # noqa: E402

from ketch.tuning.algorithms import Suggester  # noqa: E402
from ketch.tuning.spec import parse_experiment  # noqa: E402

warnings.filterwarnings("ignore")
optuna.logging.set_verbosity(optuna.logging.WARNING)


def branin(x: list[float]) -> float:
    x1, x2 = x
    b, c, t = 5.1 / (4 * math.pi**2), 5 / math.pi, 1 / (8 * math.pi)
    return (x2 - b * x1**2 + c * x1 - 6) ** 2 + 10 * (1 - t) * math.cos(x1) + 10


_A = np.array(
    [
        [10, 3, 17, 3.5, 1.7, 8],
        [0.05, 10, 17, 0.1, 8, 14],
        [3, 3.5, 1.7, 10, 17, 8],
        [17, 8, 0.05, 10, 0.1, 14],
    ]
)
_P = 1e-4 * np.array(
    [
        [1312, 1696, 5569, 124, 8283, 5886],
        [2329, 4135, 8307, 3736, 1004, 9991],
        [2348, 1451, 3522, 2883, 3047, 6650],
        [4047, 8828, 8732, 5743, 1091, 381],
    ]
)
_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])


def hartmann6(x: list[float]) -> float:
    inner = np.sum(_A * (np.asarray(x) - _P) ** 2, axis=1)
    return float(-np.sum(_ALPHA * np.exp(-inner)))


@dataclass
class Case:
    algorithm: str
    function: Callable[[list[float]], float]
    function_name: str
    bounds: list[tuple[float, float]]
    trials: int
    optimum: float
    target: float
    peer: Callable[[int], optuna.samplers.BaseSampler]


CASES = [
    Case(
        "tpe",
        branin,
        "Branin",
        [(-5, 10), (0, 15)],
        100,
        0.397887,
        0.45,
        lambda seed: optuna.samplers.TPESampler(seed=seed, constant_liar=True),
    ),
    Case(
        "cmaes",
        hartmann6,
        "Hartmann6",
        [(0, 1)] * 6,
        1000,
        -3.32237,
        -3.30,
        lambda seed: optuna.samplers.CmaEsSampler(seed=seed),
    ),
]


@dataclass
class Result:
    best: float
    seconds: float  # ask + tell, the objective left out


def _spec(case: Case, parallel: int) -> Any:
    parameters = [
        {
            "name": f"x{i}",
            "parameterType": "double",
            "feasibleSpace": {"min": str(lo), "max": str(hi)},
        }
        for i, (lo, hi) in enumerate(case.bounds)
    ]
    return parse_experiment(
        {
            "objective": {"type": "minimize", "objectiveMetricName": "y"},
            "algorithm": {"algorithmName": case.algorithm},
            "parameters": parameters,
            "parallelTrialCount": parallel,
            "maxTrialCount": case.trials,
            "trialTemplate": {
                "trialParameters": [
                    {"name": p["name"], "reference": p["name"]} for p in parameters
                ],
                "trialSpec": {
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "spec": {"args": [f"${{trialParameters.{p['name']}}}" for p in parameters]},
                },
            },
        },
        name="bench",
    )


def run_ketch(case: Case, seed: int, parallel: int) -> Result:
    suggester = Suggester(_spec(case, parallel), seed=seed)
    names = [f"x{i}" for i in range(len(case.bounds))]
    best, spent, done = math.inf, 0.0, 0
    while done < case.trials:
        batch = [f"t{done + i}" for i in range(min(parallel, case.trials - done))]
        start = time.perf_counter()
        suggestions = suggester.ask(batch)
        spent += time.perf_counter() - start
        values = {
            n: case.function([s.parameters[k] for k in names]) for n, s in suggestions.items()
        }
        start = time.perf_counter()
        for name, value in values.items():
            suggester.tell(name, "succeeded", [value])
        spent += time.perf_counter() - start
        best = min(best, *values.values())
        done += len(batch)
    return Result(best, spent)


def run_optuna(case: Case, seed: int, parallel: int) -> Result:
    study = optuna.create_study(sampler=case.peer(seed))
    space = {
        f"x{i}": optuna.distributions.FloatDistribution(lo, hi)
        for i, (lo, hi) in enumerate(case.bounds)
    }
    best, spent, done = math.inf, 0.0, 0
    while done < case.trials:
        count = min(parallel, case.trials - done)
        start = time.perf_counter()
        trials = [study.ask(space) for _ in range(count)]
        spent += time.perf_counter() - start
        values = [case.function([t.params[k] for k in space]) for t in trials]
        start = time.perf_counter()
        for trial, value in zip(trials, values, strict=True):
            study.tell(trial, value)
        spent += time.perf_counter() - start
        best = min(best, *values)
        done += count
    return Result(best, spent)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--parallel", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--only", choices=[c.algorithm for c in CASES], default=None)
    args = parser.parse_args(argv)

    rows = []
    for case in CASES:
        if args.only and case.algorithm != args.only:
            continue
        for parallel in args.parallel:
            print(
                f"running {case.algorithm} on {case.function_name}, {case.trials} trials, "
                f"parallel {parallel}, {args.seeds} seeds ...",
                flush=True,
            )
            run_ketch(case, 0, parallel)  # warm-up: imports and first-call caches
            run_optuna(case, 0, parallel)
            ketch, peer = [], []
            for seed in range(args.seeds):  # interleaved, so load on the machine hits both
                ketch.append(run_ketch(case, seed, parallel))
                peer.append(run_optuna(case, seed, parallel))
            rows.append((case, parallel, ketch, peer))

    print()
    header = (
        f"{'case':<24} {'par':>3} {'Ketch best':>11} {'Optuna best':>12} {'target':>7} "
        f"{'ok':>3} {'Ketch ms/trial':>15} {'Optuna ms/trial':>16} {'Optuna/Ketch':>13}"
    )
    print(header)
    failed = False
    for case, parallel, ketch, peer in rows:
        k_best = statistics.median(r.best for r in ketch)
        p_best = statistics.median(r.best for r in peer)
        k_ms = 1000 * sum(r.seconds for r in ketch) / (case.trials * len(ketch))
        p_ms = 1000 * sum(r.seconds for r in peer) / (case.trials * len(peer))
        ok = k_best <= case.target
        failed |= not ok
        label = f"{case.algorithm} {case.function_name} x{case.trials}"
        print(
            f"{label:<24} {parallel:>3} {k_best:>11.4f} {p_best:>12.4f} {case.target:>7.2f} "
            f"{'yes' if ok else 'NO':>3} {k_ms:>15.2f} {p_ms:>16.2f} {p_ms / k_ms:>13.2f}"
        )
    print(
        f"\nmedian over {args.seeds} seeds of the best value; optima: Branin 0.397887, "
        "Hartmann6 -3.32237"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
