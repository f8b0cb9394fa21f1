"""The run page's targets: the graph of a 200-item ParallelFor run visible in under a
second, and a task's state change shown in the page under a second after it is stored.

A real ``ketch up`` (a temporary KETCH_HOME, SQLite) runs, through ``kfp.Client`` (the
real kfp compiler):

- the fan-out of ``benchmarks/parallelfor_200.py`` over ``--items`` items (200 squares
  and the task that sums them), waited for until it finished. Each round opens its
  page (``/ui/runs/<id>``) in a fresh browser context (nothing cached) and times from
  navigation until the graph is drawn (``#run-graph svg`` with its nodes) and the task
  list's text is visible (the summing task's row and the loop's summary);
- ``--rounds`` runs of a one-task pipeline whose task waits for a gate file. Each
  round opens the run's page while the task runs, then creates the gate; a thread
  polls the KFP API (``GET /apis/v2beta1/runs/<id>``) without pause and notes when it
  first reports the task SUCCEEDED, while Playwright waits for the task's row to show
  SUCCEEDED. The figure is the time from the API's first report to the page's. (The
  page polls its live fragment every 700 ms.)

Also printed, for reference: the server's time to answer the 200-item run's page
(HTML only, over HTTP, median of the rounds).

::

    python benchmarks/dashboard_graph.py [--items 200] [--rounds 7]

Playwright drives Debian's ``chromium`` (headless, 1280x800). Numbers depend on the
machine's load.
"""

# No ``from __future__ import annotations``: kfp reads the pipeline's annotations.

import argparse
import contextlib
import io
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
for path in (REPO / "src", REPO):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))  # run from a checkout

import httpx  # noqa: E402
from benchmarks.parallelfor_200 import fan_out  # noqa: E402
from benchmarks.registry_sides import ketch_up, log  # noqa: E402
from kfp import dsl  # noqa: E402
from tests.browser import CHROMIUM_ARGS, chromium_path  # noqa: E402
from tests.ui.rundetail_pipeline import wait_for_file  # noqa: E402

TARGET_S = 1.0
NAMESPACE = "bench"
KFP = "/apis/v2beta1"
TERMINAL = ("SUCCEEDED", "FAILED", "CANCELED", "SKIPPED")
GATED_TASK = "wait-for-file"


@dsl.pipeline(name="bench-gated")
def gated(gate: str) -> None:
    wait_for_file(path=gate)


def submit(url: str, pipeline: Any, arguments: dict[str, Any]) -> str:
    import kfp

    client = kfp.Client(host=url)
    with contextlib.redirect_stdout(io.StringIO()):  # kfp prints the run's links
        result = client.create_run_from_pipeline_func(
            pipeline, arguments=arguments, experiment_name="bench-ui", namespace=NAMESPACE
        )
    return str(result.run_id)


def run_json(http: httpx.Client, run_id: str) -> dict[str, Any]:
    answer = http.get(f"{KFP}/runs/{run_id}")
    answer.raise_for_status()
    body: dict[str, Any] = answer.json()
    return body


def task_state(run: dict[str, Any], name: str) -> str:
    for task in (run.get("run_details") or {}).get("task_details") or []:
        if task.get("display_name") == name:
            return str(task.get("state") or "")
    return ""


