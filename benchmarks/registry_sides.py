"""The servers and the registering sides of ``benchmarks/registry_vs_mlflow.py``:
``ketch up`` and ``mlflow server`` (SQLite, MLflow in its own venv), and each side's
registrations of new model versions, through its client or as the REST calls that
client sends, timed one call at a time.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from tests.server.helpers import Server

REPO = Path(__file__).resolve().parents[1]
API = "/api/model_registry/v1"
MLFLOW_VENV = REPO / ".venv-mlflow"
MLFLOW_CLIENT = Path(__file__).resolve().parent / "registry_mlflow_client.py"


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
