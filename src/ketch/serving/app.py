"""The REST data plane: a raw ASGI app (no framework) for V1, V2, repository and metrics.

Routes::

    GET  /v1/models                          GET  /v2
    GET  /v1/models/{name}                   GET  /v2/health/live | /v2/health/ready
    POST /v1/models/{name}:predict           GET  /v2/models/{name}[/versions/{v}]
    POST /v1/models/{name}:explain           GET  /v2/models/{name}[/versions/{v}]/ready
    GET  /metrics                            POST /v2/models/{name}[/versions/{v}]/infer
                                             POST /v2/repository/index
                                             POST /v2/repository/models/{name}/load|unload

Errors are ``{"error": "..."}`` with 400 (bad request), 404 (unknown model or
route), 500 (the model failed), 501 (no explainer) or 503 (not ready, or
overloaded: then with ``Retry-After``).
"""

from __future__ import annotations

import gzip
import logging
import time
import zlib
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import unquote

import orjson

from ketch.core.errors import KetchError
from ketch.serving.dataplane import DataPlane
from ketch.serving.errors import InferenceError, InvalidInput, ServerOverloaded
from ketch.serving.model import ArrayModel
from ketch.serving.protocol import v1, v2
from ketch.serving.secret import HEADER_BYTES, REFUSED, holds

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

log = logging.getLogger("ketch.serving")

JSON = b"application/json"
OCTETS = b"application/octet-stream"
MAX_BODY = 256 * 1024 * 1024


class RouteNotFound(KetchError):
    http_status = 404


class MethodNotAllowed(KetchError):
    http_status = 405


class ServingApp:
    """The data plane's routes; with ``secret`` (a replica's, see
    :mod:`ketch.serving.secret`) every request must carry it, else it is answered 403."""

    def __init__(self, dataplane: DataPlane, secret: str | None = None) -> None:
        self.dataplane = dataplane
        self.metrics = dataplane.metrics
        self._secret = secret.encode() if secret else None
        self._refused = orjson.dumps({"error": REFUSED})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await _lifespan(receive, send)
            return
        if kind != "http":
            return
        if self._secret is not None and not _admitted(scope, self._secret):
            await send_response(send, 403, self._refused)
            return
        path: str = scope["path"]
        method: str = scope["method"]
        if method == "POST":
            if path.startswith("/v2/models/") and path.endswith("/infer"):
                await self._infer(scope, receive, send, path[11:-6])
                return
            if path.startswith("/v1/models/"):
                await self._v1_post(scope, receive, send, path[11:])
                return
        try:
            await self._other(scope, receive, send, method, path)
        except KetchError as exc:
            await send_error(send, exc)
        except Exception as exc:  # noqa: BLE001 - the model's code may raise anything: logged, answered as a JSON 500
            await send_error(send, _internal(exc))

    # -- V2 inference (the hot path) ------------------------------------------------------

    async def _infer(self, scope: Scope, receive: Receive, send: Send, rest: str) -> None:
        started = time.perf_counter()
        name, version = _name_version(rest)
        status = 200
        try:
            self.dataplane.model_ready(name, version)  # 404/503 before reading the body
            body = await read_body(scope, receive)
            length = v2.parse_header_length(
                _header(scope, b"inference-header-content-length"), len(body)
            )
            request = v2.decode_request(body, length)
            request.model_name = name
            headers = _headers(scope) if _needs_headers(self.dataplane, name) else None
            response = await self.dataplane.infer(name, version, request, headers)
            payload, json_length = v2.encode_response(response, request)
            if json_length is None:
                await send_response(send, 200, payload)
            else:
                extra = [(b"inference-header-content-length", str(json_length).encode())]
                await send_response(send, 200, payload, OCTETS, extra)
        except KetchError as exc:
            status = exc.http_status
            await send_error(send, exc)
        except Exception as exc:  # noqa: BLE001 - the model's code may raise anything: logged, answered as a JSON 500
            status = 500
            await send_error(send, _internal(exc))
        self.metrics.observe_request(name, "v2", status, time.perf_counter() - started)

    # -- V1 --------------------------------------------------------------------------------

    async def _v1_post(self, scope: Scope, receive: Receive, send: Send, rest: str) -> None:
        started = time.perf_counter()
        name, _, verb = unquote(rest).rpartition(":")
        status = 200
        try:
            if verb not in ("predict", "explain") or not name:
                raise RouteNotFound(f"no route POST {scope['path']}; use /v1/models/NAME:predict")
            body = v1.decode(await read_body(scope, receive))
            headers = _headers(scope) if _needs_headers(self.dataplane, name) else None
            if verb == "explain":
                result = await self.dataplane.explain_v1(name, body, headers)
                await send_response(send, 200, v1.encode(result))
            else:
                result, predictions = await self.dataplane.predict_v1(name, body, headers)
                payload = v1.encode_predictions(result) if predictions else v1.encode(result)
                await send_response(send, 200, payload)
        except KetchError as exc:
            status = exc.http_status
            await send_error(send, exc)
        except Exception as exc:  # noqa: BLE001 - the model's code may raise anything: logged, answered as a JSON 500
            status = 500
            await send_error(send, _internal(exc))
        self.metrics.observe_request(name, "v1", status, time.perf_counter() - started)

    # -- everything else ---------------------------------------------------------------------

    async def _other(
        self, scope: Scope, receive: Receive, send: Send, method: str, path: str
    ) -> None:
        dp = self.dataplane
        if path == "/metrics":
            _only(method, "GET")
            await send_response(send, 200, self.metrics.render(), b"text/plain; version=0.0.4")
            return
        if path in ("/v2", "/v2/"):
            _only(method, "GET")
            await send_json(send, 200, dp.server_metadata())
            return
        if path in ("/v2/health/live", "/"):
            _only(method, "GET")
            await send_json(send, 200, {"live": True})
            return
        if path == "/v2/health/ready":
            _only(method, "GET")
            ready = dp.ready()
            await send_json(send, 200 if ready else 503, {"ready": ready})
            return
        if path == "/v1/models":
            _only(method, "GET")
            await send_json(send, 200, {"models": dp.v1_models()})
            return
        if path.startswith("/v1/models/"):
            _only(method, "GET")
            await send_json(send, 200, dp.v1_status(unquote(path[11:])))
            return
        if path.startswith("/v2/repository/"):
            await self._repository(scope, receive, send, method, path[15:])
            return
        if path.startswith("/v2/models/"):
            _only(method, "GET")
            rest = path[11:]
            if rest.endswith("/ready"):
                name, version = _name_version(rest[:-6])
                dp.model_ready(name, version)
                await send_json(send, 200, {"name": name, "ready": True})
                return
            name, version = _name_version(rest)
            await send_json(send, 200, dp.metadata(name, version))
            return
        raise RouteNotFound(f"no route {method} {path}")

    async def _repository(
        self, scope: Scope, receive: Receive, send: Send, method: str, rest: str
    ) -> None:
        repository = self.dataplane.repository
        if rest == "index":
            _only(method, "POST", "GET")
            body = await read_body(scope, receive) if method == "POST" else b""
            options = v1.decode(body) if body.strip() else {}
            await send_json(send, 200, repository.index(bool(options.get("ready", False))))
            return
        if rest.startswith("models/") and rest.endswith(("/load", "/unload")):
            _only(method, "POST")
            name, _, action = unquote(rest[7:]).rpartition("/")
            await read_body(scope, receive)
            if action == "load":
                entry = await repository.load(name)
                if entry.reason:
                    raise InvalidInput(f"failed to load model {name!r}: {entry.reason}")
                await send_json(send, 200, {"name": name, "load": True})
            else:
                await repository.unload(name)
                await send_json(send, 200, {"name": name, "unload": True})
            return
        raise RouteNotFound(f"no route {method} /v2/repository/{rest}")


