"""How long ``ketch --help`` takes to start, against the CLI as it was at commit 4345992.

Commit 4345992 is the CLI before its heavy imports (numpy, SQLAlchemy, FastAPI, httpx,
pydantic) moved into the commands that use them. This checks that commit out in a
temporary git worktree, then runs ``ketch --help`` from each checkout's ``src`` with
the same interpreter, the runs interleaved, and prints the median wall times, their
ratio (before / after) and how many modules each imports.

    python benchmarks/cli_startup.py [--runs 20] [--before 4345992]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("numpy", "kfp", "torch", "pandas", "sklearn", "fastapi", "uvicorn", "sqlalchemy", "httpx")

HELP = "import sys; sys.argv = ['ketch', '--help']; from ketch.cli.main import main; main()"
COUNT = (
    "import sys, ketch\n"
    "sys.argv = ['ketch', '--help']\n"
    "from ketch.cli.main import main\n"
    "try:\n"
    "    main()\n"
    "except SystemExit:\n"
    "    pass\n"
    f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
    "print(ketch.__file__, len(sys.modules), ','.join(heavy) or '-', sep='|', file=sys.stderr)\n"
)


def env_for(src: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(src)
    env.pop("PYTHONSTARTUP", None)
    return env


def run_once(src: Path) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", HELP],
        env=env_for(src),
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def modules(src: Path) -> tuple[int, str]:
    """How many modules ``ketch --help`` imports from ``src``, and which heavy ones."""
    result = subprocess.run(
        [sys.executable, "-c", COUNT],
        env=env_for(src),
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    origin, count, heavy = result.stderr.strip().splitlines()[-1].split("|")
    if not Path(origin).resolve().is_relative_to(src.resolve()):
        raise SystemExit(f"ketch was imported from {origin}, not from {src}")
    return int(count), heavy


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=20, help="runs of each checkout (default 20)")
    parser.add_argument(
        "--before", default="4345992", help="the commit to compare with (default 4345992)"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="ketch-cli-startup-") as tmp:
        worktree = Path(tmp) / "before"
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "add", "--detach", str(worktree), args.before],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            sources = {
                f"before ({args.before})": worktree / "src",
                "after (this tree)": REPO / "src",
            }
            counts = {label: modules(src) for label, src in sources.items()}
            for src in sources.values():  # warm the file cache and the bytecode caches
                run_once(src)
            times: dict[str, list[float]] = {label: [] for label in sources}
            for _ in range(args.runs):
                for label, src in sources.items():
                    times[label].append(run_once(src))
        finally:
            subprocess.run(
                ["git", "-C", str(REPO), "worktree", "remove", "--force", str(worktree)],
                check=False,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )

    print(f"ketch --help: {args.runs} runs of each, interleaved, {sys.executable}")
    print(f"{'':<22} {'median':>9} {'min':>9} {'modules':>8}  heavy modules imported")
    for label, samples in times.items():
        count, heavy = counts[label]
        print(
            f"{label:<22} {statistics.median(samples) * 1000:7.0f}ms {min(samples) * 1000:7.0f}ms "
            f"{count:>8}  {heavy}"
        )
    before, after = (statistics.median(samples) for samples in times.values())
    print(f"ratio (before / after): {before / after:.2f}x")


if __name__ == "__main__":
    main()
