"""Ketch's Kubernetes API surface, measured the way kubectl and the clients use it.

Starts ``ketch up`` on 127.0.0.1 (its own ``KETCH_HOME`` in a temporary directory,
SQLite unless ``KETCH_DATABASE_URL`` is set) and measures:

a. watch latency: a client watches PyTorchJobs (a Kubernetes watch stream, read with
   httpx or, with ``--client kubernetes``, the ``kubernetes`` client's
   ``Watch().stream``) while ``--writes`` label patches are made to one job through
   the API, one at a time; per write, the time from sending the PATCH to the client
   holding the MODIFIED event it caused (so it includes the write itself), p50/p99;
b. the same for writes made by another process (straight into the store, as a CLI
   or a pipeline task writes), which the server finds by reading its change journal
   every ``KETCH_WATCH_POLL_SECONDS`` (1 s unless set);
c. listing ``--jobs`` PyTorchJobs in a namespace as a ``meta.k8s.io`` Table (what
   ``kubectl get pytorchjobs`` asks for) and as plain JSON: p50/p99 of ``--samples``
   lists.

No Kubernetes cluster is measured here; the table prints the targets::

    python benchmarks/k8s_api.py [--writes 200] [--jobs 1000] [--samples 200] [--client httpx]
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import statistics
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Any

warnings.filterwarnings("ignore", category=FutureWarning)
warnings.filterwarnings("ignore", category=DeprecationWarning)

REPO = Path(__file__).resolve().parents[1]
for path in (REPO / "src", REPO):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))  # run from a checkout

import httpx  # noqa: E402
from benchmarks.stats import percentile  # noqa: E402

GROUP, VERSION, PLURAL = "kubeflow.org", "v1", "pytorchjobs"
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
CONTEXT = (
    "Context: on a Kubernetes cluster a watch event reaches a client some milliseconds "
    "after the write commits in etcd (the API server's watch cache fans it out)."
)


def path(ns: str, name: str | None = None) -> str:
    base = f"/apis/{GROUP}/{VERSION}/namespaces/{ns}/{PLURAL}"
    return f"{base}/{name}" if name else base


def job(name: str, ns: str) -> dict[str, Any]:
    """A PyTorchJob that stays suspended: stored and listed, nothing runs."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "PyTorchJob",
        "metadata": {"name": name, "namespace": ns, "labels": {"bench": "k8s-api"}},
        "spec": {
            "runPolicy": {"suspend": True},
            "pytorchReplicaSpecs": {
                "Master": {
                    "replicas": 1,
                    "restartPolicy": "Never",
                    "template": {
                        "spec": {
                            "containers": [
                                {"name": "pytorch", "image": "pytorch/pytorch", "command": ["true"]}
                            ]
                        }
                    },
                }
            },
        },
    }


class Watcher:
    """Watches a namespace's PyTorchJobs in a thread; ``seen`` gets ``(seq, time)``
    for each MODIFIED event whose object carries the ``seq`` label."""

    def __init__(self, url: str, ns: str, client: str) -> None:
        self.url, self.ns, self.client = url, ns, client
        self.seen: queue.Queue[tuple[str, float]] = queue.Queue()
        self.ready = threading.Event()
        self.stop = threading.Event()
        target = self._kubernetes if client == "kubernetes" else self._httpx
        self.thread = threading.Thread(target=target, daemon=True)
        self.thread.start()
        if not self.ready.wait(30):
            raise RuntimeError("the watch did not start")

    def _record(self, event: dict[str, Any]) -> None:
        now = time.perf_counter()
        if event.get("type") == "MODIFIED":
            seq = (event["object"]["metadata"].get("labels") or {}).get("seq")
            if seq is not None:
                self.seen.put((seq, now))
        elif event.get("type") == "ADDED":
            self.ready.set()

    def _httpx(self) -> None:
        with httpx.Client(base_url=self.url, timeout=httpx.Timeout(30, read=None)) as http:
            params = {"watch": "true", "allowWatchBookmarks": "true"}
            with http.stream("GET", path(self.ns), params=params) as response:
                for line in response.iter_lines():
                    if line.strip():
                        self._record(json.loads(line))
                    if self.stop.is_set():
                        return

    def _kubernetes(self) -> None:
        from kubernetes import client, watch

        configuration = client.Configuration()
        configuration.host = self.url
        with client.ApiClient(configuration) as api_client:
            api = client.CustomObjectsApi(api_client)
            stream = watch.Watch()
            for event in stream.stream(
                api.list_namespaced_custom_object, GROUP, VERSION, self.ns, PLURAL
            ):
                self._record({"type": event["type"], "object": event["raw_object"]})
                if self.stop.is_set():
                    stream.stop()


def wait_for(watcher: Watcher, seq: str, timeout: float = 30.0) -> float:
    deadline = time.monotonic() + timeout
    while True:
        got, at = watcher.seen.get(timeout=max(0.0, deadline - time.monotonic()))
        if got == seq:
            return at


def bench_watch_api(url: str, ns: str, writes: int, client: str) -> list[float]:
    with httpx.Client(base_url=url, timeout=30) as http:
        http.post(path(ns), json=job("watched", ns)).raise_for_status()
        watcher = Watcher(url, ns, client)
        latencies = []
        for index in range(writes + 10):
            seq = str(index)
            started = time.perf_counter()
            http.patch(
                path(ns, "watched"),
                json={"metadata": {"labels": {"seq": seq}}},
                headers={"Content-Type": "application/merge-patch+json"},
            ).raise_for_status()
            arrived = wait_for(watcher, seq)
            if index >= 10:  # the first ten warm up
                latencies.append((arrived - started) * 1000)
        watcher.stop.set()
    return latencies