# -- helpers ---------------------------------------------------------------------------------


def _name_version(rest: str) -> tuple[str, str | None]:
    name, marker, version = rest.partition("/versions/")
    name = unquote(name)
    if not name or "/" in name:
        raise RouteNotFound(f"no model route for {rest!r}")
    return name, (unquote(version) if marker else None)


def _only(method: str, *allowed: str) -> None:
    if method not in allowed:
        raise MethodNotAllowed(f"method {method} is not allowed here; use {' or '.join(allowed)}")


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _headers(scope: Scope) -> dict[str, str]:
    """The request's headers, as the model is given them (never the replica's secret)."""
    return {
        k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"] if k != HEADER_BYTES
    }


def _admitted(scope: Scope, secret: bytes) -> bool:
    """Whether the request carries the replica's secret (its first such header)."""
    for key, value in scope["headers"]:
        if key == HEADER_BYTES:
            return holds(value, secret)
    return False


def _internal(exc: Exception) -> InferenceError:
    log.exception("internal error", exc_info=exc)
    return InferenceError(f"internal error: {type(exc).__name__}: {exc}")


def _needs_headers(dataplane: DataPlane, name: str) -> bool:
    entry = dataplane.repository.entries.get(name)
    return entry is not None and not isinstance(entry.model, ArrayModel)


async def read_body(scope: Scope, receive: Receive) -> bytes:
    message = await receive()
    body: bytes = message.get("body", b"")
    if message.get("more_body", False):
        chunks = [body]
        size = len(body)
        while True:
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_BODY:
                raise InvalidInput(f"the request body is larger than {MAX_BODY} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
    encoding = _header(scope, b"content-encoding")
    if encoding:
        body = _decompress(body, encoding.strip().lower())
    return body


def _decompress(body: bytes, encoding: str) -> bytes:
    try:
        if encoding == "gzip":
            return gzip.decompress(body)
        if encoding == "deflate":
            return zlib.decompress(body)
    except (OSError, zlib.error) as exc:
        raise InvalidInput(f"cannot decompress the {encoding} request body: {exc}") from None
    if encoding == "identity":
        return body
    raise InvalidInput(f"unsupported Content-Encoding {encoding!r}; use gzip or deflate")


async def send_response(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes = JSON,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    if extra:
        headers.extend(extra)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def send_json(send: Send, status: int, doc: Any) -> None:
    await send_response(send, status, orjson.dumps(doc))


async def send_error(send: Send, exc: KetchError) -> None:
    extra = None
    if isinstance(exc, ServerOverloaded):
        extra = [(b"retry-after", str(exc.retry_after).encode())]
    await send_response(send, exc.http_status, orjson.dumps({"error": str(exc)}), JSON, extra)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
