"""Forwarding a caller's requests to a notebook's server: HTTP with httpx, websockets
(a kernel's channels, terminals) with ``websockets``, both streaming.

What goes upstream is the caller's request as Jupyter must see it, less Ketch's own
credentials:

- the ``Host`` and ``Origin`` the browser sent are kept (Jupyter compares them, and
  names its cookies after the host), on HTTP and on the websocket's handshake;
- ``Authorization``, Ketch's cookies (``ketch_*``: the sign-in session), a session's
  CSRF header and the trusted proxy's user header are taken off, and the notebook's
  token is put in as ``Authorization: token <t>``: the browser never holds it;
- the websocket's subprotocols are offered upstream and the one Jupyter picks
  (``v1.kernel.websocket.jupyter.org``) is the one accepted.

Back come the status, the body as it was sent (still encoded) and every header but the
hop-by-hop ones, each ``Set-Cookie`` on its own line. The HTTP client keeps no cookie
(its jar refuses every domain), so nothing one caller's server sets reaches another
caller. Redirects are passed back, not followed.

An HTML page has the notebook's token taken out of it: JupyterLab writes its server's
token into the page's configuration (``"token": "<t>"`` in ``jupyter-config-data``),
from where its scripts would send it back as ``Authorization: token <t>`` (which Ketch
refuses: its own credentials are a bearer token or the session) and add it to each
websocket's URL. Without it the page's requests carry Ketch's session cookie only, and
the proxy puts the token in on their way to the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator, Iterable, MutableMapping
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any

import httpx
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.websockets import WebSocket, WebSocketDisconnect
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.typing import Origin, Subprotocol

from ketch.notebooks.running import Upstream

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
#: request headers that carry Ketch's credentials, never a notebook's
KETCH_HEADERS = frozenset({"authorization", "x-csrf-token", "kubeflow-userid", "kubeflow-groups"})
#: what the websocket library sets on the upstream handshake itself
_HANDSHAKE = frozenset(
    {
        "host",
        "origin",
        "content-length",
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-extensions",
        "sec-websocket-protocol",
        "sec-websocket-accept",
    }
)
KETCH_COOKIE_PREFIX = "ketch"
TIMEOUT = httpx.Timeout(connect=10.0, read=300.0, write=300.0, pool=10.0)

_CLIENTS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
    weakref.WeakKeyDictionary()
)


def _client() -> httpx.AsyncClient:
    """The event loop's HTTP client to notebooks: pooled, never keeping a cookie."""
    loop = asyncio.get_running_loop()
    client = _CLIENTS.get(loop)
    if client is None:
        jar = CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))
        client = _CLIENTS[loop] = httpx.AsyncClient(
            cookies=jar,
            timeout=TIMEOUT,
            follow_redirects=False,
            trust_env=False,
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=64),
        )
    return client


def error(status: int, message: str) -> JSONResponse:
    """An error answer in the shape of Ketch's other non-Kubernetes routes."""
    return JSONResponse(
        {"error": message, "message": message, "code": status, "details": []}, status
    )


def _cookies(values: Iterable[str]) -> str:
    """The ``Cookie`` header less Ketch's own cookies."""
    kept = []
    for value in values:
        for part in value.split(";"):
            name = part.split("=", 1)[0].strip()
            if name and not name.lower().startswith(KETCH_COOKIE_PREFIX):
                kept.append(part.strip())
    return "; ".join(kept)


def upstream_headers(
    raw: Iterable[tuple[bytes, bytes]], upstream: Upstream, skip: frozenset[str] = frozenset()
) -> list[tuple[str, str]]:
    """The caller's headers as they go to ``upstream`` (see the module)."""
    headers: list[tuple[str, str]] = []
    cookies: list[str] = []
    for key, value in raw:
        name = key.decode("latin-1").lower()
        text = value.decode("latin-1")
        if name == "cookie":
            cookies.append(text)
        elif name not in HOP_BY_HOP and name not in KETCH_HEADERS and name not in skip:
            headers.append((name, text))
    kept = _cookies(cookies)
    if kept:
        headers.append(("cookie", kept))
    headers.extend(upstream.auth_headers())
    return headers


def upstream_path(raw_path: str, query: str, upstream: Upstream) -> str:
    """The path (and query) the server is asked for."""
    path = raw_path
    if upstream.strip_prefix and path.startswith(upstream.prefix):
        path = "/" + path[len(upstream.prefix) :]
    return path + (f"?{query}" if query else "")


def _raw_path(scope: MutableMapping[str, Any]) -> str:
    raw = scope.get("raw_path")
    if isinstance(raw, bytes) and raw:
        return raw.decode("latin-1").split("?", 1)[0]
    return str(scope["path"])


def response_headers(response: httpx.Response, upstream: Upstream) -> list[tuple[bytes, bytes]]:
    out = []
    for key, value in response.headers.multi_items():
        name = key.lower()
        if name in HOP_BY_HOP:
            continue
        if name == "location" and upstream.strip_prefix and value.startswith("/"):
            value = upstream.prefix.rstrip("/") + value
        out.append((name.encode("latin-1"), value.encode("latin-1")))
    return out


