"""The per-component router: how a request to a component's one stable URL picks a
replica.

A request picks a revision by the traffic split, then the replica with the fewest
requests in flight (:mod:`ketch.serving.upstream` forwards it over a pooled
keep-alive connection). If a replica cannot be reached an idempotent call (any
GET, and inference: ``/infer``, ``:predict``, ``:explain``) is retried on another
one. With no replica running (scaled to zero, or still starting) the request waits
for one. Each router listens on its own port through a
:class:`~ketch.serving.router_host.RouterHost`, which runs it on its event loop.

The controller reads in-flight statistics with :meth:`ComponentRouter.stats`
and changes the replicas with :meth:`ComponentRouter.set_revisions` from its
own threads; both are thread-safe.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ketch.serving.gate import EndpointGate
from ketch.serving.payload_logger import PayloadLogger
from ketch.serving.upstream import (
    HOP_HEADERS,
    ReplicaAddress,
    Upstream,
    UpstreamError,
    UpstreamTimeout,
)

ATTEMPTS = 4
WAIT_FOR_REPLICA = 180.0  # seconds a request waits for a replica to start
REVISION_HEADER = b"ketch-revision"
DEFAULT_TIMEOUT = 60.0


@dataclass(frozen=True)
class RevisionTraffic:
    name: str
    percent: int
    replicas: tuple[ReplicaAddress, ...]


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
    """Forwards a component's requests to its replicas (see the module doc)."""

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
        # who may call it (set by the controller): the gate of the controller's access
        # (``None``: anyone), the service's namespace and name, and whether it is public
        self.gate: EndpointGate | None = None
        self.namespace = ""
        self.service = ""
        self.public = False

    # -- on the host's loop: start and end listening ----------------------------------

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Run on ``loop`` (called there by the host as it starts listening)."""
        self.loop = loop
        self._changed = asyncio.Event()
        if self.logger is not None:
            self.logger.start()

    async def detach(self) -> None:
        """Stop the payload logger and close every pooled connection (called on the
        loop by the host once it stopped listening)."""
        if self.logger is not None:
            await self.logger.stop()
        for rev in self._revisions:
            for upstream in rev.upstreams:
                upstream.close()

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
            except BaseException as exc:  # noqa: BLE001 - runs on the router's loop: handed to the caller, which raises it
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

    # -- forwarding -------------------------------------------------------------------

    async def handle(
        self, method: str, path: str, request_headers: list[tuple[bytes, bytes]], body: bytes
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """Forward one request; the status, headers and body to answer with."""
        request_id = ""
        content_type = ""
        lines = [f"{method} {path} HTTP/1.1\r\n".encode("latin-1")]
        for key, value in request_headers:
            if key in HOP_HEADERS:
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
