"""``ketch serve`` as a process: signals, the ready line, and extra worker processes.

With ``--workers N`` the first process binds the ports (``SO_REUSEPORT``) and
starts N-1 more through the compute backend; each loads the models and listens
on the same ports, and the kernel spreads connections across them. Metrics and
repository load/unload calls are per worker.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ketch.core.backend import LocalBackend, ProcessSpec
from ketch.core.errors import BackendError
from ketch.serving.eventloop import new_event_loop
from ketch.serving.repository import ModelState, ServeOptions
from ketch.serving.secret import ENV as SECRET_ENV
from ketch.serving.secret import from_environment
from ketch.serving.server import ModelServer, ServerOptions, bind_socket

READY_LINE = "Ketch model server listening on"
WORKER_READY = "ketch-serving-worker-ready"


def serve(
    source: str,
    options: ServerOptions,
    *,
    workers: int = 1,
    echo: Callable[[str], None] = print,
    warn: Callable[[str], None] | None = None,
) -> None:
    """Serve until SIGINT or SIGTERM; print the ready line once every worker listens."""
    if workers > 1:
        # Workers are started (fork + exec) while gRPC threads run; gRPC's fork
        # handlers are not needed for that and only log noise.
        os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")
    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(_serve(source, options, workers, echo, warn))
    finally:
        loop.close()


async def _serve(
    source: str,
    options: ServerOptions,
    workers: int,
    echo: Callable[[str], None],
    warn: Callable[[str], None] | None,
) -> None:
    stop = _stop_event()
    sock = bind_socket(options.host, options.http_port)
    server = ModelServer(source, options, http_socket=sock)
    backend: LocalBackend | None = None
    try:
        await server.start()
        for entry in server.repository.entries.values():
            if entry.state is ModelState.UNAVAILABLE and warn is not None:
                warn(f"model {entry.name!r} failed to load: {entry.reason}")
        if workers > 1:
            backend = LocalBackend(max_warm_interpreters=0)
            root = server.repository.root
            child_options = dataclasses.replace(
                options, http_port=server.http_port, grpc_port=server.grpc_port
            )
            await _start_workers(backend, str(root or source), child_options, workers - 1)
        grpc = f" (grpc {server.grpc_address})" if server.grpc_address else ""
        echo(f"{READY_LINE} {server.url}{grpc}")
        waiter = asyncio.ensure_future(server.wait())
        stopper = asyncio.ensure_future(stop.wait())
        await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
    finally:
        if backend is not None:
            backend.shutdown(grace=5.0)
        await server.stop()


def _stop_event() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def _start_workers(
    backend: LocalBackend, source: str, options: ServerOptions, count: int
) -> None:
    config = json.dumps({"source": source, "options": _as_json(options)})
    handles = []
    for index in range(count):
        spec = ProcessSpec(
            name=f"model server worker {index + 1}",
            command=[sys.executable, "-m", "ketch.serving.workers", config],
            secret_env={SECRET_ENV: options.secret} if options.secret else {},
        )
        handles.append(backend.start(spec))
    deadline = time.monotonic() + 300
    waiting = list(handles)
    while waiting:
        for handle in list(waiting):
            if WORKER_READY in _read(handle.stdout_path):
                waiting.remove(handle)
            elif handle.poll() is not None:
                raise BackendError(
                    f"{handle.spec.name} exited with {handle.poll()} while starting; "
                    f"its log: {handle.stderr_path}\n{_read(handle.stderr_path)[-2000:]}"
                )
        if time.monotonic() > deadline:
            raise BackendError("model server workers did not become ready in 300 s")
        await asyncio.sleep(0.05)


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _as_json(options: ServerOptions) -> dict[str, Any]:
    """``options`` for a worker's command line: without the secret, which goes to the
    worker in its environment."""
    data = dataclasses.asdict(options)
    data.pop("secret")
    return data


def _from_json(data: dict[str, Any]) -> ServerOptions:
    model = ServeOptions(**data.pop("model"))
    return ServerOptions(**data, model=model, secret=from_environment())


async def _worker(source: str, options: ServerOptions) -> None:
    stop = _stop_event()
    server = ModelServer(source, options)
    try:
        await server.start()
        print(WORKER_READY, flush=True)
        waiter = asyncio.ensure_future(server.wait())
        stopper = asyncio.ensure_future(stop.wait())
        await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
    finally:
        await server.stop()


def main(argv: list[str]) -> None:
    config = json.loads(argv[0])
    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(_worker(config["source"], _from_json(config["options"])))
    finally:
        loop.close()


if __name__ == "__main__":
    main(sys.argv[1:])
