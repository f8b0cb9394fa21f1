"""What authentication and authorization cost, with and without them, in one run.

Starts one ``ketch up`` in a temporary KETCH_HOME with an iris InferenceService (an
sklearn LogisticRegression, as ``benchmarks/inferenceservice_vs_mlserver.py`` sets
it up) and a ConfigMap in the namespace ``bench``, then alternates, round by round,
between a store without users (authentication off) and the same store with one user,
the owner of the ``bench`` Profile (a namespace admin), whose API token every
request sends (authentication on: the user is added and removed between the
phases, as ``ketch users`` does, on the running server):

a. the API: GETs of ``/api/v1/namespaces/bench/configmaps/settings`` over one
   keep-alive connection; the median of each variant and the difference (target:
   at most 1 ms added);
b. the serving hot path: single-row V2 infer at the service's ``status.url`` (its
   router), with ``wrk`` (else an asyncio load generator) at 8 connections; req/s
   with authentication on over off (target: at least 90%).

    python benchmarks/access_overhead.py [--gets 1000] [--duration 10] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from inferenceservice_vs_mlserver import ketch_up  # noqa: E402
from serving_vs_mlserver import (  # noqa: E402
    Result,
    find_wrk,
    log,
    median_result,
    run_python,
    run_wrk,
    train,
)

from ketch.core.resource import Resource  # noqa: E402
from ketch.core.store.db import Database  # noqa: E402
from ketch.core.store.resources import ResourceStore  # noqa: E402
from ketch.tenancy.tables import MIGRATIONS  # noqa: E402
from ketch.tenancy.users import Directory  # noqa: E402

NAMESPACE = "bench"
OWNER = "owner@example.com"
CONFIGMAP = f"/api/v1/namespaces/{NAMESPACE}/configmaps/settings"
ISVC = f"/apis/serving.kserve.io/v1beta1/namespaces/{NAMESPACE}/inferenceservices/iris"
CONNECTIONS = 8


def setup(api: str, home: Path, model: Path) -> str:
    """The Profile, the ConfigMap and the InferenceService; its ``status.url`` once Ready."""
    database = Database(f"sqlite:///{home / 'ketch.db'}")
    try:
        ResourceStore(database).apply(
            Resource.from_manifest(
                {
                    "apiVersion": "kubeflow.org/v1",
                    "kind": "Profile",
                    "metadata": {"name": NAMESPACE, "namespace": "default"},
                    "spec": {"owner": {"kind": "User", "name": OWNER}},
                }
            )
        )
    finally:
        database.dispose()
    manifest = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "iris", "namespace": NAMESPACE},
        "spec": {"predictor": {"sklearn": {"storageUri": f"file://{model}"}}},
    }
    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "settings", "namespace": NAMESPACE},
        "data": {"learning_rate": "0.01"},
    }
    with httpx.Client(base_url=api, timeout=30) as client:
        client.put(CONFIGMAP, json=configmap).raise_for_status()
        client.put(ISVC, json=manifest).raise_for_status()
        deadline = time.monotonic() + 120
        status: dict[str, object] = {}
        while time.monotonic() < deadline:
            status = client.get(ISVC).json().get("status", {})
            conditions = status.get("conditions") or []
            ready = [c for c in conditions if isinstance(c, dict) and c["type"] == "Ready"]
            if ready and ready[0]["status"] == "True":
                return str(status["url"])
            time.sleep(0.2)
    raise RuntimeError(f"the InferenceService did not become ready: {status}")


class Users:
    """Turns authentication on (one user, with a token) and off (no users)."""

    def __init__(self, home: Path) -> None:
        self.database = Database(f"sqlite:///{home / 'ketch.db'}")
        self.database.migrate([MIGRATIONS])
        self.directory = Directory(self.database)

    def on(self, api: str) -> str:
        self.directory.add(OWNER)
        token = self.directory.create_token(OWNER, name="bench")[1]
        _wait(api, None, 401)  # the server sees the user (within its 1 s cache)
        _wait(api, token, 200)
        return token

    def off(self, api: str) -> None:
        self.directory.remove(OWNER)
        _wait(api, None, 200)

    def close(self) -> None:
        self.database.dispose()


def _wait(api: str, token: str | None, code: int) -> None:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if httpx.get(f"{api}{CONFIGMAP}", headers=headers).status_code == code:
            time.sleep(1.2)  # past every 1 s cache (the router's too)
            return
        time.sleep(0.1)
    raise RuntimeError(f"the server never answered {code}")


def api_gets(api: str, token: str | None, count: int) -> list[float]:
    """Seconds per GET of the ConfigMap, ``count`` times over one connection."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    samples = []
    with httpx.Client(base_url=api, headers=headers, timeout=30) as client:
        for _ in range(50):  # warm-up
            client.get(CONFIGMAP).raise_for_status()
        for _ in range(count):
            started = time.perf_counter()
            response = client.get(CONFIGMAP)
            samples.append(time.perf_counter() - started)
            if response.status_code != 200:
                raise RuntimeError(f"GET answered {response.status_code}: {response.text}")
    return samples