def bench_watch_other_process(url: str, db_url: str, ns: str, writes: int) -> list[float]:
    from ketch.core.resource import Resource
    from ketch.core.store.db import Database
    from ketch.core.store.resources import ResourceStore

    with Database(db_url) as database:
        store = ResourceStore(database, migrate=False)
        store.create(Resource.from_manifest(job("direct", ns)))
        watcher = Watcher(url, ns, "httpx")
        latencies = []
        for index in range(writes):
            seq = f"d{index}"
            manifest = job("direct", ns)
            manifest["metadata"]["labels"]["seq"] = seq
            started = time.perf_counter()
            store.apply(Resource.from_manifest(manifest))
            latencies.append((wait_for(watcher, seq) - started) * 1000)
        watcher.stop.set()
    return latencies


def store_jobs(db_url: str, ns: str, count: int) -> float:
    from ketch.core.resource import Resource
    from ketch.core.store.db import Database
    from ketch.core.store.resources import ResourceStore

    started = time.perf_counter()
    with Database(db_url) as database:
        store = ResourceStore(database, migrate=False)
        for index in range(count):
            store.create(Resource.from_manifest(job(f"job-{index:05d}", ns)))
    return time.perf_counter() - started


def settle(url: str, ns: str, quiet: float = 2.0, timeout: float = 120.0) -> None:
    """Wait until the controllers have seen the stored jobs (they stay suspended, but
    record that): the list's resourceVersion stops moving for ``quiet`` seconds."""
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=url, timeout=60) as http:
        last, since = "", time.monotonic()
        while time.monotonic() < deadline:
            version = http.get(path(ns), params={"limit": 1}).json()["metadata"]["resourceVersion"]
            if version != last:
                last, since = version, time.monotonic()
            elif time.monotonic() - since >= quiet:
                return
            time.sleep(0.2)


def bench_list(url: str, ns: str, samples: int, headers: dict[str, str]) -> list[float]:
    timings = []
    with httpx.Client(base_url=url, timeout=60) as http:
        for _ in range(samples + 5):
            started = time.perf_counter()
            response = http.get(path(ns), headers=headers)
            response.raise_for_status()
            response.json()
            timings.append((time.perf_counter() - started) * 1000)
    return timings[5:]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--writes", type=int, default=200, help="writes timed in (a)")
    parser.add_argument("--other-writes", type=int, default=20, help="writes timed in (b)")
    parser.add_argument("--jobs", type=int, default=1000, help="PyTorchJobs listed in (c)")
    parser.add_argument("--samples", type=int, default=200, help="lists timed in (c)")
    parser.add_argument(
        "--client",
        choices=("httpx", "kubernetes"),
        default="httpx",
        help="what reads the watch stream in (a)",
    )
    args = parser.parse_args()

    from tests.server.helpers import Server

    with tempfile.TemporaryDirectory(prefix="ketch-k8s-bench-") as tmp:
        home = Path(tmp) / "home"
        server = Server(home, database_url=os.environ.get("KETCH_DATABASE_URL") or None)
        print(f"starting a Ketch server (KETCH_HOME={home}) ...", flush=True)
        server.start()
        try:
            print(f"(a) {args.writes} writes through the API, watched ({args.client}) ...")
            a = bench_watch_api(server.url, "bench-watch", args.writes, args.client)
            print(f"(b) {args.other_writes} writes by another process, watched ...")
            b = bench_watch_other_process(
                server.url, server.db_url, "bench-other", args.other_writes
            )
            print(f"(c) storing {args.jobs} PyTorchJobs, then {args.samples} lists per case ...")
            stored = store_jobs(server.db_url, "bench-list", args.jobs)
            settle(server.url, "bench-list")
            table = bench_list(server.url, "bench-list", args.samples, {"Accept": TABLE})
            plain = bench_list(server.url, "bench-list", args.samples, {})
        finally:
            server.stop()

    def row(name: str, values: list[float], target: float | None) -> None:
        p50, p99 = percentile(values, 50), percentile(values, 99)
        verdict = "" if target is None else ("yes" if p99 < target else "NO")
        goal = "" if target is None else f"p99 < {target:.0f} ms"
        print(f"{name:<58} {p50:>8.1f} {p99:>8.1f}  {goal:<14} {verdict}")

    print()
    print(f"{'measure (ms)':<58} {'p50':>8} {'p99':>8}  {'target':<14} met")
    print("-" * 98)
    row(f"(a) watch event after a write through the API ({args.client})", a, 50)
    row("(b) watch event after a write by another process (polled)", b, None)
    row(f"(c) list {args.jobs} PyTorchJobs as a Table", table, 100)
    row(f"(c) list {args.jobs} PyTorchJobs as JSON", plain, None)
    print()
    print(
        f"(c) {args.jobs} PyTorchJobs stored in {stored:.1f} s; mean Table list "
        f"{statistics.fmean(table):.1f} ms"
    )
    print(CONTEXT)


if __name__ == "__main__":
    main()
