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
import asyncio
import json
import logging
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
for path in (REPO / "src", REPO):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))  # run from a checkout

import httpx  # noqa: E402
from benchmarks.registry_bulk import bulk_load  # noqa: E402
from benchmarks.stats import percentile  # noqa: E402
from tests.server.helpers import Server  # noqa: E402

API = "/api/model_registry/v1"
MLFLOW_VENV = REPO / ".venv-mlflow"
MLFLOW_CLIENT = Path(__file__).resolve().parent / "registry_mlflow_client.py"
P99_TARGET_MS = 20.0
RATIO_TARGET = 5.0


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# -- servers ---------------------------------------------------------------------------


@contextmanager
def ketch_up(home: Path) -> Iterator[Server]:
    """A ``ketch up --port 0`` on ``home`` (SQLite), stopped at the end."""
    server = Server(home, args=("--log-level", "warning"))
    server.start(timeout=120)
    try:
        yield server
    finally:
        server.stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def mlflow_python() -> Path:
    """MLflow's venv's interpreter, made by ``scripts/mlflow-venv.sh`` when missing."""
    found = subprocess.run(
        [str(REPO / "scripts" / "mlflow-venv.sh")], stdout=subprocess.PIPE, text=True
    )
    if found.returncode != 0:
        raise SystemExit("MLflow could not be installed: see scripts/mlflow-venv.sh's output")
    return Path(found.stdout.strip().splitlines()[-1])


