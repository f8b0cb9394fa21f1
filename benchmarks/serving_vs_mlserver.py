"""``ketch serve`` against MLServer 1.7.1 on an iris LogisticRegression, in one script run.

Trains the model, serves it with ``ketch serve`` and with MLServer (installed into
its own virtual environment under ``benchmarks/.cache``, which git ignores), and
drives both with the same load generator: ``wrk`` with a Lua script POSTing a
single-row V2 infer request (installed with apt-get when missing and possible;
otherwise a Python asyncio HTTP/1.1 load generator, and the table says so).

Scenarios: no batching at 8 connections, then adaptive batching on for both (same
max batch size and max wait) at 64 connections. Both servers run with their
default worker settings (MLServer: ``parallel_workers`` 1, its default). The
table shows req/s, p50 and p99 latency for each and the Ketch / MLServer ratios::

    python benchmarks/serving_vs_mlserver.py [--duration 10] [--rounds 1] [--only ketch|mlserver]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from peer_venv import log, peer_python  # noqa: E402

MLSERVER_PACKAGES = ["mlserver==1.7.1", "mlserver-sklearn==1.7.1", "uvloop<0.22"]
KETCH = Path(sys.executable).parent / "ketch"
ROW = [5.1, 3.5, 1.4, 0.2]
BODY = json.dumps(
    {"inputs": [{"name": "input-0", "datatype": "FP64", "shape": [1, 4], "data": ROW}]}
)
MAX_BATCH_SIZE = 32
MAX_BATCH_MS = 5.0


@dataclass
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


@dataclass
class Scenario:
    title: str
    connections: int
    batching: bool


SCENARIOS = [
    Scenario("no batching, 8 connections", 8, False),
    Scenario(f"batching (max {MAX_BATCH_SIZE}, {MAX_BATCH_MS:g} ms), 64 connections", 64, True),
]


# -- setup ------------------------------------------------------------------------------


def train(folder: Path) -> None:
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=1000).fit(X, y)
    for server in ("ketch", "mlserver"):
        target = folder / server / "iris"
        target.mkdir(parents=True, exist_ok=True)
        joblib.dump(model, target / "model.joblib")


def mlserver_python() -> Path:
    """The MLServer venv's interpreter, creating the venv on first use."""
    import sklearn

    # The same scikit-learn as here, so both servers unpickle the same model.
    return peer_python(
        "mlserver-venv", [*MLSERVER_PACKAGES, f"scikit-learn=={sklearn.__version__}"]
    )


def find_wrk() -> str | None:
    wrk = shutil.which("wrk")
    if wrk or os.geteuid() != 0 or not shutil.which("apt-get"):
        return wrk
    log("wrk is missing; installing it with apt-get ...")
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    subprocess.run(["apt-get", "update"], check=False, **quiet)  # type: ignore[call-overload]
    subprocess.run(["apt-get", "install", "-y", "wrk"], check=False, **quiet)  # type: ignore[call-overload]
    return shutil.which("wrk")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- servers ----------------------------------------------------------------------------


@contextlib.contextmanager
def running(command: list[str], url: str, log_file: Path, env: dict[str, str]) -> Iterator[str]:
    with log_file.open("w") as output:
        process = subprocess.Popen(
            command,
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        try:
            wait_ready(url, process, log_file)
            yield url
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(20)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()


def wait_ready(url: str, process: subprocess.Popen[bytes], log_file: Path) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}; see {log_file}")
        try:
            with urllib.request.urlopen(f"{url}/v2/models/iris/ready", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"server at {url} not ready after 180 s; see {log_file}")


def ketch_server(
    folder: Path, scenario: Scenario, logs: Path
) -> contextlib.AbstractContextManager[str]:
    port = free_port()
    command = [str(KETCH), "serve", str(folder / "ketch" / "iris"), "--port", str(port)]
    command += ["--grpc-port", "-1"]
    if scenario.batching:
        command += ["--max-batch-size", str(MAX_BATCH_SIZE), "--max-latency-ms", str(MAX_BATCH_MS)]
    return running(command, f"http://127.0.0.1:{port}", logs / "ketch.log", dict(os.environ))


