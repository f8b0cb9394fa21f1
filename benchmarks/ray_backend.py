"""Per-task overhead of the Ray backend against the local backend.

Starts a local Ray cluster of 3 nodes on 127.0.0.1 (one CPU each, no dashboard),
connects a RayBackend to it and makes a LocalBackend, then runs one trivial
ProcessSpec after another on each, in rounds that take turns, timing start to exit
as a controller sees it (``start``, then ``wait``). Two specs: ``true`` (no
interpreter: what the backend itself costs) and ``python -c pass`` (which the
local backend forks from its warm interpreter, and Ray starts as a new
interpreter: the Ray backend has no warm interpreter per node yet, so that ratio is
the fork server's gain). Prints the medians, p90s and the Ray/local ratios
(target: 3x for ``true``).

    .venv/bin/python benchmarks/ray_backend.py [--tasks 40] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.stats import percentile  # noqa: E402

from ketch.core.backend import Backend, LocalBackend, ProcessSpec, command_entry  # noqa: E402
from ketch.core.backend.ray import RayBackend  # noqa: E402
from ketch.core.backend.ray.cluster import running  # noqa: E402

TARGET = 3.0
SPECS = {
    "true": ProcessSpec("bench true", ["true"]),
    # as a controller makes it: the local backend forks it from its warm interpreter
    "python -c pass": ProcessSpec(
        "bench python",
        [sys.executable, "-c", "pass"],
        python=command_entry([sys.executable, "-c", "pass"], sys.executable),
    ),
}


def run(backend: Backend, spec: ProcessSpec, tasks: int) -> list[float]:
    """Seconds from start to exit of ``tasks`` runs of ``spec``, one after another."""
    times = []
    for _ in range(tasks):
        began = time.perf_counter()
        code = backend.start(spec).wait(120)
        times.append(time.perf_counter() - began)
        if code != 0:
            raise SystemExit(f"{spec.name} exited with {code} on {type(backend).__name__}")
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=40, help="tasks per round and backend")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    started = time.perf_counter()
    with running(nodes=3) as cluster:
        print(f"Ray cluster of 3 nodes up in {time.perf_counter() - started:.1f} s")
        ray = RayBackend(cluster.address)
        local = LocalBackend()
        try:
            for backend in (ray, local):  # warm: runners' first calls, the fork server
                for spec in SPECS.values():
                    run(backend, spec, 3)
            samples: dict[tuple[str, str], list[float]] = {}
            for _ in range(args.rounds):
                for name, spec in SPECS.items():
                    for label, backend in (("ray", ray), ("local", local)):
                        samples.setdefault((name, label), []).extend(run(backend, spec, args.tasks))
        finally:
            ray.shutdown()
            local.shutdown()
    print(f"\n{args.rounds} rounds x {args.tasks} tasks per backend, one at a time")
    print(f"{'spec':<16}{'backend':<8}{'median ms':>10}{'p90 ms':>9}")
    ratios = {}
    for name in SPECS:
        medians = {}
        for label in ("ray", "local"):
            values = samples[(name, label)]
            medians[label] = statistics.median(values)
            print(
                f"{name:<16}{label:<8}{medians[label] * 1000:>10.1f}"
                f"{percentile(values, 90) * 1000:>9.1f}"
            )
        ratios[name] = medians["ray"] / medians["local"]
    print()
    for name, ratio in ratios.items():
        target = f" (target {TARGET:g}x: {'met' if ratio <= TARGET else 'NOT met'})"
        print(
            f"per-task overhead, {name}: Ray / local = {ratio:.2f}x"
            + (target if name == "true" else "")
        )


if __name__ == "__main__":
    main()
