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
   every ``KETCH_WATCH_POLL_SECONDS`` (0.25 s unless set);
c. the same for writes the server's controllers make (``--runs`` PyTorchJobs run to
   the end, one at a time: their pods written as their processes start and end,
   their status and conditions, the events recorded about them), each watched by its
   own stream (pods, pytorchjobs, events); per event, the time from the write (when
   the write journaled itself: its ``created_at`` in the store's change journal, read
   back afterwards) to the client holding the event it caused, p50/p99 per stream;
   and, for ``--writes`` pod writes made in the server's process outside any request
   (an app served in this process; a ``PodStore`` on its ``Database`` writing from a
   thread, as a controller does), the time from starting the write to the client
   holding its event;
d. listing ``--jobs`` PyTorchJobs in a namespace as a ``meta.k8s.io`` Table (what
   ``kubectl get pytorchjobs`` asks for) and as plain JSON: p50/p99 of ``--samples``
   lists.

No Kubernetes cluster is measured here; the table prints the targets::

    python benchmarks/k8s_api.py [--writes 200] [--runs 10] [--jobs 1000] [--samples 200]
                                 [--client httpx]
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
    """Watches a namespace's PyTorchJobs (or what ``collection`` names) in a thread;
    ``seen`` gets ``(seq, time)`` for each MODIFIED event whose object carries the
    ``seq`` label."""

    def __init__(self, url: str, ns: str, client: str, collection: str | None = None) -> None:
        self.url, self.ns, self.client = url, ns, client
        self.collection = collection or path(ns)
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
            with http.stream("GET", self.collection, params=params) as response:
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


def running_job(name: str, ns: str) -> dict[str, Any]:
    """A PyTorchJob that runs to the end: its worker exits at once, its master half a
    second later (so the worker's pod ends while the job's status stays as it was)."""
    manifest = job(name, ns)
    manifest["spec"]["runPolicy"] = {"suspend": False}
    replicas = manifest["spec"]["pytorchReplicaSpecs"]
    worker = json.loads(json.dumps(replicas["Master"]))
    replicas["Worker"] = worker
    for spec, code in ((replicas["Master"], "import time; time.sleep(0.5)"), (worker, "pass")):
        (container,) = spec["template"]["spec"]["containers"]
        container["command"] = ["python", "-c", code]
    return manifest


class Stream:
    """Every event of one watch (read in a thread): ``(type, object, wall-clock time
    it arrived)``."""

    def __init__(self, url: str, watch_path: str) -> None:
        self.events: list[tuple[str, dict[str, Any], float]] = []
        self.stop = threading.Event()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._read, args=(url, watch_path), daemon=True)
        self.thread.start()
        if not self.ready.wait(30):
            raise RuntimeError(f"the watch of {watch_path} did not start")

    def _read(self, url: str, watch_path: str) -> None:
        params = {"watch": "true", "allowWatchBookmarks": "true"}
        with httpx.Client(base_url=url, timeout=httpx.Timeout(30, read=None)) as http:
            with http.stream("GET", watch_path, params=params) as response:
                self.ready.set()
                for line in response.iter_lines():
                    if line.strip():
                        event = json.loads(line)
                        self.events.append((event["type"], event["object"], time.time()))
                    if self.stop.is_set():
                        return

    def close(self) -> None:
        """Stop reading (the thread ends at the next event, or with the process)."""
        self.stop.set()


def bench_watch_controllers(url: str, db_url: str, ns: str, runs: int) -> dict[str, list[float]]:
    """Latencies (ms) of the events of controller-made writes, per stream."""
    from sqlalchemy import select

    from ketch.core.store.db import Database
    from ketch.core.store.models import ChangeRow

    streams = {
        "pods": Stream(url, f"/api/v1/namespaces/{ns}/pods"),
        "pytorchjobs": Stream(url, path(ns)),
        "events": Stream(url, f"/api/v1/namespaces/{ns}/events"),
    }
    try:
        with httpx.Client(base_url=url, timeout=30) as http:
            for index in range(runs):
                name = f"run-{index}"
                http.post(path(ns), json=running_job(name, ns)).raise_for_status()
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline:
                    status = http.get(path(ns, name)).json().get("status") or {}
                    last = (status.get("conditions") or [{}])[-1]
                    if last.get("type") in ("Succeeded", "Failed") and last.get("status") == "True":
                        break
                    time.sleep(0.05)
                else:
                    raise RuntimeError(f"PyTorchJob {name} did not finish")
                time.sleep(0.5)  # its last writes arrive
    finally:
        for stream in streams.values():
            stream.close()
    arrivals: dict[str, list[tuple[int, float]]] = {}
    for label, stream in streams.items():
        for type_, obj, at in list(stream.events):
            if type_ not in ("ADDED", "MODIFIED", "DELETED"):
                continue
            if label == "pytorchjobs" and type_ == "ADDED":
                continue  # written through the API, not by a controller
            arrivals.setdefault(label, []).append((int(obj["metadata"]["resourceVersion"]), at))
    wanted = {revision for found in arrivals.values() for revision, _ in found}
    with Database(db_url) as database, database.session(readonly=True) as session:
        written = {
            int(revision): created.timestamp()
            for revision, created in session.execute(
                select(ChangeRow.revision, ChangeRow.created_at).where(
                    ChangeRow.revision.in_(sorted(wanted))
                )
            )
        }
    return {
        label: [(at - written[revision]) * 1000 for revision, at in found if revision in written]
        for label, found in arrivals.items()
    }