@contextmanager
def mlflow_server(work: Path) -> Iterator[str]:
    """``mlflow server`` with a SQLite backend in ``work``; its URL once it answers."""
    port = free_port()
    log_file = work / "mlflow-server.log"
    command = [
        str(MLFLOW_VENV / "bin" / "mlflow"),
        "server",
        "--backend-store-uri",
        f"sqlite:///{work / 'mlflow.db'}",
        "--default-artifact-root",
        str(work / "mlartifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    with log_file.open("wb") as output:
        process = subprocess.Popen(
            command,
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=work,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                text = log_file.read_text(errors="replace")[-3000:]
                raise SystemExit(f"mlflow server did not start; see {log_file}:\n{text}")
            time.sleep(0.2)
        yield url
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)  # the server and its workers
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)


# -- (a) registering -------------------------------------------------------------------


class LoopThread:
    """An event loop on a thread of its own for the ``model-registry`` client's
    coroutines (its ``async_runner``), so it does not patch this process's asyncio."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(120)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def metadata(i: int) -> dict[str, Any]:
    """The four metadata properties of registration ``i`` (MLflow's tags are their
    strings: ``registry_mlflow_client.tags`` computes the same)."""
    return {
        "accuracy": 0.9 + (i % 100) / 1000,
        "epochs": i % 50 + 1,
        "framework": "sklearn",
        "stage": "dev",
    }


def typed(values: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``values`` as the Model Registry API's typed custom properties."""
    out: dict[str, dict[str, Any]] = {}
    for key, value in values.items():
        if isinstance(value, float):
            out[key] = {"metadataType": "MetadataDoubleValue", "double_value": value}
        elif isinstance(value, int):
            out[key] = {"metadataType": "MetadataIntValue", "int_value": str(value)}
        else:
            out[key] = {"metadataType": "MetadataStringValue", "string_value": str(value)}
    return out


#: one side's registrations: ``run(start, warmup, n)`` registers ``start``,
#: ``start + 1``, ... (the first ``warmup`` untimed); the timed calls' seconds and total
Runner = Callable[[int, int, int], dict[str, Any]]


def timed_loop(register: Callable[[int], None], start: int, warmup: int, n: int) -> dict[str, Any]:
    """``register(i)`` for ``warmup`` untimed then ``n`` timed registrations: the
    seconds of each timed call and of the whole timed loop."""
    for i in range(start, start + warmup):
        register(i)
    samples = []
    began = time.perf_counter()
    for i in range(start + warmup, start + warmup + n):
        begin = time.perf_counter()
        register(i)
        samples.append(time.perf_counter() - begin)
    return {"samples": samples, "total": time.perf_counter() - began}


@contextmanager
def ketch_client(url: str, name: str) -> Iterator[Runner]:
    """``ModelRegistry.register_model`` of the real client, one call at a time."""
    warnings.filterwarnings("ignore", message="User access token is missing")
    from model_registry import ModelRegistry

    runner = LoopThread()
    last = -1
    try:
        host, port = url.rsplit(":", 1)
        registry = ModelRegistry(
            host,
            int(port),
            author="bench",
            is_secure=False,
            async_runner=runner.run,
            # it warns of an http:// port other than 80, which is what ketch up serves
            log_level=logging.ERROR,
        )

        def register(i: int) -> None:
            nonlocal last
            registry.register_model(
                name,
                f"s3://bench-models/{name}/{i}",
                model_format_name="sklearn",
                model_format_version="1",
                version=f"v{i + 1}",
                metadata=metadata(i),
            )
            last = i

        yield lambda start, warmup, n: timed_loop(register, start, warmup, n)
        version = registry.get_model_version(name, f"v{last + 1}")
        artifact = registry.get_model_artifact(name, f"v{last + 1}")
        if (
            version is None
            or artifact is None
            or artifact.uri != f"s3://bench-models/{name}/{last}"
        ):
            raise SystemExit(f"Ketch did not keep version v{last + 1} of {name} as registered")
        if version.custom_properties != metadata(last):
            raise SystemExit(f"Ketch kept other metadata: {version.custom_properties}")
    finally:
        runner.close()


@contextmanager
def ketch_rest(url: str, name: str) -> Iterator[Runner]:
    """The REST calls ``register_model`` sends for a new version of an existing model
    (find the model, find the version: 404, create it, add its model artifact), over
    one keep-alive connection."""
    with httpx.Client(base_url=url, timeout=30) as http:
        http.post(
            f"{API}/registered_models", json={"name": name, "owner": "bench", "state": "LIVE"}
        ).raise_for_status()

        def register(i: int) -> None:
            model = http.get(f"{API}/registered_model", params={"name": name})
            model.raise_for_status()
            model_id = model.json()["id"]
            version_name = f"v{i + 1}"
            found = http.get(
                f"{API}/model_version", params={"name": version_name, "parentResourceId": model_id}
            )
            if found.status_code != 404:
                raise SystemExit(f"version {version_name} of {name}: {found.status_code}")
            version = http.post(
                f"{API}/model_versions",
                json={
                    "name": version_name,
                    "state": "LIVE",
                    "author": "bench",
                    "registeredModelId": model_id,
                    "customProperties": typed(metadata(i)),
                },
            )
            version.raise_for_status()
            http.post(
                f"{API}/model_versions/{version.json()['id']}/artifacts",
                json={
                    "name": name,
                    "artifactType": "model-artifact",
                    "modelFormatName": "sklearn",
                    "modelFormatVersion": "1",
                    "uri": f"s3://bench-models/{name}/{i}",
                    "state": "UNKNOWN",
                },
            ).raise_for_status()

        yield lambda start, warmup, n: timed_loop(register, start, warmup, n)


def mlflow_client(python: Path, url: str, name: str) -> Runner:
    """``mlflow.register_model``, one call at a time, in a process of MLflow's venv."""

    def run(start: int, warmup: int, n: int) -> dict[str, Any]:
        command = [str(python), str(MLFLOW_CLIENT), url, name, str(start), str(warmup), str(n)]
        found = subprocess.run(command, capture_output=True, text=True, timeout=1800)
        if found.returncode != 0:
            raise SystemExit(f"the MLflow client failed:\n{found.stderr[-3000:]}")
        result: dict[str, Any] = json.loads(found.stdout.strip().splitlines()[-1])
        return result

    return run


@contextmanager
def mlflow_rest(url: str, name: str) -> Iterator[Runner]:
    """The REST calls ``mlflow.register_model`` sends for a new version of an existing
    model (create the model: RESOURCE_ALREADY_EXISTS, create the version), over one
    keep-alive connection."""
    with httpx.Client(base_url=url, timeout=30) as http:

        def register(i: int) -> None:
            model = http.post("/api/2.0/mlflow/registered-models/create", json={"name": name})
            if model.status_code != 200 and "RESOURCE_ALREADY_EXISTS" not in model.text:
                raise SystemExit(f"MLflow: creating {name} answered {model.text}")
            tags = [{"key": k, "value": str(v)} for k, v in metadata(i).items()]
            version = http.post(
                "/api/2.0/mlflow/model-versions/create",
                json={"name": name, "source": f"s3://bench-models/{name}/{i}", "tags": tags},
            )
            version.raise_for_status()
            if version.json()["model_version"]["version"] != str(i + 1):
                raise SystemExit(f"MLflow made {version.text}, not version {i + 1}")

        yield lambda start, warmup, n: timed_loop(register, start, warmup, n)


def ssl_context_seconds(samples: int = 30) -> float:
    """The median cost of ``ssl.create_default_context()`` here: what the
    ``model-registry`` client pays before each of its REST calls (it makes a new
    ``ApiClient``, SSL context and aiohttp session for every call, even over http)."""
    import ssl

    costs = []
    for _ in range(samples):
        begin = time.perf_counter()
        ssl.create_default_context()
        costs.append(time.perf_counter() - begin)
    return statistics.median(costs)


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
