"""Trial overhead of ``ketch.tune`` against Ray Tune, in one script run.

Both run N trials of a trivial objective (``score = x * (1 - x)``, no sleep) two at
a time, with random search over ``x`` in [0, 1]:

- Ray Tune (installed into its own virtual environment under ``benchmarks/.cache``,
  which git ignores; never a Ketch dependency): its default
  ``Tuner(trainable, param_space=..., tune_config=TuneConfig(num_samples=N,
  max_concurrent_trials=2, metric=..., mode=...))``, once with a function trainable
  and once with a trainable that runs the objective as a ``python -c`` subprocess;
  then the function trainable once more with ``reuse_actors=True`` (off by default:
  each trial then starts its own worker actor, which is most of Ray Tune's figure).
  ``ray.init`` is timed apart and left out of the per-trial figures.
- Ketch, embedded (no server): ``ketch.tune(objective=fn, ...)`` for function trials
  (each runs the function's source in a process of its own, as Katib's tune does),
  and an Experiment manifest whose trial template is a ``batch/v1`` Job running the
  same ``python -c`` for process trials (``TuningClient(server=False).run_experiment``).

Overhead per trial = wall / N * parallel - the objective's own time (0 for a
function; for a process, a bare run of the same command, measured here). The table
shows each case's overhead, Ketch's target, Ray Tune's figure and the ratio::

    python benchmarks/tuning_vs_raytune.py [--trials 100] [--parallel 2] [--only ketch|raytune]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from peer_venv import log, peer_python  # noqa: E402

RAY_PACKAGES = ["ray[tune]==2.60.0"]
TARGET_MS = {"function": 50.0, "process": 150.0}
OBJECTIVE_CODE = "import sys; x = float(sys.argv[1]); print(f'score={x * (1 - x)}')"


@dataclass
class Measured:
    case: str  # function | process
    trials: int
    wall_s: float
    objective_s: float = 0.0

    def overhead_ms(self, parallel: int) -> float:
        return (self.wall_s / self.trials * parallel - self.objective_s) * 1000


# -- the objective run as a process, alone ---------------------------------------------


def bare_command_seconds(python: str, runs: int = 5) -> float:
    """Median wall time of ``python -c OBJECTIVE 0.5`` by itself: the objective's own cost."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([python, "-c", OBJECTIVE_CODE, "0.5"], check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


# -- Ray Tune ---------------------------------------------------------------------------

RAY_DRIVER = r"""
import json, subprocess, sys, time

started = time.perf_counter()
import ray
from ray import tune

trials, parallel, case, storage, python, code, reuse = (
    int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6],
    sys.argv[7] == "1",
)
ray.init()
init_s = time.perf_counter() - started


def function_trainable(config):
    x = config["x"]
    tune.report({"score": x * (1 - x)})


def process_trainable(config):
    out = subprocess.run([python, "-c", code, str(config["x"])], capture_output=True, text=True, check=True)
    tune.report({"score": float(out.stdout.strip().split("=", 1)[1])})


trainable = function_trainable if case == "function" else process_trainable
tuner = tune.Tuner(
    trainable,
    param_space={"x": tune.uniform(0, 1)},
    tune_config=tune.TuneConfig(
        num_samples=trials, max_concurrent_trials=parallel, metric="score", mode="max",
        **({"reuse_actors": True} if reuse else {}),
    ),
    run_config=tune.RunConfig(storage_path=storage, name=f"bench-{case}-{int(reuse)}"),
)
start = time.perf_counter()
results = tuner.fit()
wall_s = time.perf_counter() - start
best = results.get_best_result()
errors = sum(1 for r in results if r.error)
ray.shutdown()
print("RESULT " + json.dumps({
    "init_s": init_s, "wall_s": wall_s, "trials": len(results), "errors": errors,
    "best": best.metrics["score"],
}))
"""


