"""Ketch's runs page against MLflow 3's experiment page, each holding 10,000 runs, in
one script run: the time until the first page of the runs table is visible in
Chromium.

- Ketch: ``ketch up`` (a temporary KETCH_HOME, SQLite) filled through its KFP API:
  ``--runs`` runs of a one-task pipeline (``POST /apis/v2beta1/runs``, a few at a
  time; after the first, each run's task is a cache hit, so the runs are real runs,
  stored and finished by Ketch, without 10,000 processes), in one experiment of one
  namespace. The page is ``/ui/runs?ns=...``.
- MLflow: ``mlflow server`` (SQLite, MLflow in its own venv, ``.venv-mlflow`` made by
  ``scripts/mlflow-venv.sh``) filled through its REST API: one experiment and
  ``--runs`` runs, each created with two parameters, two metrics and ended FINISHED
  (``runs/create``, ``runs/log-batch``, ``runs/update``). The page is the
  experiment's runs view (``/#/experiments/<id>/runs``).

Each round opens each page in a fresh browser context (no cache, no cookies), taking
turns, and times from navigation until the newest run's name is visible in a row of
the table (Playwright driving Debian's ``chromium``, headless). Prints each side's
median and the ratio (target: Ketch at least 3x faster).

::

    python benchmarks/dashboard_vs_mlflow.py [--runs 10000] [--rounds 7] [--quick]

``--quick`` fills 1,000 runs and takes 3 rounds. Numbers depend on the machine's
load: compare the ratio, not the times.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
for path in (REPO / "src", REPO):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))  # run from a checkout

import httpx  # noqa: E402
from benchmarks.registry_sides import ketch_up, log, mlflow_python, mlflow_server  # noqa: E402
from tests.browser import CHROMIUM_ARGS, chromium_path  # noqa: E402

RATIO_TARGET = 3.0
NAMESPACE = "bench"
KFP = "/apis/v2beta1"
THREADS = 4


def one_task_spec() -> dict[str, Any]:
    """A compiled one-task pipeline (the real kfp compiler; the pipeline is defined in a
    module without postponed annotations, as kfp reads them)."""
    import yaml
    from kfp import compiler
    from tests.ui.runs_pipeline import quick

    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "p.yaml"
        compiler.Compiler().compile(quick, str(out))
        spec: dict[str, Any] = yaml.safe_load(out.read_text())
    return spec


def run_name(i: int) -> str:
    return f"bench-run-{i:05d}"


def fill_ketch(url: str, runs: int) -> None:
    """``runs`` runs of a one-task pipeline through the KFP API, waited for."""
    spec = one_task_spec()
    started = time.monotonic()
    with httpx.Client(base_url=url, timeout=120) as http:
        experiment = http.post(
            f"{KFP}/experiments", json={"display_name": "bench", "namespace": NAMESPACE}
        ).json()

        def create(i: int) -> None:
            body = {
                "display_name": run_name(i),
                "experiment_id": experiment["experiment_id"],
                "pipeline_spec": spec,
                "runtime_config": {"parameters": {"word": "same"}},
            }
            answer = http.post(f"{KFP}/runs", json=body)
            answer.raise_for_status()

        create(0)  # the first executes the task; the others reuse its cached result
        _wait_ketch(http, 1)
        with concurrent.futures.ThreadPoolExecutor(THREADS) as pool:
            for done, _ in enumerate(pool.map(create, range(1, runs)), start=2):
                if done % 1000 == 0:
                    log(f"ketch: {done} runs created ({time.monotonic() - started:.0f}s)")
        _wait_ketch(http, runs)
    log(f"ketch: {runs} runs stored and finished in {time.monotonic() - started:.0f}s")


def _wait_ketch(http: httpx.Client, runs: int) -> None:
    active = json_filter(("PENDING", "RUNNING"))
    deadline = time.monotonic() + 3600
    while time.monotonic() < deadline:
        page = http.get(
            f"{KFP}/runs",
            params={"namespace": NAMESPACE, "page_size": 1, "filter": active, "view": "BASIC"},
        ).json()
        total = http.get(
            f"{KFP}/runs", params={"namespace": NAMESPACE, "page_size": 1, "view": "BASIC"}
        ).json()
        if not page.get("total_size") and total.get("total_size") == runs:
            return
        time.sleep(1)
    raise SystemExit("Ketch's runs did not finish within an hour")


def json_filter(states: tuple[str, ...]) -> str:
    import json

    return json.dumps(
        {"predicates": [{"key": "state", "operation": "IN", "string_values": {"values": states}}]}
    )


def fill_mlflow(url: str, runs: int) -> str:
    """An experiment with ``runs`` finished runs through MLflow's REST API; its id."""
    api = f"{url}/api/2.0/mlflow"
    started = time.monotonic()
    with httpx.Client(timeout=120) as http:
        made = http.post(
            f"{api}/experiments/create",
            json={
                "name": "bench",
                # the runs view (not the GenAI traces view) for this experiment
                "tags": [{"key": "mlflow.experimentKind", "value": "custom_model_development"}],
            },
        )
        made.raise_for_status()
        experiment_id = str(made.json()["experiment_id"])
        base = int(time.time() * 1000)

        def post(path: str, body: dict[str, Any]) -> httpx.Response:
            for _ in range(3):  # the server may close a kept-alive connection first
                try:
                    answer = http.post(path, json=body)
                    answer.raise_for_status()
                    return answer
                except httpx.RemoteProtocolError:
                    continue
            raise SystemExit(f"mlflow server kept dropping {path}")

        def create(i: int) -> None:
            begin = base + i
            run = post(
                f"{api}/runs/create",
                {"experiment_id": experiment_id, "run_name": run_name(i), "start_time": begin},
            )
            run_id = run.json()["run"]["info"]["run_id"]
            post(
                f"{api}/runs/log-batch",
                {
                    "run_id": run_id,
                    "params": [{"key": "word", "value": "same"}, {"key": "i", "value": str(i)}],
                    "metrics": [
                        {
                            "key": "accuracy",
                            "value": (i % 100) / 100,
                            "timestamp": begin,
                            "step": 0,
                        },
                        {
                            "key": "loss",
                            "value": 1 - (i % 100) / 100,
                            "timestamp": begin,
                            "step": 0,
                        },
                    ],
                },
            )
            post(
                f"{api}/runs/update",
                {"run_id": run_id, "status": "FINISHED", "end_time": begin + 500},
            )

        with concurrent.futures.ThreadPoolExecutor(THREADS) as pool:
            for done, _ in enumerate(pool.map(create, range(runs)), start=1):
                if done % 1000 == 0:
                    log(f"mlflow: {done} runs logged ({time.monotonic() - started:.0f}s)")
    log(f"mlflow: {runs} runs logged in {time.monotonic() - started:.0f}s")
    return experiment_id


