"""Runs the model server: uvicorn (uvloop, httptools) for REST and grpc.aio, in one loop.

:class:`ModelServer` serves a :class:`ModelRepository` on ``options.host`` (127.0.0.1
unless told: ``ketch serve`` takes its node's address on a cluster). The REST
socket is bound here with ``SO_REUSEPORT`` (gRPC sets it itself), so several
worker processes can share the ports: see :mod:`ketch.serving.workers`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import uvicorn

from ketch.serving.app import ServingApp
from ketch.serving.dataplane import DataPlane
from ketch.serving.eventloop import new_event_loop
from ketch.serving.metrics import Metrics
from ketch.serving.model import Model
from ketch.serving.repository import ModelRepository, ServeOptions

log = logging.getLogger("ketch.serving")

GRPC_MAX_MESSAGE = 256 * 1024 * 1024


@dataclass
class ServerOptions:
    host: str = "127.0.0.1"
    http_port: int = 8080
    grpc_port: int | None = 8081  # None: no gRPC
    model: ServeOptions = field(default_factory=ServeOptions)
    threads: int = 0  # 0: min(4, CPUs)
    #: a replica's secret: every request must carry it (:mod:`ketch.serving.secret`)
    secret: str | None = field(default=None, repr=False)


def bind_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound with SO_REUSEPORT (so workers can share the port)."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if hasattr(socket, "SO_REUSEPORT"):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


class _Uvicorn(uvicorn.Server):
    """uvicorn without its own signal handling: the model server owns shutdown."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class ModelServer:
    def __init__(
        self,
        source: str | None = None,
        options: ServerOptions | None = None,
        *,
        models: list[Model] | None = None,
        http_socket: socket.socket | None = None,
    ) -> None:
        self.options = options or ServerOptions()
        threads = self.options.threads or min(4, os.cpu_count() or 1)
        self.executor = ThreadPoolExecutor(threads, thread_name_prefix="ketch-model")
        self.metrics = Metrics()
        self.repository = ModelRepository(
            source, self.options.model, executor=self.executor, metrics=self.metrics
        )
        for model in models or []:
            self.repository.add_model(model)
        self.dataplane = DataPlane(self.repository)
        self.app = ServingApp(self.dataplane, self.options.secret)
        self._socket = http_socket
        self.http_port = 0
        self.grpc_port: int | None = None
        self._uvicorn: _Uvicorn | None = None
        self._grpc: object | None = None
        self._serve_task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.options.host}:{self.http_port}"

    @property
    def grpc_address(self) -> str | None:
        return f"{self.options.host}:{self.grpc_port}" if self.grpc_port else None

    async def start(self) -> None:
        """Load the models, then listen (REST and gRPC). Returns once serving."""
        await self.repository.load_all()
        if self._socket is None:
            self._socket = bind_socket(self.options.host, self.options.http_port)
        self.http_port = self._socket.getsockname()[1]
        if self.options.grpc_port is not None:
            await self._start_grpc(self.options.grpc_port)
        config = uvicorn.Config(
            self.app,
            http="httptools",
            loop="none",
            lifespan="off",
            access_log=False,
            log_level="warning",
            server_header=False,
            date_header=False,
            backlog=2048,
        )
        self._uvicorn = _Uvicorn(config)
        self._serve_task = asyncio.get_running_loop().create_task(
            self._uvicorn.serve(sockets=[self._socket])
        )
        while not self._uvicorn.started:
            if self._serve_task.done():
                self._serve_task.result()
                raise RuntimeError("the HTTP server stopped while starting")
            await asyncio.sleep(0.005)

    async def _start_grpc(self, port: int) -> None:
        import grpc

        from ketch.serving.grpc_service import rpc_handler, secret_interceptor

        secret = self.options.secret
        server = grpc.aio.server(
            interceptors=[secret_interceptor(secret)] if secret else None,
            options=[
                ("grpc.max_receive_message_length", GRPC_MAX_MESSAGE),
                ("grpc.max_send_message_length", GRPC_MAX_MESSAGE),
                ("grpc.so_reuseport", 1),
            ],
        )
        server.add_generic_rpc_handlers((rpc_handler(self.dataplane),))
        self.grpc_port = server.add_insecure_port(f"{self.options.host}:{port}")
        if not self.grpc_port:
            raise OSError(f"cannot bind gRPC on {self.options.host}:{port}")
        await server.start()
        self._grpc = server

    async def wait(self) -> None:
        if self._serve_task is not None:
            await self._serve_task

    async def stop(self, grace: float = 2.0) -> None:
        if self._uvicorn is not None:
            self._uvicorn.should_exit = True
        if self._grpc is not None:
            await self._grpc.stop(grace)  # type: ignore[attr-defined]
            self._grpc = None
        if self._serve_task is not None:
            with contextlib.suppress(Exception):
                await self._serve_task
            self._serve_task = None
        await self.repository.close()
        self.executor.shutdown(wait=False, cancel_futures=True)
        if self._socket is not None:
            self._socket.close()


class ServerThread:
    """A :class:`ModelServer` on its own event loop in a background thread.

    For tests and for embedding: ``with ServerThread(server) as s: ... s.server.url``.
    """

    def __init__(self, server: ModelServer) -> None:
        self.server = server
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="ketch-model-server", daemon=True)

    def start(self, timeout: float = 120.0) -> ServerThread:
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("the model server did not start in time")
        if self._error is not None:
            raise self._error
        return self

    def _run(self) -> None:
        loop = self._loop = new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self.server.start())
        except BaseException as exc:  # noqa: BLE001 - the server thread's top level: start() raises it in the starting thread
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_until_complete(self.server.wait())
        finally:
            loop.run_until_complete(self.server.stop())
            loop.close()

    def stop(self, timeout: float = 30.0) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed() and self._thread.is_alive():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_request_exit, self.server)
        self._thread.join(timeout)

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _request_exit(server: ModelServer) -> None:
    if server._uvicorn is not None:
        server._uvicorn.should_exit = True
