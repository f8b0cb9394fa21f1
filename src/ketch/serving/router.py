"""The per-service router: one stable URL in front of a component's replicas.

Every :class:`ComponentRouter` listens on its own port (an asyncio protocol
parsing HTTP/1.1 with httptools) on one shared event loop in a background thread of the API
server (:class:`RouterHost`). A request picks a revision by the traffic split,
then the replica with the fewest requests in flight, and is forwarded over a
pooled keep-alive HTTP/1.1 connection (asyncio streams, no client library).
If a replica cannot be reached an idempotent call (any GET, and inference:
``/infer``, ``:predict``, ``:explain``) is retried on another one. With no
replica running (scaled to zero, or still starting) the request waits for one.

The controller reads in-flight statistics with :meth:`ComponentRouter.stats`
and changes the replicas with :meth:`ComponentRouter.set_revisions` from its
own threads; both are thread-safe.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import random
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httptools

from ketch.serving.payload_logger import PayloadLogger
from ketch.serving.server import new_event_loop

log = logging.getLogger("ketch.serving.router")

_HOP = {
    b"connection",
    b"keep-alive",
    b"transfer-encoding",
    b"host",
    b"content-length",
    b"proxy-connection",
    b"upgrade",
    b"te",
}
ATTEMPTS = 4
WAIT_FOR_REPLICA = 180.0  # seconds a request waits for a replica to start
REVISION_HEADER = b"ketch-revision"
DEFAULT_TIMEOUT = 60.0


class UpstreamError(Exception):
    """The replica could not be reached or closed the connection: safe to retry."""


class UpstreamTimeout(Exception):
    """The replica took longer than the component's ``timeout`` (not retried)."""


@dataclass(frozen=True)
class ReplicaAddress:
    name: str
    host: str
    port: int


@dataclass(frozen=True)
class RevisionTraffic:
    name: str
    percent: int
    replicas: tuple[ReplicaAddress, ...]


class Upstream:
    """One replica, with a pool of idle keep-alive connections."""

    def __init__(self, address: ReplicaAddress, revision: str) -> None:
        self.address = address
        self.revision = revision
        self.inflight = 0
        self.healthy = True
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            reader, writer = await asyncio.open_connection(self.address.host, self.address.port)
        except OSError as exc:
            raise UpstreamError(str(exc)) from exc
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return reader, writer

    async def request(
        self, head: bytes, body: bytes, timeout: float
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """Send one request (``head`` ends with the blank line); the status, headers, body.

        ``UpstreamTimeout`` when no answer came in ``timeout`` seconds."""
        reused = bool(self._idle)
        conn = self._idle.pop() if reused else await self._connect()
        try:
            try:
                async with asyncio.timeout(timeout):
                    return await self._exchange(conn, head, body)
            except UpstreamError:
                if not reused:
                    raise
            # a pooled connection may have been closed by the replica meanwhile: once more
            conn = await self._connect()
            async with asyncio.timeout(timeout):
                return await self._exchange(conn, head, body)
        except TimeoutError:
            conn[1].close()
            raise UpstreamTimeout(f"no answer in {timeout:g}s") from None

    async def _exchange(
        self,
        conn: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        head: bytes,
        body: bytes,
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        reader, writer = conn
        try:
            writer.write(head + body if len(body) < 65536 else head)
            if len(body) >= 65536:
                writer.write(body)
            raw = await reader.readuntil(b"\r\n\r\n")
            lines = raw[:-4].split(b"\r\n")
            status = int(lines[0].split(b" ", 2)[1])
            headers: list[tuple[bytes, bytes]] = []
            length = -1
            chunked = False
            close = False
            for line in lines[1:]:
                key, _, value = line.partition(b":")
                key = key.strip().lower()
                value = value.strip()
                if key == b"content-length":
                    length = int(value)
                elif key == b"transfer-encoding":
                    chunked = b"chunked" in value.lower()
                elif key == b"connection":
                    close = value.lower() == b"close"
                if key not in _HOP:
                    headers.append((key, value))
            if chunked:
                data = await _read_chunked(reader)
            elif length >= 0:
                data = await reader.readexactly(length)
            else:
                data = await reader.read()
                close = True
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            writer.close()
            raise UpstreamError(f"{type(exc).__name__}: {exc}") from exc
        if close:
            writer.close()
        else:
            self._idle.append(conn)
        return status, headers, data

    def close(self) -> None:
        for _reader, writer in self._idle:
            writer.close()
        self._idle.clear()


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0].strip(), 16)
        if size == 0:
            await reader.readuntil(b"\r\n")
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)


