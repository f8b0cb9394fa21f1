"""Ketch against ``kfp.local`` on trivial pipelines, in one script run.

Runs a 1-step pipeline and a 5-step chain of ``inc(x: int) -> int`` components with
``ketch.run`` and with ``kfp.local`` (``SubprocessRunner(use_venv=False)``, calling the
pipeline function directly). Each case gets one warm-up run and then ``--repeat`` timed
runs; the table shows both medians and the ratio kfp.local / Ketch (above 1 means Ketch
is faster), plus Ketch's per-task orchestration overhead::

    python benchmarks/pipelines_vs_kfp_local.py [--repeat 5] [--only ketch|kfp]
"""

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

warnings.filterwarnings("ignore", category=FutureWarning)

from kfp import dsl  # noqa: E402

SRC = Path(__file__).resolve().parents[1] / "src"
if (SRC / "ketch").is_dir() and str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))  # run from a checkout without `pip install -e .`


@dsl.component
def inc(x: int) -> int:
    return x + 1


@dsl.pipeline(name="one-step")
def one_step(x: int = 0) -> int:
    return inc(x=x).output


@dsl.pipeline(name="five-step-chain")
def five_steps(x: int = 0) -> int:
    t = inc(x=x)
    for _ in range(4):
        t = inc(x=t.output)
    return t.output


CASES: list[tuple[str, Callable, int]] = [
    ("1 step", one_step, 1),
    ("5-step chain", five_steps, 5),
]


@contextlib.contextmanager
def _quiet(log_path: Path, enabled: bool = True) -> Iterator[None]:
    """Send both tools' console chatter (and their subprocesses') to a log file."""
    if not enabled:
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log_path, "ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def _time(fn: Callable[[], object], repeat: int) -> list[float]:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def bench_ketch(pipeline: Callable, expected: int, repeat: int, workdir: Path) -> list[float]:
    os.environ["KETCH_HOME"] = str(workdir / "ketch-home")
    import ketch

    def once() -> None:
        run = ketch.run(pipeline, arguments={"x": 0}, enable_caching=False)
        if run.state != "SUCCEEDED":
            raise RuntimeError(f"Ketch run {run.id} {run.state}: {run.error}")
        if run.outputs.get("Output") != expected:
            raise RuntimeError(f"Ketch returned {run.outputs!r}, expected {expected}")

    return _time(once, repeat)


def bench_kfp_local(pipeline: Callable, expected: int, repeat: int, workdir: Path) -> list[float]:
    from kfp import local

    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(workdir / "kfp-local-root"),
    )

    def once() -> None:
        task = pipeline(x=0)
        if task.output != expected:
            raise RuntimeError(f"kfp.local returned {task.output!r}, expected {expected}")

    return _time(once, repeat)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--only", choices=["ketch", "kfp"], default=None)
    parser.add_argument("--verbose", action="store_true", help="show both tools' logs")
    args = parser.parse_args(argv)

    rows = []
    with tempfile.TemporaryDirectory(prefix="ketch-bench-") as tmp:
        workdir = Path(tmp)
        log_path = workdir / "bench.log"
        try:
            for label, pipeline, steps in CASES:
                ketch_times = kfp_times = None
                print(f"running {label} ...", flush=True)
                with _quiet(log_path, not args.verbose):
                    if args.only in (None, "ketch"):
                        ketch_times = bench_ketch(pipeline, steps, args.repeat, workdir)
                    if args.only in (None, "kfp"):
                        kfp_times = bench_kfp_local(pipeline, steps, args.repeat, workdir)
                rows.append((label, steps, ketch_times, kfp_times))
        except Exception:
            if log_path.exists():
                print(log_path.read_text()[-4000:], file=sys.stderr)
            raise

    def med(times: list[float] | None) -> float | None:
        return statistics.median(times) if times else None

    print()
    print(f"{'case':<14} {'Ketch median':>13} {'kfp.local median':>17} {'kfp.local/Ketch':>16}")
    for label, _steps, ketch_times, kfp_times in rows:
        k, f = med(ketch_times), med(kfp_times)
        ratio = f"{f / k:.2f}x" if k and f else "-"
        ks = f"{k:.3f} s" if k is not None else "-"
        fs = f"{f:.3f} s" if f is not None else "-"
        print(f"{label:<14} {ks:>13} {fs:>17} {ratio:>16}")

    k1, k5 = med(rows[0][2]), med(rows[1][2])
    if k1 is not None and k5 is not None:
        print(
            f"\nKetch per-task orchestration overhead: {(k5 - k1) / 4 * 1000:.0f} ms "
            "((median 5-step - median 1-step) / 4)"
        )
    f1, f5 = med(rows[0][3]), med(rows[1][3])
    if f1 is not None and f5 is not None:
        print(f"kfp.local per-task cost:               {(f5 - f1) / 4 * 1000:.0f} ms")
    print(f"({args.repeat} timed runs per case after one warm-up; Python {sys.version.split()[0]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
