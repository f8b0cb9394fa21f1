"""Ketch's Model Registry against MLflow 3's, and Ketch's find/list latency on a large
registry, in one script run.

a. Registering: ``ModelRegistry.register_model`` of the real ``model-registry`` client
   (0.3.18, in Ketch's venv) against ``ketch up`` (a temporary KETCH_HOME, SQLite, port
   0), and ``mlflow.register_model`` against ``mlflow server --backend-store-uri
   sqlite:///...`` on 127.0.0.1 (its defaults otherwise), run by MLflow's own venv
   (``.venv-mlflow``, made by ``scripts/mlflow-venv.sh`` when missing) in a client
   subprocess (``benchmarks/registry_mlflow_client.py``). Both sides, after
   ``--warmup`` registrations, register ``--n`` new versions of one model, each with an
   ``s3://`` URI and four metadata properties (MLflow: four tags), one call at a time,
   in ``--rounds`` rounds that take turns with both servers up: per-call median and
   p99, the total, and the ratio (target: Ketch at least 5x faster). The same
   registrations are also timed as the REST calls each client sends, over one
   keep-alive connection (httpx), which is what each server costs.
b. Finding and listing: a second ``ketch up`` on a store loaded, before it starts,
   with ``--models`` registered models and ``--versions`` versions (each with its model
   artifact and custom properties; rows written as the registry's store writes them,
   in bulk), then ``--samples`` GETs (one keep-alive connection, random targets) of:
   a model found by name, a version found by name under its model, the first page of
   registered models, a deep page by ``nextPageToken``, one model's versions (a model
   with hundreds, so the page is full) and a ``filterQuery`` over every version; p50
   and p99 (target: p99 under 20 ms).

::

    python benchmarks/registry_vs_mlflow.py [--quick] [--n 200] [--models 10000] ...

``--quick`` measures smaller sizes (50 registrations, 1,000 models, 10,000 versions,
100 samples); the default measures the sizes above. The machine's other load shows in
every number: run it on a quiet machine, and compare ratios rather than times.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
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
from benchmarks.registry_bulk import bulk_load  # noqa: E402
from benchmarks.registry_sides import (  # noqa: E402
    API,
    Runner,
    ketch_client,
    ketch_rest,
    ketch_up,
    log,
    mlflow_client,
    mlflow_python,
    mlflow_rest,
    mlflow_server,
    ssl_context_seconds,
)
from benchmarks.stats import percentile  # noqa: E402

P99_TARGET_MS = 20.0
RATIO_TARGET = 5.0


def part_a(work: Path, n: int, warmup: int, rounds: int) -> dict[str, Any]:
    """Both servers up; after each side's warm-up, ``rounds`` rounds of ``n / rounds``
    registrations per side in turn, so the machine's other load falls on all alike.
    Each MLflow client round is a new process, which registers 2 untimed first."""
    python = mlflow_python()
    (work / "mlflow").mkdir()
    with (
        ketch_up(work / "ketch-a") as server,
        mlflow_server(work / "mlflow") as url,
        ketch_client(server.url, "bench-client") as ketch_via_client,
        ketch_rest(server.url, "bench-rest") as ketch_via_rest,
        mlflow_rest(url, "bench-rest") as mlflow_via_rest,
    ):
        runners: dict[str, Runner] = {
            "ketch client": ketch_via_client,
            "mlflow client": mlflow_client(python, url, "bench-client"),
            "ketch rest": ketch_via_rest,
            "mlflow rest": mlflow_via_rest,
        }
        out: dict[str, Any] = {key: {"samples": [], "total": 0.0} for key in runners}
        done = dict.fromkeys(runners, 0)
        log(f"(a) {warmup} untimed registrations per side ...")
        for key, run in runners.items():
            run(0, warmup, 0)
            done[key] = warmup
        for r in range(rounds):
            size = n // rounds + (1 if r < n % rounds else 0)
            log(f"(a) round {r + 1}/{rounds}: {size} registrations per side ...")
            for key, run in runners.items():
                extra = 2 if key == "mlflow client" else 0
                got = run(done[key], extra, size)
                done[key] += extra + size
                out[key]["samples"] += got["samples"]
                out[key]["total"] += got["total"]
                out[key]["version"] = got.get("version", "")
    out["ssl"] = ssl_context_seconds()
    return out


def timed(
    http: httpx.Client, cases: dict[str, list[tuple[str, dict[str, Any]]]]
) -> dict[str, list[float]]:
    """Milliseconds of each GET of each case (after 20 untimed of each), the cases
    taking turns request by request, so the machine's other load falls on all alike;
    each must answer 200."""
    for requests in cases.values():
        for path, params in requests[:20]:
            http.get(path, params=params).raise_for_status()
    out: dict[str, list[float]] = {name: [] for name in cases}
    for turn in range(max(len(requests) for requests in cases.values())):
        for name, requests in cases.items():
            if turn >= len(requests):
                continue
            path, params = requests[turn]
            begin = time.perf_counter()
            response = http.get(path, params=params)
            out[name].append((time.perf_counter() - begin) * 1000)
            if response.status_code != 200:
                raise SystemExit(f"GET {path} {params}: {response.status_code} {response.text}")
    return out


def part_b(work: Path, models: int, versions: int, samples: int) -> dict[str, Any]:
    home = work / "ketch-b"
    home.mkdir()
    db_url = f"sqlite:///{home / 'ketch.db'}"
    log(f"(b) loading {models:,} registered models and {versions:,} versions into {db_url} ...")
    loaded = bulk_load(db_url, models, versions, seed=7)
    log(
        f"(b) {loaded['entities']:,} entities and {loaded['properties']:,} properties "
        f"in {loaded['seconds']:.1f} s; starting ketch up on them ..."
    )
    rng = random.Random(11)
    ids, names, counts = loaded["model_ids"], loaded["model_names"], loaded["counts"]
    big = [m for m in range(models) if counts[m] >= 100] or [
        max(range(models), key=counts.__getitem__)
    ]
    with ketch_up(home) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        # what the API answers is what was loaded
        first = http.get(f"{API}/registered_model", params={"name": names[0]}).json()
        assert first["id"] == str(ids[0]) and first["customProperties"]["team"], first
        listed = http.get(
            f"{API}/registered_models/{ids[big[0]]}/versions", params={"pageSize": 100}
        )
        assert listed.json()["size"] == min(100, counts[big[0]]), listed.text

        tokens: list[str] = []
        token = ""
        while len(tokens) < 200:
            page = http.get(
                f"{API}/registered_models", params={"pageSize": 100, "nextPageToken": token}
            ).json()
            token = page["nextPageToken"]
            if not token:
                break
            tokens.append(token)
        cases: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        cases["find a model: GET /registered_model?name="] = [
            (f"{API}/registered_model", {"name": names[rng.randrange(models)]})
            for _ in range(samples)
        ]
        versions_of = loaded["versions_of"]
        cases["find a version: GET /model_version?name=&parentResourceId="] = [
            (f"{API}/model_version", {"name": version, "parentResourceId": str(ids[owner])})
            for owner, version in (rng.choice(versions_of) for _ in range(samples))
        ]
        cases["list models: GET /registered_models?pageSize=100"] = [
            (f"{API}/registered_models", {"pageSize": 100})
        ] * samples
        cases["list models, a deep page by nextPageToken"] = [
            (f"{API}/registered_models", {"pageSize": 100, "nextPageToken": rng.choice(tokens)})
            for _ in range(samples)
        ]
        cases["a model's versions: /registered_models/{id}/versions"] = [
            (f"{API}/registered_models/{ids[rng.choice(big)]}/versions", {"pageSize": 100})
            for _ in range(samples)
        ]
        framework_filter = "framework = 'pytorch' AND accuracy > 0.9"
        cases[f"filterQuery on all versions: {framework_filter}"] = [
            (f"{API}/model_versions", {"pageSize": 100, "filterQuery": framework_filter})
        ] * samples
        log(f"(b) {samples} GETs of each of {len(cases)} requests, taking turns ...")
        results = timed(http, cases)
        matched = http.get(
            f"{API}/model_versions", params={"pageSize": 100, "filterQuery": framework_filter}
        ).json()
        wanted = [
            v["customProperties"]["framework"]["string_value"] == "pytorch"
            and v["customProperties"]["accuracy"]["double_value"] > 0.9
            for v in matched["items"]
        ]
        assert matched["size"] == 100 and all(wanted), matched["size"]
    return {"loaded": loaded, "results": results, "big": len(big), "pages": len(tokens)}


# -- the report ------------------------------------------------------------------------


def _times(ratio: float) -> str:
    return f"{ratio:.1f}x faster" if ratio >= 1 else f"{1 / ratio:.1f}x slower"


def report_a(a: dict[str, Any], n: int, warmup: int) -> None:
    def summary(result: dict[str, Any]) -> tuple[float, float, float]:
        samples = result["samples"]
        return statistics.median(samples) * 1000, percentile(samples, 99) * 1000, result["total"]

    version = a["mlflow client"].get("version", "")
    rows = [
        ("Ketch, model-registry 0.3.18 client", "ketch client"),
        (f"MLflow {version}, mlflow.register_model", "mlflow client"),
        ("Ketch, its 4 REST calls over HTTP", "ketch rest"),
        ("MLflow, its 2 REST calls over HTTP", "mlflow rest"),
    ]
    print()
    print(f"(a) register a new model version: {n} calls, one at a time, after {warmup} untimed")
    print(f"{'':<42} {'median':>9} {'p99':>9} {'total':>8}")
    for label, key in rows:
        median, p99, total = summary(a[key])
        print(f"{label:<42} {median:>7.1f}ms {p99:>7.1f}ms {total:>7.2f}s")
    for what, ketch, mlflow in (
        ("through the clients", "ketch client", "mlflow client"),
        ("the servers (plain HTTP)", "ketch rest", "mlflow rest"),
    ):
        ratio = summary(a[mlflow])[0] / summary(a[ketch])[0]
        total = summary(a[mlflow])[2] / summary(a[ketch])[2]
        met = "met" if ratio >= RATIO_TARGET else "NOT met"
        print(
            f"{what}: Ketch is {_times(ratio)} per call (median), {_times(total)} in total "
            f"(target: {RATIO_TARGET:.0f}x faster: {met})"
        )
    ssl_ms = a["ssl"] * 1000
    print(
        f"The model-registry client makes a new SSL context and aiohttp session for each REST "
        f"call (4 per register_model); ssl.create_default_context() alone takes {ssl_ms:.1f} ms "
        f"here, about {4 * ssl_ms:.0f} ms of each registration, whatever the server."
    )


def report_b(b: dict[str, Any], models: int, versions: int) -> None:
    loaded = b["loaded"]
    print()
    print(
        f"(b) find and list with {models:,} registered models and {versions:,} versions "
        f"({loaded['entities']:,} entities with the artifacts, {loaded['properties']:,} "
        f"custom properties; {b['big']} models hold 55% of the versions)"
    )
    print(f"{'request':<72} {'p50':>8} {'p99':>8}  target")
    for name, values in b["results"].items():
        p50, p99 = percentile(values, 50), percentile(values, 99)
        met = "met" if p99 < P99_TARGET_MS else "NOT met"
        print(f"{name:<72} {p50:>6.1f}ms {p99:>6.1f}ms  p99 < {P99_TARGET_MS:.0f} ms: {met}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a quick look")
    parser.add_argument("--n", type=int, help="registrations timed in (a) (default 200)")
    parser.add_argument("--warmup", type=int, help="untimed registrations first (default 20)")
    parser.add_argument("--models", type=int, help="registered models in (b) (default 10,000)")
    parser.add_argument("--versions", type=int, help="versions in (b) (default 100,000)")
    parser.add_argument("--samples", type=int, help="GETs timed per request in (b) (default 500)")
    parser.add_argument("--rounds", type=int, default=4, help="rounds of (a) (default 4)")
    parser.add_argument("--only", choices=("a", "b"), help="run one part")
    args = parser.parse_args()
    quick = {"n": 50, "warmup": 5, "models": 1000, "versions": 10_000, "samples": 100}
    full = {"n": 200, "warmup": 20, "models": 10_000, "versions": 100_000, "samples": 500}
    sizes = {k: getattr(args, k) or (quick if args.quick else full)[k] for k in full}
    if sizes["models"] < 2 or sizes["versions"] < sizes["models"]:
        raise SystemExit("--models must be at least 2 and --versions at least --models")

    load = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="ketch-registry-bench-"))
    try:
        a = (
            part_a(work, sizes["n"], sizes["warmup"], max(1, args.rounds))
            if args.only != "b"
            else None
        )
        b = (
            part_b(work, sizes["models"], sizes["versions"], sizes["samples"])
            if args.only != "a"
            else None
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"\nmachine: {os.cpu_count()} CPUs, load average {load:.1f} at the start and "
        f"{os.getloadavg()[0]:.1f} at the end (other work on it makes every number noisy)"
    )
    if a is not None:
        report_a(a, sizes["n"], sizes["warmup"])
    if b is not None:
        report_b(b, sizes["models"], sizes["versions"])


if __name__ == "__main__":
    main()