async def forward_http(request: Request, upstream: Upstream) -> Response:
    """Send ``request`` to ``upstream`` and stream its answer back."""
    scope = request.scope
    path = upstream_path(
        _raw_path(scope), scope.get("query_string", b"").decode("latin-1"), upstream
    )
    headers = upstream_headers(scope["headers"], upstream)
    has_body = request.headers.get("content-length", "0") not in ("", "0") or (
        "transfer-encoding" in request.headers
    )
    client = _client()
    sent = client.build_request(
        request.method,
        f"http://{upstream.host}:{upstream.port}{path}",
        headers=headers,
        content=request.stream() if has_body else None,
    )
    try:
        answer = await client.send(sent, stream=True)
    except httpx.HTTPError as exc:
        return error(502, f"the notebook's server at {upstream.prefix} did not answer: {exc}")
    headers_out = response_headers(answer, upstream)
    body: AsyncIterator[bytes] = answer.aiter_raw()
    if _is_html(answer):
        # decoded to be searched; sent back plain, its length unknown until the end
        body = scrubbed(answer.aiter_bytes(), upstream.token.encode())
        headers_out = [(k, v) for k, v in headers_out if k not in _LENGTH_AND_ENCODING]
    response = StreamingResponse(
        body, status_code=answer.status_code, background=BackgroundTask(answer.aclose)
    )
    response.raw_headers = headers_out
    return response


_LENGTH_AND_ENCODING = frozenset({b"content-length", b"content-encoding"})


def _is_html(response: httpx.Response) -> bool:
    kind = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    return kind in ("text/html", "application/xhtml+xml")


async def scrubbed(chunks: AsyncIterator[bytes], secret: bytes) -> AsyncIterator[bytes]:
    """``chunks`` with every occurrence of ``secret`` taken out, also one that spans
    two chunks (the last ``len(secret) - 1`` bytes wait for the next chunk)."""
    if not secret:
        async for chunk in chunks:
            yield chunk
        return
    keep = len(secret) - 1
    pending = b""
    async for chunk in chunks:
        pending += chunk
        while secret in pending:
            pending = pending.replace(secret, b"")
        if len(pending) > keep:
            cut = len(pending) - keep
            yield pending[:cut]
            pending = pending[cut:]
    if pending:
        yield pending


async def deny(websocket: WebSocket, status: int, message: str) -> None:
    """Refuse a websocket's handshake with an HTTP answer (where the server can send
    one; else close it)."""
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(error(status, message))
    else:
        await websocket.close(code=1011 if status >= 500 else 1008, reason=message[:120])


async def forward_websocket(websocket: WebSocket, upstream: Upstream) -> None:
    """Join the caller's websocket to the server's, both ways, until one closes."""
    scope = websocket.scope
    path = upstream_path(
        _raw_path(scope), scope.get("query_string", b"").decode("latin-1"), upstream
    )
    headers = upstream_headers(scope["headers"], upstream, skip=_HANDSHAKE)
    host = websocket.headers.get("host") or f"{upstream.host}:{upstream.port}"
    origin = websocket.headers.get("origin")
    offered = [Subprotocol(p) for p in scope.get("subprotocols") or ()]
    try:
        server = await connect(
            f"ws://{host}{path}",
            host=upstream.host,
            port=upstream.port,
            additional_headers=headers,
            origin=Origin(origin) if origin else None,
            subprotocols=offered or None,
            compression=None,
            max_size=None,
            ping_interval=None,
            user_agent_header=None,
            open_timeout=15,
            proxy=None,
        )
    except InvalidStatus as exc:
        code = exc.response.status_code
        await deny(websocket, code, f"the notebook's server refused the websocket ({code})")
        return
    except (OSError, InvalidHandshake, TimeoutError) as exc:
        await deny(
            websocket, 502, f"the notebook's server at {upstream.prefix} did not answer: {exc}"
        )
        return
    try:
        await websocket.accept(subprotocol=server.subprotocol)
        await _pump(websocket, server)
    finally:
        await server.close()


async def _pump(websocket: WebSocket, server: ClientConnection) -> None:
    async def from_caller() -> None:
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    await server.close(code=int(message.get("code") or 1000))
                    return
                text = message.get("text")
                await server.send(text if text is not None else message.get("bytes") or b"")
        except (WebSocketDisconnect, ConnectionClosed):
            return

    async def from_server() -> None:
        try:
            async for data in server:
                if isinstance(data, str):
                    await websocket.send_text(data)
                else:
                    await websocket.send_bytes(data)
        except ConnectionClosed:
            pass
        with contextlib.suppress(RuntimeError, WebSocketDisconnect):
            await websocket.close(code=server.close_code or 1000)

    tasks = [asyncio.create_task(from_caller()), asyncio.create_task(from_server())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(
                asyncio.CancelledError, WebSocketDisconnect, ConnectionClosed, RuntimeError
            ):
                await task