def load(
    url: str, token: str | None, args: argparse.Namespace, wrk: str | None, scratch: Path
) -> Result:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    warmup = min(2.0, args.duration / 2)
    if wrk:
        run_wrk(wrk, url, CONNECTIONS, warmup, scratch, headers)
        return run_wrk(wrk, url, CONNECTIONS, args.duration, scratch, headers)
    run_python(url, CONNECTIONS, warmup, headers)
    return run_python(url, CONNECTIONS, args.duration, headers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gets", type=int, default=1000, help="GETs per variant and round")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of load per run")
    parser.add_argument("--rounds", type=int, default=2, help="off/on alternations; medians")
    parser.add_argument("--skip-serving", action="store_true")
    args = parser.parse_args()

    wrk = None if args.skip_serving else find_wrk()
    generator = "wrk (2 threads)" if wrk else "Python asyncio load generator (wrk unavailable)"
    gets: dict[str, list[float]] = {"off": [], "on": []}
    served: dict[str, list[Result]] = {"off": [], "on": []}
    with tempfile.TemporaryDirectory(prefix="access-bench-") as tmp:
        scratch = Path(tmp)
        train(scratch)
        home = scratch / "home"
        with ketch_up(home) as api:
            url = setup(api, home, scratch / "ketch" / "iris")
            users = Users(home)
            try:
                for round_ in range(args.rounds):
                    for variant in ("off", "on"):
                        token = users.on(api) if variant == "on" else None
                        log(f"round {round_ + 1}, authentication {variant}: {args.gets} GETs ...")
                        gets[variant] += api_gets(api, token, args.gets)
                        if not args.skip_serving:
                            log(f"round {round_ + 1}, authentication {variant}: infer load ...")
                            served[variant].append(load(url, token, args, wrk, scratch))
                        if variant == "on":
                            users.off(api)
            finally:
                users.close()

    off, on = statistics.median(gets["off"]) * 1000, statistics.median(gets["on"]) * 1000
    print(f"\n{os.cpu_count()} CPUs; {args.rounds} round(s), authentication off then on each.")
    print(f"\na. GET {CONFIGMAP}: {args.gets} per variant and round, one keep-alive connection")
    print(f"   {'authentication':<16} {'median ms':>10}")
    print(f"   {'off':<16} {off:>10.3f}")
    print(f"   {'on (token)':<16} {on:>10.3f}")
    print(f"   added by authorization: {on - off:+.3f} ms median (target <= 1 ms)")
    if args.skip_serving:
        return
    print(f"\nb. single-row V2 infer at the InferenceService's URL; {generator}, {CONNECTIONS}")
    print("   connections; medians of the rounds")
    header = f"   {'authentication':<16} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}"
    print(header)
    results = {}
    for variant, label in (("off", "off"), ("on", "on (token)")):
        r = results[variant] = median_result(served[variant])
        print(f"   {label:<16} {r.rps:>9.0f} {r.p50_ms:>8.2f} {r.p99_ms:>8.2f} {r.errors:>7}")
    ratio = results["on"].rps / results["off"].rps
    print(f"   req/s with authentication on / off = {ratio:.1%} (target >= 90%)")


if __name__ == "__main__":
    main()