def time_page(browser: Any, url: str, newest: str) -> float:
    """Seconds from navigating to ``url`` until a table row showing ``newest`` is
    visible (a fresh context: nothing cached)."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        page = context.new_page()
        started = time.perf_counter()
        page.goto(url, wait_until="commit")
        page.locator(f"tr:has-text('{newest}'), [role='row']:has-text('{newest}')").first.wait_for(
            state="visible", timeout=120_000
        )
        return time.perf_counter() - started
    finally:
        context.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="1,000 runs, 3 rounds")
    args = parser.parse_args()
    runs, rounds = (1000, 3) if args.quick else (args.runs, args.rounds)
    chromium = chromium_path()
    if chromium is None:
        raise SystemExit("no chromium: install Debian's chromium (scripts/ci-chromium.sh)")
    from playwright.sync_api import sync_playwright

    mlflow_python()  # MLflow's own venv, made when missing
    newest = run_name(runs - 1)
    with tempfile.TemporaryDirectory(prefix="ketch-bench-ui-") as folder:
        work = Path(folder)
        (work / "ketch").mkdir()
        (work / "mlflow").mkdir()
        with ketch_up(work / "ketch") as server, mlflow_server(work / "mlflow") as mlflow:
            fill_ketch(server.url, runs)
            experiment_id = fill_mlflow(mlflow, runs)
            pages = {
                "ketch": f"{server.url}/ui/runs?ns={NAMESPACE}",
                "mlflow": f"{mlflow}/#/experiments/{experiment_id}/runs",
            }
            times: dict[str, list[float]] = {"ketch": [], "mlflow": []}
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=chromium, headless=True, args=CHROMIUM_ARGS
                )
                for url in pages.values():  # a warm-up of each server
                    time_page(browser, url, newest)
                for index in range(rounds):
                    order = list(pages) if index % 2 == 0 else list(reversed(pages))
                    for side in order:
                        times[side].append(time_page(browser, pages[side], newest))
                    log(
                        f"round {index + 1}: "
                        + ", ".join(f"{s} {times[s][-1] * 1000:.0f} ms" for s in pages)
                    )
                browser.close()
    ketch, peer = statistics.median(times["ketch"]), statistics.median(times["mlflow"])
    ratio = peer / ketch
    print(f"\nfirst page of the runs table visible, {runs:,} runs, {rounds} rounds (median):")
    print(f"  Ketch  /ui/runs                   {ketch * 1000:8.0f} ms")
    print(f"  MLflow experiment's runs view     {peer * 1000:8.0f} ms")
    verdict = "meets" if ratio >= RATIO_TARGET else "misses"
    print(f"  ratio: Ketch {ratio:.1f}x faster ({verdict} the {RATIO_TARGET:.0f}x target)")


if __name__ == "__main__":
    main()