def run_raytune(
    case: str, trials: int, parallel: int, workdir: Path, reuse: bool = False
) -> tuple[Measured, float]:
    """``(measured, ray.init seconds)`` for one case, run by the Ray venv's interpreter.

    ``reuse`` turns on ``reuse_actors`` (off by default): trials then share worker
    actors instead of starting one each."""
    python = peer_python("raytune-venv", RAY_PACKAGES)
    driver = workdir / "ray_driver.py"
    driver.write_text(RAY_DRIVER)
    log_file = workdir / f"raytune-{case}-{int(reuse)}.log"
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONWARNINGS": "ignore"}
    env.pop("PYTHONPATH", None)
    with log_file.open("w") as output:
        finished = subprocess.run(
            [
                str(python),
                str(driver),
                str(trials),
                str(parallel),
                case,
                str(workdir / "ray_results"),
                str(python),
                OBJECTIVE_CODE,
                "1" if reuse else "0",
            ],
            stdout=subprocess.PIPE,
            stderr=output,
            text=True,
            env=env,
            cwd=workdir,
        )
    lines = [line for line in finished.stdout.splitlines() if line.startswith("RESULT ")]
    if finished.returncode != 0 or not lines:
        raise RuntimeError(
            f"Ray Tune ({case}) failed with exit {finished.returncode}; see {log_file}"
        )
    result = json.loads(lines[-1].removeprefix("RESULT "))
    if result["trials"] != trials or result["errors"]:
        raise RuntimeError(
            f"Ray Tune ({case}) ran {result['trials']} trials, {result['errors']} failed"
        )
    objective = bare_command_seconds(str(python)) if case == "process" else 0.0
    return Measured(case, trials, result["wall_s"], objective), float(result["init_s"])


# -- Ketch ------------------------------------------------------------------------------
# ketch_function_trials and ketch_process_trials are the only callers of Ketch's tuning API.


def objective(parameters):  # unannotated: ketch.tune runs this source alone, without `Any`
    """The function trial: self-contained, as ``ketch.tune`` runs its source."""
    x = float(parameters["x"])
    print(f"score={x * (1 - x)}")


def ketch_function_trials(trials: int, parallel: int) -> tuple[float, Any]:
    """``(wall seconds, experiment)`` of ``ketch.tune`` with a function objective, embedded."""
    import ketch

    start = time.perf_counter()
    experiment = ketch.tune(
        name="bench-function",
        objective=objective,
        parameters={"x": ketch.search.double(min=0, max=1)},
        objective_metric_name="score",
        objective_type="maximize",
        algorithm_name="random",
        max_trial_count=trials,
        parallel_trial_count=parallel,
        server=False,  # embedded, even when a server answers at KETCH_URL
    )
    return time.perf_counter() - start, experiment


def process_experiment(trials: int, parallel: int) -> dict[str, Any]:
    """A Katib Experiment whose trials are batch/v1 Jobs running ``python -c``."""
    return {
        "apiVersion": "kubeflow.org/v1beta1",
        "kind": "Experiment",
        "metadata": {"name": "bench-process"},
        "spec": {
            "objective": {"type": "maximize", "objectiveMetricName": "score"},
            "algorithm": {"algorithmName": "random"},
            "parallelTrialCount": parallel,
            "maxTrialCount": trials,
            "maxFailedTrialCount": trials,
            "parameters": [
                {"name": "x", "parameterType": "double", "feasibleSpace": {"min": "0", "max": "1"}},
            ],
            "metricsCollectorSpec": {"collector": {"kind": "StdOut"}},
            "trialTemplate": {
                "primaryContainerName": "objective",
                "trialParameters": [{"name": "x", "reference": "x"}],
                "trialSpec": {
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "spec": {
                        "template": {
                            "spec": {
                                "containers": [
                                    {
                                        "name": "objective",
                                        "image": "python:3.11",
                                        "command": [
                                            sys.executable,
                                            "-c",
                                            OBJECTIVE_CODE,
                                            "${trialParameters.x}",
                                        ],
                                    }
                                ],
                                "restartPolicy": "Never",
                            }
                        }
                    },
                },
            },
        },
    }


def ketch_process_trials(trials: int, parallel: int) -> tuple[float, Any]:
    """``(wall seconds, experiment)`` of an Experiment of batch/v1 Job trials, embedded."""
    from ketch.tuning.client import TuningClient

    manifest = process_experiment(trials, parallel)
    start = time.perf_counter()
    experiment = TuningClient(server=False).run_experiment(manifest)
    return time.perf_counter() - start, experiment


def _check_finished(experiment: Any, trials: int) -> None:
    """The experiment succeeded with every trial done."""
    status = experiment.status
    done = int(status.get("trialsSucceeded") or 0)
    if not experiment.succeeded or done != trials:
        raise RuntimeError(f"Ketch ran {done} of {trials} trials: {json.dumps(status)[:2000]}")


def run_ketch(case: str, trials: int, parallel: int, workdir: Path) -> Measured:
    os.environ["KETCH_HOME"] = str(workdir / f"ketch-{case}")  # a fresh store per case
    os.environ.pop("KETCH_URL", None)
    os.environ.pop("KETCH_DATABASE_URL", None)
    runner: Callable[[int, int], tuple[float, Any]] = (
        ketch_function_trials if case == "function" else ketch_process_trials
    )
    total, experiment = runner(trials, parallel)
    _check_finished(experiment, trials)
    # like Ray's figure (tuner.fit, not ray.init): from the experiment's start to its
    # completion as its status records them; the one-time start-up is logged apart
    wall = _seconds(experiment.status["completionTime"]) - _seconds(experiment.status["startTime"])
    log(f"Ketch {case}: {total - wall:.2f}s of one-time start-up (imports, store) not counted")
    objective_s = bare_command_seconds(sys.executable) if case == "process" else 0.0
    return Measured(case, trials, wall, objective_s)


