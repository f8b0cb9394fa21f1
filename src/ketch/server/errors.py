"""Error bodies: Kubernetes ``Status`` objects on the Kubernetes paths, grpc-gateway's
shape (which KFP's clients need) everywhere else.

On a Kubernetes path (:func:`is_kubernetes_path`: ``/api``, ``/apis/{group}/...``,
``/version``, ``/openapi/v2``, ``/openapi/v3``; not the KFP facade
``/apis/v2beta1/...``, ``/apis/v1beta1/...``) an error answers::

    {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
     "message": ..., "reason": "NotFound", "code": 404,
     "details": {"name": ..., "group": ..., "kind": ..., "causes": [...]}}

as the Kubernetes API server does, so kubectl prints ``Error from server
(NotFound): pytorchjobs.kubeflow.org "x" not found`` and the Kubernetes clients
raise their own errors. Ketch's message and hint stay in ``message``:

- ``ObjectNotFound`` answers 404 NotFound (``{plural}.{group} "name" not found``);
- ``AlreadyExists`` 409 AlreadyExists; another ``Conflict`` (a stale
  ``resourceVersion``) 409 Conflict (``Operation cannot be fulfilled on ...``);
- ``InvalidSpec`` naming a field of an object (``spec...``, ``metadata...``; see
  :data:`OBJECT_FIELDS`) answers 422 Invalid, with a cause naming the field; one
  about the request itself (the body, a query or path parameter) 400 BadRequest,
  also with its cause;
- every other status has its Kubernetes reason (:data:`REASONS`).

Everywhere else the body is grpc-gateway's
``{"error": msg, "message": msg, "code": <gRPC code>, "details": []}``.

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
import re
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ketch.core.errors import (
    AlreadyExists,
    InvalidSpec,
    KetchError,
    NotFound,
    ObjectError,
    ObjectNotFound,
)

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

#: The ``reason`` of a Kubernetes ``Status`` for each HTTP status (``metav1.StatusReason``).
REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    409: "Conflict",
    410: "Gone",
    413: "RequestEntityTooLarge",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}

#: The scope key a route sets (:func:`note_name`) when the name of the object it is
#: about comes from the body, not the URL (a create).
NAME_KEY = "ketch.object_name"

# The first segment of a KFP facade path under /apis (/apis/v2beta1/...,
# /apis/v1beta1/...): a bare version, which no API group is named.
_FACADE = re.compile(r"v[0-9]+(?:(?:alpha|beta)[0-9]+)?")
#: The top-level fields of a Kubernetes object: an ``InvalidSpec`` naming one of them
#: (or a field inside) is an invalid object, 422.
OBJECT_FIELDS = frozenset(
    {
        "apiVersion",
        "kind",
        "metadata",
        "spec",
        "status",
        "data",
        "stringData",
        "binaryData",
        "immutable",
        "type",
        "roleRef",
        "subjects",
    }
)
# Where a field path's first part ends: spec.a[0].b -> spec.
_FIELD_ROOT = re.compile(r"[.\[]")
_REQUEST_LOCATIONS = ("query", "path", "header", "cookie")


class PayloadTooLarge(KetchError):
    http_status = 413
    exit_code = 2


class ServiceUnavailable(KetchError):
    http_status = 503


class Gone(KetchError):
    """What was asked for is no longer there (a watch resumed from a version the
    server no longer keeps): 410."""

    http_status = 410


class StatusCause(BaseModel):
    reason: str = "FieldValueInvalid"
    message: str
    field: str


class StatusDetails(BaseModel):
    name: str | None = None
    group: str | None = None
    kind: str | None = None
    causes: list[StatusCause] = Field(default_factory=list)


class StatusBody(BaseModel):
    """What a failed request on a Kubernetes path answers (``meta.k8s.io`` ``Status``)."""

    kind: str = "Status"
    apiVersion: str = "v1"
    metadata: dict[str, Any] = Field(default_factory=dict)
    status: str = "Failure"
    message: str
    reason: str = Field(description="NotFound, AlreadyExists, Conflict, Invalid, BadRequest, ...")
    details: StatusDetails = Field(default_factory=StatusDetails)
    code: int = Field(description="The HTTP status")


#: ``responses`` for the routes on Kubernetes paths, documenting ``Status``.
STATUS_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": StatusBody, "description": text}
    for status, text in (
        (400, "Bad request"),
        (404, "Not found"),
        (409, "Conflict or already exists"),
        (413, "Body too large"),
        (422, "Invalid object"),
    )
}


_API_VERSION = re.compile(r"v[0-9]+(?:(?:alpha|beta)[0-9]+)?")


def is_kubernetes_path(path: str) -> bool:
    """Whether errors on ``path`` answer as Kubernetes does (``Status``): ``/api``,
    ``/api/...``, ``/apis`` and ``/apis/{group}/...``, ``/version``, ``/openapi/v2``
    and ``/openapi/v3...``; not the KFP facade (``/apis/v2beta1/...``,
    ``/apis/v1beta1/...``), whose clients read grpc-gateway's body."""
    if path in ("/api", "/apis", "/version", "/openapi/v2", "/openapi/v3"):
        return True
    if path.startswith("/openapi/v3/"):
        return True
    if path.startswith("/api/"):
        # /api/v1/...; not /api/model_registry/... (the Model Registry's own paths)
        return _API_VERSION.fullmatch(path[len("/api/") :].split("/", 1)[0]) is not None
    if path.startswith("/apis/"):
        first = path[len("/apis/") :].split("/", 1)[0]
        return _FACADE.fullmatch(first) is None
    return False


