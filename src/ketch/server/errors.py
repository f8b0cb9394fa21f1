"""One error shape for every route, as grpc-gateway (and so KFP's clients) writes it.

``{"error": msg, "message": msg, "code": <gRPC code>, "details": []}``

- ``KetchError`` subclasses answer with their ``http_status`` (400 ``InvalidSpec``,
  404 ``NotFound``, 409 ``Conflict``); an error class may set ``grpc_code`` to
  override the code derived from the HTTP status.
- Request validation errors (FastAPI/pydantic) answer 400 with one message naming
  the first bad field, never a raw pydantic dump; malformed JSON is one of them.
- Bodies larger than ``KETCH_MAX_UPLOAD_BYTES`` (default 32 MiB) answer 413.
- Anything else answers 500 with a generic message; the traceback goes to the log.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ketch.core.errors import KetchError

log = logging.getLogger(__name__)

MAX_UPLOAD_ENV = "KETCH_MAX_UPLOAD_BYTES"
DEFAULT_MAX_UPLOAD_BYTES = 32 * 1024 * 1024

# gRPC status codes (google.rpc.Code), which grpc-gateway puts in "code".
INVALID_ARGUMENT = 3
NOT_FOUND = 5
ALREADY_EXISTS = 6
PERMISSION_DENIED = 7
RESOURCE_EXHAUSTED = 8
FAILED_PRECONDITION = 9
UNIMPLEMENTED = 12
INTERNAL = 13
UNAVAILABLE = 14
UNAUTHENTICATED = 16

_GRPC_CODES = {
    400: INVALID_ARGUMENT,
    401: UNAUTHENTICATED,
    403: PERMISSION_DENIED,
    404: NOT_FOUND,
    405: UNIMPLEMENTED,
    409: ALREADY_EXISTS,
    412: FAILED_PRECONDITION,
    413: RESOURCE_EXHAUSTED,
    415: INVALID_ARGUMENT,
    422: INVALID_ARGUMENT,
    429: RESOURCE_EXHAUSTED,
    501: UNIMPLEMENTED,
    503: UNAVAILABLE,
}


class PayloadTooLarge(KetchError):
    http_status = 413
    exit_code = 2


class ServiceUnavailable(KetchError):
    http_status = 503


def grpc_code(http_status: int) -> int:
    if http_status in _GRPC_CODES:
        return _GRPC_CODES[http_status]
    return INTERNAL if http_status >= 500 else INVALID_ARGUMENT


def error_response(
    status: int, message: str, *, code: int | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = {
        "error": message,
        "message": message,
        "code": grpc_code(status) if code is None else code,
        "details": [],
    }
    return JSONResponse(body, status_code=status, headers=headers)


def max_upload_bytes() -> int:
    """The body size limit: ``KETCH_MAX_UPLOAD_BYTES`` or 32 MiB."""
    raw = os.environ.get(MAX_UPLOAD_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_UPLOAD_BYTES
    try:
        value = int(raw)
    except ValueError:
        log.warning(
            "%s=%r is not a number; using %d", MAX_UPLOAD_ENV, raw, DEFAULT_MAX_UPLOAD_BYTES
        )
        return DEFAULT_MAX_UPLOAD_BYTES
    return value if value > 0 else DEFAULT_MAX_UPLOAD_BYTES


def validation_message(errors: Any) -> str:
    """One line for a list of pydantic/FastAPI errors: ``loc.path: message``."""
    if not errors:
        return "the request is not valid"
    first = errors[0]
    loc = ".".join(str(part) for part in first.get("loc", ()))
    if first.get("type") == "json_invalid":
        reason = (first.get("ctx") or {}).get("error", "")
        return f"body: malformed JSON{': ' + str(reason) if reason else ''}"
    msg = str(first.get("msg", "is not valid"))
    msg = msg[:1].lower() + msg[1:]
    more = len(errors) - 1
    if more:
        msg += f" (and {more} more problem{'s' if more > 1 else ''})"
    return f"{loc}: {msg}" if loc else msg


async def _ketch_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, KetchError)
    status = exc.http_status
    if status >= 500 and status != 503 and not isinstance(exc, ServiceUnavailable):
        log.error("request failed: %s", exc, exc_info=exc)
    return error_response(status, str(exc), code=getattr(exc, "grpc_code", None))


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return error_response(400, validation_message(exc.errors()))


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail
    if not isinstance(detail, str):
        detail = json.dumps(detail, default=str)
    if exc.status_code == 404 and detail == "Not Found":
        detail = "no such API path; see /docs for the routes this server serves"
    return error_response(exc.status_code, detail, headers=getattr(exc, "headers", None))


class BodyLimitMiddleware:
    """Refuse bodies over the limit with 413, by Content-Length or while streaming."""

    def __init__(self, app: ASGIApp, limit: int | None = None) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit if self.limit is not None else max_upload_bytes()
        for key, value in scope.get("headers", ()):
            if key == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    await error_response(400, "Content-Length is not a number")(
                        scope, receive, send
                    )
                    return
                if length > limit:
                    await _too_large(limit)(scope, receive, send)
                    return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise PayloadTooLarge(_too_large_message(limit))
            return message

        await self.app(scope, limited_receive, send)


def _too_large_message(limit: int) -> str:
    return (
        f"the request body is larger than the server's limit of {limit} bytes "
        f"(set {MAX_UPLOAD_ENV} to change it)"
    )


def _too_large(limit: int) -> JSONResponse:
    return error_response(413, _too_large_message(limit))


class CatchAllMiddleware:
    """Answer 500 with a generic message for any unhandled exception, and log it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except KetchError as exc:  # raised outside a route (the body limit)
            if started:
                raise
            await error_response(exc.http_status, str(exc))(scope, receive, send)
        except Exception:
            log.exception("unhandled error serving %s %s", scope.get("method"), scope.get("path"))
            if started:
                raise
            response = error_response(
                500, "internal server error; the server log has the details", code=INTERNAL
            )
            await response(scope, receive, send)


def install(app: FastAPI) -> None:
    """Install the error handlers and the body-limit and catch-all middleware."""
    app.add_exception_handler(KetchError, _ketch_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_middleware(CatchAllMiddleware)
    app.add_middleware(BodyLimitMiddleware)