@dataclass
class _Revision:
    name: str
    percent: int
    upstreams: list[Upstream] = field(default_factory=list)
    inflight: int = 0
    area: float = 0.0  # integral of in-flight requests over time since the last stats()
    since: float = field(default_factory=time.monotonic)
    window_start: float = field(default_factory=time.monotonic)
    pending: int = 0  # requests waiting for a replica
    last_request: float = 0.0
    requests: int = 0

    def account(self, now: float) -> None:
        self.area += self.inflight * (now - self.since)
        self.since = now


@dataclass(frozen=True)
class RevisionStats:
    name: str
    inflight: int
    average_inflight: float
    pending: int
    idle_for: float  # seconds since the last request ended or began (inf: never)
    requests: int


class ComponentRouter:
    """An ASGI app that forwards to a component's replicas (see the module doc)."""

    def __init__(
        self, name: str, *, logger: PayloadLogger | None = None, timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        self.name = name
        self.logger = logger
        self.timeout = timeout  # seconds a replica may take to answer (KServe's ``timeout``)
        self.port = 0
        self.loop: asyncio.AbstractEventLoop | None = None
        self._revisions: list[_Revision] = []
        self._weights: list[int] = []
        self._changed = asyncio.Event()
        self._lock = threading.Lock()
        self.retries = 0
        self.failures = 0

    # -- called from other threads ----------------------------------------------------

    def set_revisions(self, traffic: list[RevisionTraffic]) -> None:
        self._call(self._apply, traffic)

    def drop_replica(self, replica: str) -> None:
        self._call(self._drop, replica)

    def set_logger(self, logger: PayloadLogger | None) -> None:
        self._call(self._swap_logger, logger)

    def stats(self) -> dict[str, RevisionStats]:
        """Per revision: in flight now, the time-average since the last call, waiting.

        Computed on the router's loop (the counters are only touched there)."""
        loop = self.loop
        if loop is None or loop.is_closed():
            return self._stats()
        future: concurrent.futures.Future[dict[str, RevisionStats]] = concurrent.futures.Future()

        def compute() -> None:
            try:
                future.set_result(self._stats())
            except BaseException as exc:  # handed to the caller
                future.set_exception(exc)

        try:
            loop.call_soon_threadsafe(compute)
            return future.result(5.0)
        except (RuntimeError, concurrent.futures.TimeoutError):
            return {}

    def _stats(self) -> dict[str, RevisionStats]:
        result: dict[str, RevisionStats] = {}
        now = time.monotonic()
        with self._lock:
            for rev in self._revisions:
                rev.account(now)
                span = now - rev.window_start
                average = rev.area / span if span > 1e-3 else float(rev.inflight)
                rev.area = 0.0
                rev.window_start = now
                idle = now - rev.last_request if rev.last_request else float("inf")
                if rev.inflight or rev.pending:
                    idle = 0.0
                result[rev.name] = RevisionStats(
                    rev.name, rev.inflight, average, rev.pending, idle, rev.requests
                )
        return result

    def _call(self, fn: Callable[..., None], *args: Any) -> None:
        loop = self.loop
        if loop is None or loop.is_closed():
            fn(*args)
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(fn, *args)

    # -- on the loop -----------------------------------------------------------------

    def _apply(self, traffic: list[RevisionTraffic]) -> None:
        with self._lock:
            old = {rev.name: rev for rev in self._revisions}
            upstreams = {u.address.name: u for rev in self._revisions for u in rev.upstreams}
            revisions: list[_Revision] = []
            for item in traffic:
                rev = old.pop(item.name, None) or _Revision(item.name, item.percent)
                rev.percent = item.percent
                kept: list[Upstream] = []
                for address in item.replicas:
                    upstream = upstreams.pop(address.name, None)
                    if upstream is None or upstream.address != address:
                        if upstream is not None:
                            upstream.close()
                        upstream = Upstream(address, item.name)
                    upstream.healthy = True  # the controller still sees it running: try again
                    kept.append(upstream)
                rev.upstreams = kept
                revisions.append(rev)
            for upstream in upstreams.values():
                upstream.close()
            self._revisions = revisions
            self._weights = [rev.percent for rev in revisions]
        self._wake()

    def _drop(self, replica: str) -> None:
        with self._lock:
            for rev in self._revisions:
                for upstream in list(rev.upstreams):
                    if upstream.address.name == replica:
                        rev.upstreams.remove(upstream)
                        upstream.close()

    def _swap_logger(self, logger: PayloadLogger | None) -> None:
        old, self.logger = self.logger, logger
        if logger is not None:
            logger.start()
        if old is not None and old is not logger:
            asyncio.ensure_future(old.stop())

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    # -- ASGI ------------------------------------------------------------------------

    async def handle(
        self, method: str, path: str, request_headers: list[tuple[bytes, bytes]], body: bytes
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """Forward one request; the status, headers and body to answer with."""
        request_id = ""
        content_type = ""
        lines = [f"{method} {path} HTTP/1.1\r\n".encode("latin-1")]
        for key, value in request_headers:
            if key in _HOP:
                continue
            if key == b"x-request-id":
                request_id = value.decode("latin-1")
            elif key == b"content-type":
                content_type = value.decode("latin-1")
            lines.append(key + b": " + value + b"\r\n")
        logger = self.logger
        if logger is not None and not request_id:
            request_id = str(uuid.uuid4())
            lines.append(b"x-request-id: " + request_id.encode() + b"\r\n")
        lines.append(b"host: replica\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n")
        head = b"".join(lines)
        retry = method in ("GET", "HEAD") or path.endswith(("/infer", ":predict", ":explain"))
        rev = self._pick_revision()
        if logger is not None and rev is not None:
            logger.request(request_id, body, content_type, rev.name)
        try:
            status, headers, data, revision = await self._forward(rev, head, body, retry)
        except UpstreamError as exc:
            self.failures += 1
            return 502, [], f'{{"error": "no replica answered: {exc}"}}'.encode()
        except UpstreamTimeout as exc:
            self.failures += 1
            return 504, [], f'{{"error": "the replica gave no answer: {exc}"}}'.encode()
        except TimeoutError:
            self.failures += 1
            return 503, [], b'{"error": "no replica became ready in time"}'
        headers.append((REVISION_HEADER, revision.encode()))
        if logger is not None:
            rtype = next((v for k, v in headers if k == b"content-type"), b"application/json")
            logger.response(request_id, data, rtype.decode("latin-1"), revision)
        return status, headers, data

    def _pick_revision(self) -> _Revision | None:
        revisions = self._revisions
        if not revisions:
            return None
        if len(revisions) == 1:
            return revisions[0]
        weights = self._weights
        if not any(weights):
            return revisions[0]
        return random.choices(revisions, weights)[0]

    async def _forward(
        self, rev: _Revision | None, head: bytes, body: bytes, retry: bool
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes, str]:
        tried: set[str] = set()
        attempts = 0
        deadline = time.monotonic() + WAIT_FOR_REPLICA
        while True:
            if rev is None or rev not in self._revisions:
                rev = self._pick_revision()
            upstream = self._choose(rev, tried) if rev is not None else None
            if upstream is None or rev is None:
                upstream, rev = await self._wait_for_replica(rev, tried, deadline)
            attempts += 1
            upstream.inflight += 1
            rev.inflight += 1
            rev.account(time.monotonic())
            rev.last_request = time.monotonic()
            rev.requests += 1
            try:
                status, headers, data = await upstream.request(head, body, self.timeout)
                return status, headers, data, rev.name
            except UpstreamError:
                upstream.healthy = False
                tried.add(upstream.address.name)
                if not retry or attempts >= ATTEMPTS:
                    raise
                self.retries += 1
            finally:
                upstream.inflight -= 1
                rev.account(time.monotonic())
                rev.inflight -= 1
                rev.last_request = time.monotonic()

    def _choose(self, rev: _Revision, tried: set[str]) -> Upstream | None:
        best: Upstream | None = None
        for upstream in rev.upstreams:
            if not upstream.healthy or upstream.address.name in tried:
                continue
            if best is None or upstream.inflight < best.inflight:
                best = upstream
        return best

    async def _wait_for_replica(
        self, rev: _Revision | None, tried: set[str], deadline: float
    ) -> tuple[Upstream, _Revision]:
        """Another revision with a replica, or wait (counted as pending) for one to start."""
        for other in self._revisions:
            if other is not rev and other.percent > 0:
                found = self._choose(other, tried)
                if found is not None:
                    return found, other
        waiting = rev
        if waiting is not None:
            waiting.pending += 1
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError
                changed = self._changed
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), min(remaining, 0.5))
                current = rev if rev is not None and rev in self._revisions else None
                if current is None:
                    current = self._pick_revision()
                if current is None:
                    continue
                if current is not waiting:
                    if waiting is not None:
                        waiting.pending -= 1
                    waiting = current
                    waiting.pending += 1
                # replicas replaced after a failure are new names: tried ones stay excluded
                found = self._choose(current, tried)
                if found is not None:
                    return found, current
        finally:
            if waiting is not None:
                waiting.pending -= 1


_REASONS = {
    200: b"OK",
    400: b"Bad Request",
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

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.connections.add(self)
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


class RouterHost:
    """One event loop thread serving every router of the process, each on its own port."""

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
        router.loop = loop
        router._changed = asyncio.Event()
        if router.logger is not None:
            router.logger.start()
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
        if router.logger is not None:
            await router.logger.stop()
        for rev in router._revisions:
            for upstream in rev.upstreams:
                upstream.close()


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
