"""Idle memory of many notebooks, side by side: N of Kubeflow's example Notebook applied
to a real ``ketch up`` (single-user) until every one is Ready and has answered
``api/status`` through Ketch's proxy, against N ``python -m jupyterlab`` started bare
on this machine until each answers its own ``api/status``. After both sides idled a
few seconds, the RSS of each notebook's server process tree is read (psutil).

Ketch's cost per notebook is its server's tree plus the growth of ``ketch up``'s own
RSS (read before the first notebook and after the last) divided by N; the bare side's
is its process tree. Target: Ketch's at most 10 MiB above bare JupyterLab's. The sides
run one after the other (Ketch first), so each has the machine to itself; everything
started is stopped at the end, on Ctrl-C too.

    .venv/bin/python benchmarks/notebook_memory.py [--count 50] [--idle 5]
"""

from __future__ import annotations

import argparse
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import FrameType

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.jupyter_bare import BareLab, spawn  # noqa: E402
from tests.notebooks.helpers import example_notebook, path, server_pid  # noqa: E402
from tests.server.fixtures import SERVER_ENV  # noqa: E402
from tests.server.helpers import Server  # noqa: E402

try:
    import psutil
except ImportError:  # pragma: no cover - installed with JupyterLab (ipykernel needs it)
    sys.exit("notebook_memory.py needs psutil: pip install 'ketch[notebooks]' (or psutil)")

TARGET_MIB = 10.0
NS = "bench"
MIB = 1024 * 1024


def tree_rss(pid: int) -> int:
    """The RSS of process ``pid`` and all its descendants (bytes)."""
    root = psutil.Process(pid)
    total = 0
    for process in (root, *root.children(recursive=True)):
        try:
            total += process.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def own_rss(pid: int) -> int:
    return int(psutil.Process(pid).memory_info().rss)


def wait_all(what: str, count: int, ready_count: Callable[[], int], timeout: float) -> float:
    """Poll ``ready_count()`` until it is ``count``, printing progress; the seconds it took."""
    began = time.monotonic()
    shown = -1
    while True:
        ready = ready_count()
        elapsed = time.monotonic() - began
        if ready != shown:
            print(f"  {what}: {ready}/{count} ready ({elapsed:.0f}s)", flush=True)
            shown = ready
        if ready >= count:
            return elapsed
        if elapsed > timeout:
            raise RuntimeError(f"{what}: only {ready} of {count} ready after {timeout:.0f}s")
        time.sleep(0.5)


def ketch_side(tmp: Path, count: int, idle: float, timeout: float) -> dict[str, float]:
    """Ketch's notebooks' server trees and ``ketch up``'s growth (bytes)."""
    server = Server(tmp / "home", extra_env=SERVER_ENV)
    print(f"ketch up: starting, then {count} notebooks", flush=True)
    server.start()
    assert server.process is not None
    try:
        with server.client() as http:
            time.sleep(idle)  # its start settles before the first reading
            before = own_rss(server.process.pid)
            names = [f"nb{index:03d}" for index in range(count)]
            for name in names:
                made = http.post(path(NS), json=example_notebook(name, NS))
                assert made.status_code == 201, made.text

            def ready() -> int:
                listed = http.get(path(NS)).json()["items"]
                return sum((n.get("status") or {}).get("readyReplicas") == 1 for n in listed)

            took = wait_all("ketch", count, ready, timeout)
            for name in names:  # each opened once through the proxy, as a user would
                answered = http.get(f"/notebook/{NS}/{name}/api/status")
                assert answered.status_code == 200, (name, answered.text)
            time.sleep(idle)
            pids = [server_pid(http, NS, name) for name in names]
            trees = [tree_rss(pid) for pid in pids]
            after = own_rss(server.process.pid)
    finally:
        print("ketch up: stopping", flush=True)
        code = server.stop(timeout=120)
        if code not in (0, None):
            print(f"ketch up exited with {code}; its log: {server.log_path}", flush=True)
    return {
        "took": took,
        "mean": statistics.fmean(trees),
        "min": min(trees),
        "max": max(trees),
        "before": before,
        "after": after,
    }


def bare_side(tmp: Path, count: int, idle: float, timeout: float) -> dict[str, float]:
    """The bare JupyterLabs' process trees (bytes)."""
    print(f"bare JupyterLab: starting {count}", flush=True)
    labs: list[BareLab] = []
    try:
        for _ in range(count):
            labs.append(spawn(tmp, token="bench-token"))
        answered: set[int] = set()
        pool = ThreadPoolExecutor(max_workers=16)

        def ready() -> int:
            # asked all at once: a lab still starting may take its whole timeout
            waiting = [index for index in range(len(labs)) if index not in answered]
            for index, ok in zip(
                waiting, pool.map(lambda i: labs[i].answers(), waiting), strict=True
            ):
                if ok:
                    answered.add(index)
            return len(answered)

        try:
            took = wait_all("bare", count, ready, timeout)
        finally:
            pool.shutdown(cancel_futures=True)
        time.sleep(idle)
        trees = [tree_rss(lab.process.pid) for lab in labs]
    finally:
        print("bare JupyterLab: stopping", flush=True)
        stop_all(labs)
    return {"took": took, "mean": statistics.fmean(trees), "min": min(trees), "max": max(trees)}


def stop_all(labs: Sequence[BareLab]) -> None:
    for lab in labs:  # all asked first, then waited for
        if lab.process.poll() is None:
            lab.process.terminate()
    for lab in labs:
        lab.stop()


def _interrupted(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=50, help="notebooks per side (50)")
    parser.add_argument(
        "--idle", type=float, default=5.0, help="seconds each side idles before reading (5)"
    )
    args = parser.parse_args()
    if args.count < 1:
        parser.error("--count must be at least 1")
    count, idle = args.count, args.idle
    timeout = 120.0 + 10.0 * count  # a JupyterLab takes seconds of CPU to start
    signal.signal(signal.SIGTERM, _interrupted)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            ketch = ketch_side(Path(tmp), count, idle, timeout)
            bare = bare_side(Path(tmp), count, idle, timeout)
    except KeyboardInterrupt:
        sys.exit("interrupted: everything started was stopped")

    growth = ketch["after"] - ketch["before"]
    ketch_cost = ketch["mean"] + growth / count
    difference = (ketch_cost - bare["mean"]) / MIB
    verdict = "PASS" if difference <= TARGET_MIB else "FAIL"

    def mib(value: float) -> str:
        return f"{value / MIB:8.1f}"

    print()
    print(f"idle RSS of {count} notebooks (MiB)          {'Ketch':>8}  {'bare':>8}")
    print(f"  all answering after (s, not a target)   {ketch['took']:8.0f}  {bare['took']:8.0f}")
    print(f"  server process tree, mean               {mib(ketch['mean'])}  {mib(bare['mean'])}")
    print(
        f"  server process tree, min / max          "
        f"{ketch['min'] / MIB:.1f}/{ketch['max'] / MIB:.1f}   "
        f"{bare['min'] / MIB:.1f}/{bare['max'] / MIB:.1f}"
    )
    print(
        f"  ketch up's RSS: {ketch['before'] / MIB:.1f} -> {ketch['after'] / MIB:.1f} "
        f"(+{growth / MIB:.1f}), per notebook  {mib(growth / count)}"
    )
    print(f"  per notebook                            {mib(ketch_cost)}  {mib(bare['mean'])}")
    print(
        f"difference {difference:+.1f} MiB per notebook "
        f"(target <= +{TARGET_MIB:.0f} MiB): {verdict}"
    )


if __name__ == "__main__":
    main()