def mlserver_server(
    folder: Path, scenario: Scenario, logs: Path, python: Path
) -> contextlib.AbstractContextManager[str]:
    port = free_port()
    root = folder / "mlserver"
    settings = {
        "host": "127.0.0.1",
        "http_port": port,
        "grpc_port": free_port(),
        "metrics_port": free_port(),
        "debug": False,
    }
    (root / "settings.json").write_text(json.dumps(settings))
    model: dict[str, object] = {
        "name": "iris",
        "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": "./model.joblib"},
    }
    if scenario.batching:
        model["max_batch_size"] = MAX_BATCH_SIZE
        model["max_batch_time"] = MAX_BATCH_MS / 1000
    (root / "iris" / "model-settings.json").write_text(json.dumps(model))
    env = {**os.environ, "PATH": f"{python.parent}:{os.environ.get('PATH', '')}"}
    env.pop("VIRTUAL_ENV", None)
    command = [str(python.parent / "mlserver"), "start", str(root)]
    return running(command, f"http://127.0.0.1:{port}", logs / "mlserver.log", env)


def check_answer(url: str, headers: dict[str, str] | None = None) -> None:
    request = urllib.request.Request(
        f"{url}/v2/models/iris/infer", data=BODY.encode(), method="POST"
    )
    request.add_header("Content-Type", "application/json")
    for key, value in (headers or {}).items():
        request.add_header(key, value)
    with urllib.request.urlopen(request, timeout=10) as response:
        doc = json.loads(response.read())
    data = doc["outputs"][0]["data"]
    if data != [0]:
        raise RuntimeError(f"{url} answered {doc}, expected class 0")


# -- load generators -------------------------------------------------------------------


def run_wrk(
    wrk: str,
    url: str,
    connections: int,
    duration: float,
    scratch: Path,
    headers: dict[str, str] | None = None,
) -> Result:
    """Single-row V2 infers at ``url`` with wrk; ``headers`` go with each request."""
    script = scratch / "post.lua"
    extra = "".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in (headers or {}).items())
    script.write_text(
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f"{extra}wrk.body = '{BODY}'\n"
    )
    command = [wrk, "-t2", f"-c{connections}", f"-d{duration:g}s", "--latency", "-s", str(script)]
    output = subprocess.run(
        [*command, f"{url}/v2/models/iris/infer"], capture_output=True, text=True, check=True
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    errors = 0
    if match := re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output):
        errors += int(match.group(1))
    if match := re.search(r"Socket errors:.*timeout (\d+)", output):
        errors += int(match.group(1))
    return Result(rps, _wrk_latency(output, "50%"), _wrk_latency(output, "99%"), errors)


def _wrk_latency(output: str, percentile: str) -> float:
    match = re.search(rf"^\s+{re.escape(percentile)}\s+([\d.]+)(us|ms|s)\s*$", output, re.M)
    if match is None:
        raise RuntimeError(f"no {percentile} latency in wrk output:\n{output}")
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[match.group(2)]
    return float(match.group(1)) * scale


def run_python(
    url: str, connections: int, duration: float, headers: dict[str, str] | None = None
) -> Result:
    """An asyncio HTTP/1.1 keep-alive load generator (when wrk cannot be had);
    ``headers`` go with each request."""
    host, port = url.removeprefix("http://").split(":")
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    request = (
        f"POST /v2/models/iris/infer HTTP/1.1\r\nHost: {host}\r\n{extra}"
        f"Content-Type: application/json\r\nContent-Length: {len(BODY)}\r\n\r\n{BODY}"
    ).encode()
    latencies: list[float] = []
    errors = 0

    async def connection(stop: float) -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            while time.perf_counter() < stop:
                started = time.perf_counter()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))  # type: ignore[union-attr]
                await reader.readexactly(length)
                latencies.append(time.perf_counter() - started)
                if not head.startswith(b"HTTP/1.1 200"):
                    errors += 1
        finally:
            writer.close()

    async def main() -> float:
        stop = time.perf_counter() + duration
        started = time.perf_counter()
        await asyncio.gather(*(connection(stop) for _ in range(connections)))
        return time.perf_counter() - started

    elapsed = asyncio.run(main())
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return Result(len(latencies) / elapsed, statistics.median(latencies) * 1000, p99 * 1000, errors)


