"""A replica as the router sees it: an address, and a pool of keep-alive HTTP/1.1
connections to it (asyncio streams, no client library) over which one request at a
time is sent and its answer read.

:class:`UpstreamError` means the replica could not be reached or closed the
connection (safe to retry elsewhere); :class:`UpstreamTimeout` that it took longer
than the component's ``timeout`` (not retried).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from dataclasses import dataclass, field

from ketch.serving.secret import HEADER_BYTES

#: hop-by-hop headers (and those the router sets itself): never forwarded
HOP_HEADERS = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"transfer-encoding",
        b"host",
        b"content-length",
        b"proxy-connection",
        b"upgrade",
        b"te",
        HEADER_BYTES,  # a replica's secret: only the router sends it, never a caller's
    }
)

Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]
Answer = tuple[int, list[tuple[bytes, bytes]], bytes]  # status, headers, body


class UpstreamError(Exception):
    """The replica could not be reached or closed the connection: safe to retry."""


class UpstreamTimeout(Exception):
    """The replica took longer than the component's ``timeout`` (not retried)."""


@dataclass(frozen=True)
class ReplicaAddress:
    name: str
    host: str
    port: int
    #: the replica's secret, sent with every request (:mod:`ketch.serving.secret`)
    secret: str = field(default="", repr=False)


class Upstream:
    """One replica, with a pool of idle keep-alive connections."""

    def __init__(self, address: ReplicaAddress, revision: str) -> None:
        self.address = address
        self.revision = revision
        self.inflight = 0
        self.healthy = True
        self._idle: list[Connection] = []
        # the header line that says the router sends the request
        self._secret = HEADER_BYTES + b": " + address.secret.encode() + b"\r\n"

    async def _connect(self) -> Connection:
        try:
            reader, writer = await asyncio.open_connection(self.address.host, self.address.port)
        except OSError as exc:
            raise UpstreamError(str(exc)) from exc
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return reader, writer

    async def request(self, head: bytes, body: bytes, timeout: float) -> Answer:
        """Send one request (``head`` ends with the blank line); the status, headers, body.

        ``UpstreamTimeout`` when no answer came in ``timeout`` seconds."""
        if self.address.secret:
            head = head[:-2] + self._secret + b"\r\n"
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

    async def _exchange(self, conn: Connection, head: bytes, body: bytes) -> Answer:
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
                if key not in HOP_HEADERS:
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
