"""A ParallelFor over 200 trivial items with Ketch, timed against the 10 s target.

python benchmarks/parallelfor_200.py [--items 200] [--target 10] [--parallelism N]
"""

import argparse
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore", category=FutureWarning)

from kfp import dsl  # noqa: E402

SRC = Path(__file__).resolve().parents[1] / "src"
if (SRC / "ketch").is_dir() and str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))  # run from a checkout without `pip install -e .`


@dsl.component
def square(x: int) -> int:
    return x * x


@dsl.component
def total(values: list[int]) -> int:
    return sum(values)


@dsl.pipeline(name="parallelfor-fan-out")
def fan_out(items: list[int]) -> int:
    with dsl.ParallelFor(items) as item:
        sq = square(x=item)
    return total(values=dsl.Collected(sq.output)).output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--target", type=float, default=10.0, help="seconds")
    parser.add_argument(
        "--parallelism",
        type=int,
        default=None,
        help="max_parallelism for ketch.run (default: number of CPUs)",
    )
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="ketch-bench-") as tmp:
        os.environ["KETCH_HOME"] = str(Path(tmp) / "ketch-home")
        import ketch

        items = list(range(args.items))
        start = time.perf_counter()
        run = ketch.run(
            fan_out,
            arguments={"items": items},
            enable_caching=False,
            max_parallelism=args.parallelism,
        )
        wall = time.perf_counter() - start

    if run.state != "SUCCEEDED":
        print(f"run {run.id} {run.state}: {run.error}", file=sys.stderr)
        return 1
    expected = sum(i * i for i in items)
    if run.outputs.get("Output") != expected:
        print(f"wrong result {run.outputs!r}, expected {expected}", file=sys.stderr)
        return 1
    verdict = "within" if wall <= args.target else "OVER"
    print(
        f"ParallelFor over {args.items} items (+1 collect task): {wall:.2f} s wall, "
        f"{verdict} the {args.target:g} s target ({wall / args.target:.2f} of it); "
        f"{wall / (args.items + 1) * 1000:.0f} ms per task"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