# -- main ---------------------------------------------------------------------------------


def median_result(values: list[Result]) -> Result:
    return Result(
        statistics.median(r.rps for r in values),
        statistics.median(r.p50_ms for r in values),
        statistics.median(r.p99_ms for r in values),
        sum(r.errors for r in values),
    )


def measure(
    url: str,
    scenario: Scenario,
    args: argparse.Namespace,
    wrk: str | None,
    scratch: Path,
    headers: dict[str, str] | None = None,
) -> Result:
    """A warm-up, then the measured run; ``headers`` go with each request."""
    check_answer(url, headers)
    warmup = min(2.0, args.duration / 2)
    if wrk:
        run_wrk(wrk, url, scenario.connections, warmup, scratch, headers)
        return run_wrk(wrk, url, scenario.connections, args.duration, scratch, headers)
    run_python(url, scenario.connections, warmup, headers)
    return run_python(url, scenario.connections, args.duration, headers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement")
    parser.add_argument("--only", choices=["ketch", "mlserver"])
    parser.add_argument(
        "--rounds", type=int, default=1, help="alternate the servers this many times; medians"
    )
    args = parser.parse_args()

    wrk = find_wrk()
    generator = "wrk (2 threads)" if wrk else "Python asyncio load generator (wrk unavailable)"
    python = mlserver_python() if args.only != "ketch" else None
    runs: dict[tuple[str, str], list[Result]] = {}
    with tempfile.TemporaryDirectory(prefix="serving-bench-") as tmp:
        scratch = Path(tmp)
        train(scratch)
        for scenario in [s for _ in range(args.rounds) for s in SCENARIOS]:
            servers = []
            if args.only != "mlserver":
                servers.append(("Ketch", lambda s=scenario: ketch_server(scratch, s, scratch)))
            if python is not None:
                servers.append(
                    (
                        "MLServer 1.7.1",
                        lambda s=scenario: mlserver_server(scratch, s, scratch, python),
                    )
                )
            for name, start in servers:
                log(f"{scenario.title}: {name} ...")
                with start() as url:
                    result = measure(url, scenario, args, wrk, scratch)
                    runs.setdefault((scenario.title, name), []).append(result)
    results = {key: median_result(values) for key, values in runs.items()}

    print(f"\nLoad generator: {generator}; {args.duration:g} s per run after a warm-up;")
    print(f"{args.rounds} round(s), servers alternating; medians.")
    print(f"single-row V2 infer (JSON) on an iris LogisticRegression; {os.cpu_count()} CPUs.\n")
    header = (
        f"{'scenario':<44} {'server':<15} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}"
    )
    print(header)
    print("-" * len(header))
    for (title, name), r in results.items():
        print(
            f"{title:<44} {name:<15} {r.rps:>9.0f} {r.p50_ms:>8.2f} {r.p99_ms:>8.2f} {r.errors:>7}"
        )
    print()
    for scenario in SCENARIOS:
        ketch = results.get((scenario.title, "Ketch"))
        peer = results.get((scenario.title, "MLServer 1.7.1"))
        if ketch and peer:
            print(
                f"{scenario.title}: Ketch/MLServer req/s = {ketch.rps / peer.rps:.2f}x, "
                f"p99 = {ketch.p99_ms:.2f} ms vs {peer.p99_ms:.2f} ms"
            )


if __name__ == "__main__":
    main()