def grpc_code(http_status: int) -> int:
    if http_status in _GRPC_CODES:
        return _GRPC_CODES[http_status]
    return INTERNAL if http_status >= 500 else INVALID_ARGUMENT


def reason_for(http_status: int) -> str:
    """The Kubernetes ``Status`` reason of ``http_status``."""
    if http_status in REASONS:
        return REASONS[http_status]
    return "InternalError" if http_status >= 500 else "BadRequest"


def error_response(
    status: int, message: str, *, code: int | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    """grpc-gateway's error body, for the routes that are not Kubernetes paths."""
    body = {
        "error": message,
        "message": message,
        "code": grpc_code(status) if code is None else code,
        "details": [],
    }
    return JSONResponse(body, status_code=status, headers=headers)


def status_body(
    status: int,
    message: str,
    *,
    reason: str | None = None,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A Kubernetes ``Status`` for a failed request."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason or reason_for(status),
        "details": details or {},
        "code": status,
    }


def status_response(
    status: int,
    message: str,
    *,
    reason: str | None = None,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(
        status_body(status, message, reason=reason, details=details),
        status_code=status,
        headers=headers,
    )


def answer(
    path: str, status: int, message: str, *, headers: dict[str, str] | None = None
) -> JSONResponse:
    """The error body for a request to ``path``: a ``Status`` on a Kubernetes path,
    grpc-gateway's body elsewhere. For answers given before any route matched (the
    request guard, the body limit)."""
    if is_kubernetes_path(path):
        return status_response(status, message, headers=headers)
    return error_response(status, message, headers=headers)


def note_name(request: Request, name: object) -> None:
    """Say which object a request is about when its URL does not (a create names it
    in the body), so an error about it names it as Kubernetes does."""
    if isinstance(name, str) and name:
        request.scope[NAME_KEY] = name


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


# -- Kubernetes Status ----------------------------------------------------------------


@dataclass(frozen=True)
class Subject:
    """The object an error is about: its kind's group, plural and name, its name."""

    group: str = ""
    plural: str = ""
    kind: str = ""
    name: str = ""

    @property
    def resource(self) -> str:
        """``pytorchjobs.kubeflow.org`` (``namespaces`` in the core group)."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def qualified_kind(self) -> str:
        """``PyTorchJob.kubeflow.org``."""
        return f"{self.kind}.{self.group}" if self.group else self.kind

    def details(self, kind: str, causes: list[dict[str, str]]) -> dict[str, Any]:
        found: dict[str, Any] = {"name": self.name, "group": self.group, "kind": kind}
        details = {key: value for key, value in found.items() if value}
        if causes:
            details["causes"] = causes
        return details


def _subject(request: Request, exc: KetchError) -> Subject:
    """Which object ``exc`` is about: the one it names, else the request's URL."""
    params = request.path_params
    name = str(params.get("name") or request.scope.get(NAME_KEY) or "")
    api = getattr(request.app.state, "api", None)
    kinds = getattr(api, "kinds", None)
    kind = None
    if isinstance(exc, ObjectError) and exc.name:
        name = exc.name
        if kinds is not None and exc.kind:
            try:
                kind = kinds.lookup(exc.kind)
            except NotFound:
                kind = None
    if kind is None and kinds is not None and {"group", "version", "plural"} <= set(params):
        try:
            kind = kinds.for_path(params["group"], params["version"], params["plural"])
        except KetchError:
            kind = None
    if kind is not None:
        return Subject(kind.group, kind.plural, kind.kind, name)
    return Subject(str(params.get("group", "")), str(params.get("plural", "")), "", name)


def _in_object(field: str) -> bool:
    """Whether ``field`` names a field of an object (``spec.a[0].b``,
    ``metadata.name``) rather than a part of the request (the body as a whole, a path
    or query parameter, the fields of a body that is not an object)."""
    return _FIELD_ROOT.split(field, maxsplit=1)[0] in OBJECT_FIELDS


def _with_hint(text: str, exc: KetchError) -> str:
    return f"{text} ({exc.hint})" if exc.hint else text


def kubernetes_error(request: Request, exc: KetchError) -> JSONResponse:
    """``exc`` as the Kubernetes API server answers it."""
    status = exc.http_status
    subject = _subject(request, exc)
    message = str(exc)
    reason: str | None = getattr(exc, "status_reason", None)  # Expired
    causes: list[dict[str, str]] = []
    details_kind = subject.plural
    if isinstance(exc, InvalidSpec) and status == 400:
        if exc.field:
            causes.append(
                {
                    "reason": "FieldValueInvalid",
                    "message": _with_hint(exc.message, exc),
                    "field": exc.field,
                }
            )
            if _in_object(exc.field):
                status = 422
        if status == 422:
            details_kind = subject.kind
            if subject.kind:
                named = f' "{subject.name}"' if subject.name else ""
                message = f"{subject.qualified_kind}{named} is invalid: {message}"
    elif isinstance(exc, ObjectNotFound) and subject.plural and subject.name:
        message = _with_hint(f'{subject.resource} "{subject.name}" not found', exc)
    elif isinstance(exc, AlreadyExists) and subject.plural and subject.name:
        reason = "AlreadyExists"
        message = _with_hint(f'{subject.resource} "{subject.name}" already exists', exc)
    elif status == 409 and subject.plural and subject.name:
        message = f'Operation cannot be fulfilled on {subject.resource} "{subject.name}": {message}'
    elif isinstance(exc, AlreadyExists):
        reason = "AlreadyExists"
    return status_response(
        status, message, reason=reason, details=subject.details(details_kind, causes)
    )


def _request_field(loc: Any) -> str:
    parts = [str(part) for part in loc or ()]
    if parts and parts[0] in _REQUEST_LOCATIONS:
        parts = parts[1:]
    return ".".join(parts)


async def _ketch_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, KetchError)
    status = exc.http_status
    if status >= 500 and status != 503 and not isinstance(exc, ServiceUnavailable):
        log.error("request failed: %s", exc, exc_info=exc)
    if is_kubernetes_path(request.url.path):
        return kubernetes_error(request, exc)
    return error_response(status, str(exc), code=getattr(exc, "grpc_code", None))


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    message = validation_message(exc.errors())
    if is_kubernetes_path(request.url.path):
        causes = [
            {
                "reason": "FieldValueInvalid",
                "message": str(error.get("msg", "is not valid")),
                "field": _request_field(error.get("loc")),
            }
            for error in exc.errors()
        ]
        return status_response(400, message, details={"causes": causes} if causes else None)
    return error_response(400, message)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail
    if not isinstance(detail, str):
        detail = json.dumps(detail, default=str)
    headers = getattr(exc, "headers", None)
    path = request.url.path
    if is_kubernetes_path(path):
        if exc.status_code == 404 and detail == "Not Found":
            detail = (
                f"the server could not find the requested resource: no route "
                f"{request.method} {path} (see /docs for the routes this server serves)"
            )
        elif exc.status_code == 405 and detail == "Method Not Allowed":
            allowed = (headers or {}).get("allow") or (headers or {}).get("Allow")
            detail = f"{request.method} is not allowed on {path}"
            if allowed:
                detail += f"; it answers {allowed}"
        return status_response(exc.status_code, detail, headers=headers)
    if exc.status_code == 404 and detail == "Not Found":
        detail = "no such API path; see /docs for the routes this server serves"
    return error_response(exc.status_code, detail, headers=headers)


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
        path = str(scope.get("path", ""))
        for key, value in scope.get("headers", ()):
            if key == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    await answer(path, 400, "Content-Length is not a number")(scope, receive, send)
                    return
                if length > limit:
                    await answer(path, 413, _too_large_message(limit))(scope, receive, send)
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
            await answer(str(scope.get("path", "")), exc.http_status, str(exc))(
                scope, receive, send
            )
        except Exception:
            log.exception("unhandled error serving %s %s", scope.get("method"), scope.get("path"))
            if started:
                raise
            await answer(
                str(scope.get("path", "")),
                500,
                "internal server error; the server log has the details",
            )(scope, receive, send)


def install(app: FastAPI) -> None:
    """Install the error handlers and the body-limit and catch-all middleware."""
    app.add_exception_handler(KetchError, _ketch_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_middleware(CatchAllMiddleware)
    app.add_middleware(BodyLimitMiddleware)
