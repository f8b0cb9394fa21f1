"""Request/response payloads sent as CloudEvents (binary mode) to a logger URL.

The request path only puts a record in a bounded queue (no await, no copy
beyond the bytes it already holds); sender tasks deliver it. When the queue is
full the record is dropped and counted in ``dropped``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

import httpx

from ketch.core.timestamps import format_time, utcnow

log = logging.getLogger("ketch.serving.logger")

REQUEST_TYPE = "org.kubeflow.serving.inference.request"
RESPONSE_TYPE = "org.kubeflow.serving.inference.response"


@dataclass(frozen=True)
class _Record:
    ce_type: str
    request_id: str
    body: bytes
    content_type: str
    endpoint: str


class PayloadLogger:
    """Sends CloudEvents to ``url``; ``mode`` is ``all``, ``request`` or ``response``."""

    def __init__(
        self,
        url: str,
        mode: str,
        *,
        service: str,
        namespace: str,
        component: str,
        queue_size: int = 1024,
        senders: int = 2,
    ) -> None:
        self.url = url
        self.mode = mode
        self.service = service
        self.namespace = namespace
        self.component = component
        self.source = f"urn:ketch:{namespace}:{service}:{component}"
        self.sent = 0
        self.failed = 0
        self.dropped = 0
        self._queue: asyncio.Queue[_Record] = asyncio.Queue(queue_size)
        self._senders = senders
        self._tasks: list[asyncio.Task[None]] = []
        self._client: httpx.AsyncClient | None = None

    @property
    def logs_requests(self) -> bool:
        return self.mode in ("all", "request")

    @property
    def logs_responses(self) -> bool:
        return self.mode in ("all", "response")

    def start(self) -> None:
        """Start the sender tasks (in the running loop)."""
        if self._tasks:
            return
        self._client = httpx.AsyncClient(timeout=10.0)
        self._tasks = [asyncio.ensure_future(self._send_loop()) for _ in range(self._senders)]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await task
        self._tasks = []
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def request(self, request_id: str, body: bytes, content_type: str, endpoint: str) -> None:
        if self.logs_requests:
            self._put(_Record(REQUEST_TYPE, request_id, body, content_type, endpoint))

    def response(self, request_id: str, body: bytes, content_type: str, endpoint: str) -> None:
        if self.logs_responses:
            self._put(_Record(RESPONSE_TYPE, request_id, body, content_type, endpoint))

    def _put(self, record: _Record) -> None:
        try:
            self._queue.put_nowait(record)
        except asyncio.QueueFull:
            self.dropped += 1

    async def _send_loop(self) -> None:
        while True:
            record = await self._queue.get()
            headers = {
                "Ce-Specversion": "1.0",
                "Ce-Id": record.request_id,
                "Ce-Type": record.ce_type,
                "Ce-Source": self.source,
                "Ce-Time": format_time(utcnow()),
                "Ce-Inferenceservicename": self.service,
                "Ce-Namespace": self.namespace,
                "Ce-Component": self.component,
                "Ce-Endpoint": record.endpoint,
                "Content-Type": record.content_type or "application/json",
            }
            try:
                assert self._client is not None
                response = await self._client.post(self.url, content=record.body, headers=headers)
                if response.status_code >= 400:
                    self.failed += 1
                else:
                    self.sent += 1
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a sender task must outlive one bad record (httpx raises more than HTTPError); counted in failed
                self.failed += 1
                log.debug(
                    "payload logger: sending to %s failed: %s: %s",
                    self.url,
                    type(exc).__name__,
                    exc,
                )
