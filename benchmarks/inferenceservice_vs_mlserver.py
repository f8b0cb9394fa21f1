"""An InferenceService (router in the path) against MLServer 1.7.1, in one script run.

Starts ``ketch up`` in a temporary KETCH_HOME, applies an ``InferenceService``
serving an iris LogisticRegression (``sklearn.storageUri: file://...``), and
drives its ``status.url`` (the service's router, in front of one ``ketch
serve`` replica) with ``wrk`` at 8 connections, single-row V2 infer. The same
load then goes straight to the replica, with the secret its router sends (to show
the router's cost), and to MLServer with its defaults (set up as
``benchmarks/serving_vs_mlserver.py`` does). Prints req/s, p50/p99 and the ratios::

    python benchmarks/inferenceservice_vs_mlserver.py [--duration 10] [--rounds 1]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from serving_vs_mlserver import (  # noqa: E402
    KETCH,
    Result,
    Scenario,
    find_wrk,
    log,
    measure,
    median_result,
    mlserver_python,
    mlserver_server,
    train,
)

SCENARIO = Scenario("no batching, 8 connections", 8, False)
READY_LINE = "Ketch API server listening on "


@contextlib.contextmanager
def ketch_up(home: Path) -> Iterator[str]:
    """A ``ketch up --port 0`` in ``home``; its URL."""
    home.mkdir(parents=True, exist_ok=True)
    log_file = home / "server.log"
    env = {**os.environ, "KETCH_HOME": str(home)}
    env.pop("KETCH_DATABASE_URL", None)
    with log_file.open("w") as output:
        process = subprocess.Popen(
            [str(KETCH), "up", "--port", "0", "--home", str(home), "--log-level", "warning"],
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 120
        while True:
            text = log_file.read_text(errors="replace")
            if READY_LINE in text:
                yield text.split(READY_LINE, 1)[1].split()[0]
                return
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ketch up did not start; see {log_file}:\n{text[-2000:]}")
            time.sleep(0.1)
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(30)


def inference_service(api: str, model: Path) -> tuple[str, str, dict[str, str]]:
    """Apply the iris InferenceService; once Ready, its status.url, the replica's own
    URL and the headers its router sends it (:func:`router_headers`)."""
    manifest = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "iris"},
        "spec": {"predictor": {"sklearn": {"storageUri": f"file://{model}"}}},
    }
    path = "/apis/serving.kserve.io/v1beta1/namespaces/default/inferenceservices/iris"
    with httpx.Client(base_url=api, timeout=30) as client:
        client.put(path, json=manifest).raise_for_status()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            status = client.get(path).json().get("status", {})
            ready = [c for c in status.get("conditions", []) if c["type"] == "Ready"]
            if ready and ready[0]["status"] == "True":
                replica = status["ketch"]["replicas"][0]
                return status["url"], replica["url"], router_headers(int(replica["pid"]))
            time.sleep(0.2)
    raise RuntimeError(f"the InferenceService did not become ready: {status}")


def router_headers(pid: int) -> dict[str, str]:
    """What a replica's router sends it besides the request: the replica's secret, read
    from its environment (as only its OS user can; none from a Ketch without replica
    secrets), so the replica can be measured without its router."""
    for entry in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
        key, _, value = entry.partition(b"=")
        if key == b"KETCH_REPLICA_SECRET":
            return {"ketch-replica-secret": value.decode()}
    return {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=1, help="repeat; medians")
    parser.add_argument("--skip-mlserver", action="store_true")
    args = parser.parse_args()

    wrk = find_wrk()
    generator = "wrk (2 threads)" if wrk else "Python asyncio load generator (wrk unavailable)"
    python = None if args.skip_mlserver else mlserver_python()
    runs: dict[str, list[Result]] = {}
    with tempfile.TemporaryDirectory(prefix="isvc-bench-") as tmp:
        scratch = Path(tmp)
        train(scratch)
        for _ in range(args.rounds):
            log("InferenceService (router -> ketch serve) ...")
            with ketch_up(scratch / "home") as api:
                url, replica, headers = inference_service(api, scratch / "ketch" / "iris")
                runs.setdefault("InferenceService", []).append(
                    measure(url, SCENARIO, args, wrk, scratch)
                )
                log("the replica directly ...")
                runs.setdefault("replica, no router", []).append(
                    measure(replica, SCENARIO, args, wrk, scratch, headers)
                )
            if python is not None:
                log("MLServer 1.7.1 ...")
                with mlserver_server(scratch, SCENARIO, scratch, python) as url:
                    runs.setdefault("MLServer 1.7.1", []).append(
                        measure(url, SCENARIO, args, wrk, scratch)
                    )
    results = {name: median_result(values) for name, values in runs.items()}
    print(f"\nLoad generator: {generator}; {args.duration:g} s per run after a warm-up;")
    print(f"{args.rounds} round(s); medians; {SCENARIO.title}.")
    print(f"single-row V2 infer (JSON) on an iris LogisticRegression; {os.cpu_count()} CPUs.\n")
    header = f"{'server':<26} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}"
    print(header)
    print("-" * len(header))
    for name, r in results.items():
        print(f"{name:<26} {r.rps:>9.0f} {r.p50_ms:>8.2f} {r.p99_ms:>8.2f} {r.errors:>7}")
    isvc = results.get("InferenceService")
    peer = results.get("MLServer 1.7.1")
    direct = results.get("replica, no router")
    print()
    if isvc and direct:
        print(f"router cost: InferenceService / replica req/s = {isvc.rps / direct.rps:.2f}x")
    if isvc and peer:
        print(
            f"InferenceService/MLServer req/s = {isvc.rps / peer.rps:.2f}x, "
            f"p99 = {isvc.p99_ms:.2f} ms vs {peer.p99_ms:.2f} ms"
        )


if __name__ == "__main__":
    main()
