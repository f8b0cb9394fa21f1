"""The real ``kfp.Client`` against Ketch's KFP v2beta1 API, in one script run.

Starts a Ketch API server on 127.0.0.1 (its own ``KETCH_HOME`` in a temporary
directory, SQLite unless ``KETCH_DATABASE_URL`` is set) and measures:

a. ``kfp.Client.create_run_from_pipeline_func`` of a 1-step pipeline until the
   run is SUCCEEDED (compile, experiment lookup, create, execute, poll): median
   of ``--repeat`` runs after a warm-up;
b. ``kfp.Client.list_runs(page_size=20)`` with ``--stored`` runs in the store
   (written straight into the store, each with a real pipeline spec): p50/p99
   of the first page, of deep pages reached by page token, and of a filtered,
   sorted page; plus the same first page over plain HTTP;
c. ``--concurrent`` submissions at once from as many threads (caching off): how many were
   accepted, how many finished SUCCEEDED, and whether the server log has any
   "database is locked".

There is no Kubeflow cluster here, so nothing of Kubeflow is measured; the
table prints the published figure for context::

    python benchmarks/kfp_client_api.py [--repeat 10] [--stored 10000] [--concurrent 50]
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
import warnings
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

warnings.filterwarnings("ignore", category=FutureWarning)
warnings.filterwarnings("ignore", category=DeprecationWarning)

REPO = Path(__file__).resolve().parents[1]
for path in (REPO / "src", REPO):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))  # run from a checkout

import httpx  # noqa: E402
import kfp  # noqa: E402
from benchmarks.stats import percentile  # noqa: E402
from kfp import compiler, dsl  # noqa: E402

FINAL = ("SUCCEEDED", "FAILED", "CANCELED", "SKIPPED")
KUBEFLOW_CONTEXT = (
    "Kubeflow Pipelines on Kubernetes runs every step as a pod; scheduling, image pull and "
    "container start are commonly reported at several seconds per step (about 5-10 s for a "
    "trivial step, more on a cold node). Not measured here: no Kubeflow cluster is available."
)


@dsl.component
def inc(x: int) -> int:
    return x + 1


@dsl.pipeline(name="bench-one-step")
def one_step(x: int = 0) -> int:
    return inc(x=x).output


def quiet_client(url: str) -> kfp.Client:
    return kfp.Client(host=url)


def bench_create_run(client: kfp.Client, repeat: int) -> dict[str, float]:
    def once() -> tuple[float, float]:
        start = time.perf_counter()
        # caching off: every run really executes its step
        result = client.create_run_from_pipeline_func(
            one_step, arguments={"x": 1}, enable_caching=False
        )
        accepted = time.perf_counter() - start
        run = client.wait_for_run_completion(result.run_id, timeout=120, sleep_duration=0.02)
        total = time.perf_counter() - start
        if run.state != "SUCCEEDED":
            raise SystemExit(f"run {result.run_id} ended {run.state}: {run.error}")
        return accepted, total

    cold = once()  # warm-up: the server's first run also starts its process pool
    samples = [once() for _ in range(repeat)]
    return {
        "cold": cold[1],
        "accepted": statistics.median(s[0] for s in samples),
        "succeeded": statistics.median(s[1] for s in samples),
    }


def store_runs(db_url: str, count: int, experiment_id: str) -> float:
    """Write ``count`` finished runs straight into the store; the seconds it took."""
    from ketch.core.store.db import Database
    from ketch.pipelines.tables import MIGRATIONS

    # this process's own connections to the server's store, closed at the end
    with Database(db_url) as database:
        database.migrate([MIGRATIONS])  # also creates the engine before the first session
        return _insert_runs(database, count, experiment_id)


def _insert_runs(database: Any, count: int, experiment_id: str) -> float:
    from sqlalchemy import insert

    from ketch.pipelines import spec as ir_loader
    from ketch.pipelines.tables import PipelineRunRow

    spec = ir_loader.load(one_step).spec
    start = datetime(2024, 1, 1, tzinfo=UTC)
    began = time.perf_counter()
    batch: list[dict[str, Any]] = []
    for i in range(count):
        created = start + timedelta(seconds=i)
        batch.append(
            {
                "id": str(uuid.uuid4()),
                "display_name": f"stored-{i:05d}",
                "pipeline_name": "bench-one-step",
                "namespace": "default",
                "experiment_id": experiment_id,
                "owner": "benchmark",
                "state": ("SUCCEEDED", "FAILED")[i % 7 == 0],
                "storage_state": "AVAILABLE",
                "pipeline_spec": spec,
                "parameters": {"x": i},
                "pipeline_root": "/tmp/artifacts",
                "enable_caching": None,
                "outputs": {"Output": i + 1},
                "error": None,
                "created_at": created,
                "started_at": created,
                "finished_at": created + timedelta(seconds=1),
            }
        )
        if len(batch) == 1000:
            with database.session() as s:
                s.execute(insert(PipelineRunRow), batch)
            batch = []
    if batch:
        with database.session() as s:
            s.execute(insert(PipelineRunRow), batch)
    return time.perf_counter() - began


def timed(fn: Any, n: int) -> list[float]:
    fn()  # warm-up
    out = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


def bench_list(client: kfp.Client, url: str, samples: int) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {}
    results["first page (kfp.Client)"] = timed(lambda: client.list_runs(page_size=20), samples)

    tokens: list[str] = []
    token = ""
    for _ in range(samples):
        page = client.list_runs(page_size=20, page_token=token, sort_by="created_at desc")
        token = page.next_page_token or ""
        if not token:
            break
        tokens.append(token)
    deep = iter(tokens[len(tokens) // 2 :] * 4)
    results["deep page by token (kfp.Client)"] = timed(
        lambda: client.list_runs(page_size=20, page_token=next(deep), sort_by="created_at desc"),
        min(samples, len(tokens) // 2 * 4 - 1),
    )
    failed = json.dumps(
        {"predicates": [{"key": "state", "operation": "EQUALS", "string_value": "FAILED"}]}
    )
    results["filtered + sorted (kfp.Client)"] = timed(
        lambda: client.list_runs(page_size=20, sort_by="display_name desc", filter=failed), samples
    )
    with httpx.Client(base_url=url, timeout=30) as http:
        results["first page (plain HTTP)"] = timed(
            lambda: http.get("/apis/v2beta1/runs", params={"page_size": 20}).raise_for_status(),
            samples,
        )
    return results


def bench_concurrent(url: str, package: str, n: int, experiment_id: str) -> dict[str, Any]:
    errors: list[str] = []
    run_ids: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(n)

    def submit(i: int) -> None:
        client = quiet_client(url)
        barrier.wait()
        try:
            result = client.create_run_from_pipeline_package(
                package,
                arguments={"x": i},
                run_name=f"concurrent-{i}",
                experiment_id=experiment_id,
                enable_caching=False,
            )
        except Exception as exc:  # noqa: BLE001 - a thread's top level: every error is reported with the results
            with lock:
                errors.append(f"{type(exc).__name__}: {exc}")
            return
        with lock:
            run_ids.append(result.run_id)

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=n) as pool:
        list(pool.map(submit, range(n)))
    accepted_s = time.perf_counter() - start
    client = quiet_client(url)
    states: dict[str, str] = {}
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        states = {r: client.get_run(r).state for r in run_ids}
        if all(s in FINAL for s in states.values()):
            break
        time.sleep(0.2)
    finished_s = time.perf_counter() - start
    return {
        "accepted": len(run_ids),
        "errors": errors,
        "succeeded": sum(1 for s in states.values() if s == "SUCCEEDED"),
        "states": states,
        "accepted_s": accepted_s,
        "finished_s": finished_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=10, help="runs timed in (a)")
    parser.add_argument("--stored", type=int, default=10_000, help="runs in the store for (b)")
    parser.add_argument("--samples", type=int, default=200, help="list calls timed per case in (b)")
    parser.add_argument(
        "--concurrent", type=int, default=50, help="simultaneous submissions in (c)"
    )
    args = parser.parse_args()

    from tests.pipelines.kfp_server import ServerProcess

    with tempfile.TemporaryDirectory(prefix="ketch-kfp-bench-") as tmp:
        home = Path(tmp) / "home"
        server = ServerProcess(home, os.environ.get("KETCH_DATABASE_URL") or None)
        print(f"starting a Ketch server (KETCH_HOME={home}) ...", flush=True)
        server.start()
        try:
            client = quiet_client(server.url)
            package = str(Path(tmp) / "one_step.yaml")
            compiler.Compiler().compile(one_step, package)

            print(f"(a) create_run_from_pipeline_func x{args.repeat} ...", flush=True)
            a = bench_create_run(client, args.repeat)

            print(
                f"(b) storing {args.stored} runs, then list_runs x{args.samples} per case ...",
                flush=True,
            )
            stored_exp = client.create_experiment(f"stored-{uuid.uuid4().hex[:6]}").experiment_id
            insert_s = store_runs(server.db_url, args.stored, stored_exp)
            total = client.list_runs(page_size=1).total_size
            b = bench_list(client, server.url, args.samples)

            print(f"(c) {args.concurrent} concurrent submissions ...", flush=True)
            # One experiment made first: KFP answers 409 to a second create of the same name,
            # so clients racing to create it would fail there too.
            concurrent_exp = client.create_experiment(
                f"concurrent-{uuid.uuid4().hex[:6]}"
            ).experiment_id
            c = bench_concurrent(server.url, package, args.concurrent, concurrent_exp)
        finally:
            server.stop()
        log = server.log_path.read_text(errors="replace") if server.log_path.exists() else ""
        locked = log.lower().count("database is locked")

    def row(name: str, value: str, target: str, ok: bool | None) -> None:
        verdict = "" if ok is None else ("yes" if ok else "NO")
        print(f"{name:<52} {value:>22}  {target:<14} {verdict}")

    print()
    print(f"{'measure':<52} {'Ketch':>22}  {'target':<14} met")
    print("-" * 98)
    row(
        "(a) 1-step run: create_run_from_pipeline_func accepted",
        f"{a['accepted'] * 1000:.0f} ms",
        "",
        None,
    )
    row(
        "(a) 1-step run: to SUCCEEDED (median)",
        f"{a['succeeded']:.2f} s",
        "< 1 s",
        a["succeeded"] < 1,
    )
    row("(a) 1-step run: first run of a fresh server", f"{a['cold']:.2f} s", "", None)
    print(
        f"    {args.stored} runs inserted straight into the store in {insert_s:.1f} s; "
        f"list_runs sees total_size={total}"
    )
    for name, values in b.items():
        p50, p99 = percentile(values, 50), percentile(values, 99)
        row(
            f"(b) list_runs page_size=20, {name}",
            f"p50 {p50:.1f} / p99 {p99:.1f} ms",
            "p99 < 50 ms",
            p99 < 50,
        )
    all_ok = (
        c["accepted"] == args.concurrent and c["succeeded"] == args.concurrent and not c["errors"]
    )
    row(
        f"(c) {args.concurrent} concurrent submissions accepted",
        f"{c['accepted']}/{args.concurrent}",
        "all",
        c["accepted"] == args.concurrent,
    )
    row("(c)   ... finished SUCCEEDED", f"{c['succeeded']}/{args.concurrent}", "all", all_ok)
    row(
        "(c)   ... time to accept all / to finish all",
        f"{c['accepted_s']:.1f} s / {c['finished_s']:.1f} s",
        "",
        None,
    )
    row('(c)   ... "database is locked" in the server log', str(locked), "0", locked == 0)
    print("-" * 98)
    print(f"Kubeflow: {KUBEFLOW_CONTEXT}")
    if c["errors"]:
        print("\nsubmission errors:")
        for err in c["errors"][:10]:
            print(f"  {err}")
    bad = {r: s for r, s in c["states"].items() if s != "SUCCEEDED"}
    if bad:
        print(f"\nruns not SUCCEEDED: {bad}")


if __name__ == "__main__":
    main()