def _seconds(stamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


# -- the table --------------------------------------------------------------------------


#: (row label, Ketch case, Ray Tune run): Ray Tune's default, then with reuse_actors on
ROWS = [
    ("function", "function", "function"),
    ("process", "process", "process"),
    ("function, Ray reusing actors", "function", "function-reuse"),
]


def _cell(value: float | None, width: int, digits: int) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width}.{digits}f}"


def table(
    ketch: dict[str, Measured | str],
    ray: dict[str, Measured],
    parallel: int,
    ray_init: float | None,
) -> str:
    """One row per case: Ketch's wall and overhead, its target, Ray Tune's, the ratio."""
    header = (
        f"{'case':<29} {'trials':>6} {'objective ms':>12} {'Ketch wall s':>12} {'Ketch ms':>9} "
        f"{'target ms':>9} {'Ray wall s':>10} {'Ray Tune ms':>11} {'ratio':>6}"
    )
    lines = [header, "-" * len(header)]
    for label, ketch_case, ray_run in ROWS:
        peer, mine = ray.get(ray_run), ketch.get(ketch_case)
        if peer is None and ray_run != ketch_case:
            continue  # a Ray Tune variant that was not run
        measured = mine if isinstance(mine, Measured) else None
        shown = measured or peer
        if shown is None:
            if mine is not None:
                lines.append(f"{label:<29} Ketch not measured: {mine}")
            continue
        ray_ms = peer.overhead_ms(parallel) if peer else None
        ketch_ms = measured.overhead_ms(parallel) if measured else None
        lines.append(
            " ".join(
                [
                    f"{label:<29}",
                    f"{shown.trials:>6}",
                    _cell(shown.objective_s * 1000, 12, 1),
                    _cell(measured.wall_s if measured else None, 12, 2),
                    _cell(ketch_ms, 9, 1),
                    _cell(TARGET_MS[ketch_case], 9, 0),
                    _cell(peer.wall_s if peer else None, 10, 2),
                    _cell(ray_ms, 11, 1),
                    _cell(ketch_ms / ray_ms if ketch_ms is not None and ray_ms else None, 6, 2),
                ]
            )
        )
        if isinstance(mine, str) and ray_run == ketch_case:
            lines.append(f"  Ketch {ketch_case} trials not measured: {mine}")
    lines.append(
        f"overhead per trial = wall / trials * {parallel} (parallel) - objective; "
        "ratio = Ketch / Ray Tune (below 1: Ketch is leaner)"
    )
    if ray_init is not None:
        lines.append(f"Ray Tune's ray.init took {ray_init:.2f} s (left out of its figures)")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--only", choices=("ketch", "raytune"))
    parser.add_argument("--case", choices=("function", "process"), action="append")
    args = parser.parse_args()
    cases = args.case or ["function", "process"]
    ray: dict[str, Measured] = {}
    ketch: dict[str, Measured | str] = {}
    ray_init: float | None = None
    with tempfile.TemporaryDirectory(prefix="ketch-bench-tune-") as folder:
        workdir = Path(folder)
        for case in cases:
            # Ketch first: Ray's processes take a while to wind down after each of its
            # runs, and whatever runs next pays for it
            if args.only != "raytune":
                log(f"Ketch, {case} trials: {args.trials} trials, {args.parallel} at a time ...")
                try:
                    ketch[case] = run_ketch(case, args.trials, args.parallel, workdir)
                except Exception as exc:  # noqa: BLE001 - reported in the table, keeping Ray Tune's figures
                    log(f"Ketch, {case} trials failed: {type(exc).__name__}: {exc}")
                    ketch[case] = f"{type(exc).__name__}: {str(exc)[:200]}"
            if args.only != "ketch":
                runs = [(case, False)] + ([("function-reuse", True)] if case == "function" else [])
                for run, reuse in runs:
                    note = ", reuse_actors=True" if reuse else ""
                    log(
                        f"Ray Tune, {case} trials{note}: {args.trials} trials, {args.parallel} at a time ..."
                    )
                    ray[run], init = run_raytune(case, args.trials, args.parallel, workdir, reuse)
                    ray_init = init if ray_init is None else min(ray_init, init)
    print(table(ketch, ray, args.parallel, ray_init))


if __name__ == "__main__":
    main()
