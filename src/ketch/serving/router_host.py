"""Where routers listen: one event-loop thread (:class:`RouterHost`) serving every
router of its owner, each on its own 127.0.0.1 port, and the HTTP/1.1 front that
reads clients' requests there (an asyncio protocol parsing with httptools) and
answers them in order per connection.

The InferenceService controller owns one host: it starts a router per component
and stops them all, and the host's thread, when it stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from collections import deque
from typing import Any

import httptools

from ketch.serving.eventloop import new_event_loop
from ketch.serving.gate import Answer, strip_credentials
from ketch.serving.router import ComponentRouter

log = logging.getLogger("ketch.serving.router")

_REASONS = {
    200: b"OK",
    400: b"Bad Request",
    401: b"Unauthorized",
    403: b"Forbidden",
    404: b"Not Found",
    500: b"Internal Server Error",
    502: b"Bad Gateway",
    503: b"Service Unavailable",
    504: b"Gateway Timeout",
}


def _response(status: int, headers: list[tuple[bytes, bytes]], body: bytes, close: bool) -> bytes:
    reason = _REASONS.get(status, b"-")
    parts = [b"HTTP/1.1 %d %s\r\n" % (status, reason)]
    has_type = False
    for key, value in headers:
        if key == b"content-type":
            has_type = True
        parts.append(key + b": " + value + b"\r\n")
    if not has_type:
        parts.append(b"content-type: application/json\r\n")
    if close:
        parts.append(b"connection: close\r\n")
    parts.append(b"content-length: %d\r\n\r\n" % len(body))
    parts.append(body)
    return b"".join(parts)


class _Front(asyncio.Protocol):
    """HTTP/1.1 from clients (httptools parser), answered in order per connection."""

    def __init__(self, router: ComponentRouter, connections: set[_Front]) -> None:
        self.router = router
        self.connections = connections
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.queue: deque[tuple[str, str, list[tuple[bytes, bytes]], bytes, bool]] = deque()
        self.task: asyncio.Task[None] | None = None
        self.client: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.connections.add(self)
        peer = transport.get_extra_info("peername")
        self.client = str(peer[0]) if isinstance(peer, tuple) and peer else None
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        self.connections.discard(self)
        self.transport = None
        if self.task is not None:
            self.task.cancel()

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.write(_response(400, [], b'{"error": "bad request"}', True))
                self.transport.close()

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []
        self.body = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        for key, value in self.headers:
            if key == b"expect" and value.lower() == b"100-continue" and self.transport:
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        method = self.parser.get_method().decode("latin-1")
        keep_alive = self.parser.should_keep_alive()
        self.headers = [(k, v) for k, v in self.headers if k != b"expect"]
        request = (
            method,
            self.url.decode("latin-1"),
            self.headers,
            b"".join(self.body),
            keep_alive,
        )
        self.queue.append(request)
        if self.task is None:
            self.task = asyncio.ensure_future(self._serve())

    async def _serve(self) -> None:
        try:
            while self.queue:
                method, path, headers, body, keep_alive = self.queue.popleft()
                try:
                    refused = await self._refuse(headers) if self.router.gate else None
                    if refused is not None:
                        status, out_headers, data = refused
                    else:
                        status, out_headers, data = await self.router.handle(
                            method, path, headers, body
                        )
                except Exception as exc:  # never leave a client without an answer
                    log.exception("router %s: request failed", self.router.name)
                    status, out_headers, data = 502, [], f'{{"error": "{exc!r}"}}'.encode()
                transport = self.transport
                if transport is None:
                    return
                transport.write(_response(status, out_headers, data, not keep_alive))
                if not keep_alive:
                    transport.close()
                    return
        finally:
            self.task = None

    async def _refuse(self, headers: list[tuple[bytes, bytes]]) -> Answer | None:
        """The answer to a caller who may not call the service (401, 403); ``None``
        when they may: the credentials are then taken out of ``headers``."""
        router, gate = self.router, self.router.gate
        if gate is None or not await gate.enabled():
            return None
        if not router.public:
            refused = await gate.refuse(router.namespace, router.service, headers, self.client)
            if refused is not None:
                return refused
        headers[:] = strip_credentials(headers)
        return None


class RouterHost:
    """One event loop thread serving every router started on it, each on its own port."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._servers: dict[int, tuple[asyncio.Server, set[_Front]]] = {}
        self._lock = threading.Lock()

    def _ensure(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._thread is None or not self._thread.is_alive():
                loop = new_event_loop()
                ready = threading.Event()

                def run() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                self._thread = threading.Thread(target=run, name="ketch-isvc-router", daemon=True)
                self._thread.start()
                ready.wait(10)
                self._loop = loop
            return self._loop

    def _submit(self, coro: Any, timeout: float = 30.0) -> Any:
        loop = self._ensure()
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout)

    def start(self, router: ComponentRouter, port: int = 0) -> int:
        """Listen for ``router`` on 127.0.0.1:``port`` (0, or taken: a free one)."""
        return int(self._submit(self._start(router, port)))

    async def _start(self, router: ComponentRouter, port: int) -> int:
        loop = asyncio.get_running_loop()
        router.attach(loop)
        sock = _bind(port)
        connections: set[_Front] = set()
        server = await loop.create_server(
            lambda: _Front(router, connections), sock=sock, backlog=2048
        )
        router.port = sock.getsockname()[1]
        self._servers[router.port] = (server, connections)
        return router.port

    def stop(self, router: ComponentRouter) -> None:
        if self._loop is None or router.port not in self._servers:
            return
        with contextlib.suppress(Exception):
            self._submit(self._stop(router), timeout=15.0)

    def close(self) -> None:
        """Stop the loop thread (after :meth:`stop` of every router)."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        if not thread.is_alive():
            loop.close()

    async def _stop(self, router: ComponentRouter) -> None:
        server, connections = self._servers.pop(router.port)
        server.close()
        for connection in list(connections):
            if connection.transport is not None:
                connection.transport.close()
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(server.wait_closed(), 5)
        await router.detach()


def _bind(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError:
        if port == 0:
            sock.close()
            raise
        sock.bind(("127.0.0.1", 0))
    return sock