def wait_until(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise SystemExit(f"timed out waiting for {what}")


def time_graph(browser: Any, url: str, items: int) -> float:
    """Seconds from navigating to the run page until its graph is drawn and its task
    list's text is visible (a fresh context: nothing cached)."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        page = context.new_page()
        started = time.perf_counter()
        page.goto(url, wait_until="commit")
        # drawn: the SVG holds the nodes' shapes, not just an empty root
        page.wait_for_function(
            "() => document.querySelectorAll('#run-graph svg path, #run-graph svg rect').length"
            " >= 3",
            timeout=60_000,
            polling="raf",
        )
        page.locator('#tasks tr[data-task="total"]').wait_for(state="visible", timeout=60_000)
        page.locator("#tasks .loop-summary").first.wait_for(state="visible", timeout=60_000)
        elapsed = time.perf_counter() - started
        summary = page.locator("#tasks .loop-summary").first.inner_text()
        if f"{items} iterations" not in summary:
            raise SystemExit(f"the loop's summary is not shown: {summary!r}")
        return elapsed
    finally:
        context.close()


def time_html(url: str, path: str, rounds: int) -> float:
    times = []
    with httpx.Client(base_url=url, timeout=60) as http:
        http.get(path).raise_for_status()  # warm-up
        for _ in range(rounds):
            started = time.perf_counter()
            answer = http.get(path)
            times.append(time.perf_counter() - started)
            answer.raise_for_status()
    return statistics.median(times)


class ApiWatch(threading.Thread):
    """Polls the run through the API without pause; notes the first time it reports
    the gated task's new state."""

    def __init__(self, url: str, run_id: str) -> None:
        super().__init__(daemon=True)
        self.url, self.run_id = url, run_id
        self.seen: float | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as http:
            while not self.stop.is_set():
                if task_state(run_json(http, self.run_id), GATED_TASK) == "SUCCEEDED":
                    self.seen = time.perf_counter()
                    return


def time_state_change(browser: Any, url: str, gate_folder: Path, index: int) -> float:
    """Seconds from the API's first report of the gated task's SUCCEEDED to its row's
    showing it in an open page."""
    gate = gate_folder / f"gate-{index}"
    run_id = submit(url, gated, {"gate": str(gate)})
    with httpx.Client(base_url=url, timeout=30) as http:
        wait_until(
            lambda: task_state(run_json(http, run_id), GATED_TASK) == "RUNNING",
            120,
            "the gated task to run",
        )
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        page = context.new_page()
        page.goto(f"{url}/ui/runs/{run_id}")
        row = f'#tasks tr[data-task="{GATED_TASK}"]'
        page.locator(f'{row}[data-state="RUNNING"]').wait_for(timeout=60_000)
        time.sleep(0.3 + (index % 3) * 0.23)  # open the gate at varied points of a poll
        watch = ApiWatch(url, run_id)
        watch.start()
        gate.write_text("")
        page.locator(f'{row}[data-state="SUCCEEDED"]').wait_for(timeout=60_000)
        shown = time.perf_counter()
        watch.join(30)
        watch.stop.set()
        if watch.seen is None:
            raise SystemExit("the API never reported the task's new state")
        return max(0.0, shown - watch.seen)
    finally:
        context.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    chromium = chromium_path()
    if chromium is None:
        raise SystemExit("no chromium: install Debian's chromium (scripts/ci-chromium.sh)")
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="ketch-bench-graph-") as folder:
        work = Path(folder)
        (work / "ketch").mkdir()
        with ketch_up(work / "ketch") as server:
            started = time.monotonic()
            big = submit(server.url, fan_out, {"items": list(range(args.items))})
            with httpx.Client(base_url=server.url, timeout=60) as http:
                final = wait_until(
                    lambda: (
                        (run_json(http, big).get("state") or "") in TERMINAL and run_json(http, big)
                    ),
                    1800,
                    "the ParallelFor run to finish",
                )
            if final["state"] != "SUCCEEDED":
                raise SystemExit(f"the ParallelFor run {final['state']}: {final.get('error')}")
            log(f"{args.items}-item ParallelFor run finished in {time.monotonic() - started:.0f}s")
            page_url = f"{server.url}/ui/runs/{big}"
            graph: list[float] = []
            changes: list[float] = []
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=chromium, headless=True, args=CHROMIUM_ARGS
                )
                time_graph(browser, page_url, args.items)  # warm-up
                for index in range(args.rounds):
                    graph.append(time_graph(browser, page_url, args.items))
                    log(f"round {index + 1}: graph visible {graph[-1] * 1000:.0f} ms")
                (work / "gates").mkdir()
                time_state_change(browser, server.url, work / "gates", -1)  # warm-up
                for index in range(args.rounds):
                    changes.append(time_state_change(browser, server.url, work / "gates", index))
                    log(f"round {index + 1}: state change shown {changes[-1] * 1000:.0f} ms")
                browser.close()
            html = time_html(server.url, f"/ui/runs/{big}", args.rounds)

    def verdict(seconds: float) -> str:
        return "PASS" if seconds < TARGET_S else "FAIL"

    shown, change = statistics.median(graph), statistics.median(changes)
    print(f"\nrun page of a {args.items}-item ParallelFor run, {args.rounds} rounds (median):")
    print(
        f"  graph drawn and task list visible   {shown * 1000:6.0f} ms "
        f"(max {max(graph) * 1000:.0f}; target < {TARGET_S * 1000:.0f} ms: {verdict(shown)})"
    )
    print(
        f"  state change shown after the API    {change * 1000:6.0f} ms "
        f"(max {max(changes) * 1000:.0f}; target < {TARGET_S * 1000:.0f} ms: {verdict(change)})"
    )
    print(f"  for reference: the page's HTML      {html * 1000:6.0f} ms (server, over HTTP)")


if __name__ == "__main__":
    main()