def bench_watch_in_process(db_url: str, ns: str, writes: int) -> list[float]:
    """Latencies (ms) of pod writes made in the server's own process outside any request
    (a ``PodStore`` on the app's ``Database``, in a thread of its own, as a controller
    writes), from the write's start to the watching client holding its event: an app
    served in this process, watched over HTTP."""
    from tests.server.helpers import ThreadServer

    from ketch.capabilities import create_app
    from ketch.core.store.pods import ContainerRecord, Owner, PodRecord, PodStore
    from ketch.core.timestamps import utcnow

    app = create_app(database_url=db_url, background=False)
    with ThreadServer(app) as running:
        pods = PodStore(app.state.api.database)
        owner = Owner("kubeflow.org/v1", "PyTorchJob", "in-process", "in-process-uid")
        record = PodRecord(namespace=ns, name="written", owner=owner, start_time=utcnow())
        record.containers = [ContainerRecord("main", {"image": "i"}, "running")]
        pods.put([record])
        watcher = Watcher(running.url, ns, "httpx", f"/api/v1/namespaces/{ns}/pods")
        latencies: list[float] = []
        for index in range(writes + 10):
            seq = f"p{index}"
            record.labels = {"seq": seq}
            writer = threading.Thread(target=pods.put, args=([record],))
            started = time.perf_counter()
            writer.start()
            arrived = wait_for(watcher, seq)
            writer.join()
            if index >= 10:  # the first ten warm up
                latencies.append((arrived - started) * 1000)
        # uvicorn stops once its streams end: the app's watches end when it is stopping
        watcher.stop.set()
        app.state.api.stopping.set()
    watcher.thread.join(10)
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
    parser.add_argument("--runs", type=int, default=10, help="PyTorchJobs run in (c)")
    parser.add_argument("--jobs", type=int, default=1000, help="PyTorchJobs listed in (d)")
    parser.add_argument("--samples", type=int, default=200, help="lists timed in (d)")
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
            print(f"(c) {args.runs} PyTorchJobs run by the controllers, watched ...")
            c = bench_watch_controllers(server.url, server.db_url, "bench-runs", args.runs)
            print(f"(c) {args.writes} pod writes in the server's process, watched ...")
            inproc_url = os.environ.get("KETCH_DATABASE_URL") or f"sqlite:///{tmp}/inproc.db"
            c_inproc = bench_watch_in_process(inproc_url, "bench-inproc", args.writes)
            print(f"(d) storing {args.jobs} PyTorchJobs, then {args.samples} lists per case ...")
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
        print(f"{name:<66} {p50:>8.1f} {p99:>8.1f} {max(values):>8.1f}  {goal:<14} {verdict}")

    print()
    print(f"{'measure (ms)':<66} {'p50':>8} {'p99':>8} {'max':>8}  {'target':<14} met")
    print("-" * 115)
    row(f"(a) watch event after a write through the API ({args.client})", a, 50)
    row("(b) watch event after a write by another process (polled)", b, None)
    for label in ("pods", "pytorchjobs", "events"):
        row(
            f"(c) watch event after a controller's write: {label} (n={len(c.get(label, []))})",
            c.get(label) or [float("nan")],
            50,
        )
    row("(c) watch event after a PodStore write in the server's process", c_inproc, 50)
    row(f"(d) list {args.jobs} PyTorchJobs as a Table", table, 100)
    row(f"(d) list {args.jobs} PyTorchJobs as JSON", plain, None)
    print()
    print(
        f"(d) {args.jobs} PyTorchJobs stored in {stored:.1f} s; mean Table list "
        f"{statistics.fmean(table):.1f} ms"
    )
    print(CONTEXT)


if __name__ == "__main__":
    main()
