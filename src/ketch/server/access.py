"""Who may call what: the server applies :mod:`ketch.core.access` to every request.

Two pieces, both installed by :func:`ketch.server.app.create_app`:

- :class:`AccessMiddleware` finds the caller. With no access implementation, or while
  authentication is off (a store without users and without trusted proxies), every
  request is the one local user (:data:`~ketch.core.access.LOCAL`). Once it is on, a
  request with credentials that do not hold is answered 401, one with none is
  anonymous (answered 401 by anything but a public route; a browser's visit to a page
  is sent to the sign-in page instead, when the app serves one), a session's write to
  a route that is not public must carry its CSRF token (403 otherwise), and every
  state-changing request goes to the audit log with its outcome.
- :func:`authorize` is a dependency of every route: it reads the route's rule
  (:func:`ketch.core.access.rule`), refuses a route that declares none, answers 401 to
  an anonymous caller and 403 when the authorizer says no, and leaves on
  ``request.state`` what lists and handlers need (read with
  :mod:`ketch.core.access`'s readers, e.g. :func:`~ketch.core.access.identity_of`):
  ``ketch_identity``, ``ketch_namespaces`` (the namespaces a list across namespaces
  is filtered to; ``None``: all) and ``ketch_authorize`` (checks more attributes,
  e.g. a namespace read from a body).
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import RedirectResponse
from sqlalchemy.exc import SQLAlchemyError
from starlette.datastructures import Headers
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ketch.core.access import (
    ATTRIBUTES_KEY,
    AUTHENTICATED,
    AUTHORIZE_KEY,
    CSRF_HEADER,
    IDENTITY_KEY,
    LOCAL,
    NAMESPACES_KEY,
    PUBLIC,
    READ_VERBS,
    Access,
    Attributes,
    Call,
    Identity,
    Verb,
    check_of,
    rule_of,
)
from ketch.core.errors import Forbidden, KetchError, Unauthorized
from ketch.server.errors import answer, is_kubernetes_path

log = logging.getLogger(__name__)

# what the middleware hands the dependency: the access it applies
_ACCESS = "ketch_access"
_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: where a browser's visit to a page is sent without a session (when a route serves it)
LOGIN_PAGE = "/auth/login"
# API paths keep answering 401 to browsers too (KFP's facade, KFAM, KServe, the rest)
_API_PREFIXES = ("/api/", "/apis/", "/kfam/", "/v1/", "/v2/", "/openapi", "/auth/session")


def routes_of(routes: Iterable[Any]) -> Iterator[Any]:
    """Every route an app serves, with the routers FastAPI includes lazily opened (a
    websocket route among them as the route it stands for)."""
    for route in routes:
        if hasattr(route, "effective_candidates"):
            yield from routes_of(route.effective_candidates())
        elif not getattr(route, "path", "") and getattr(route, "starlette_route", None):
            yield route.starlette_route
        else:
            yield route


def public_paths(app: Any) -> frozenset[str]:
    """The paths of the app's routes whose rule is :data:`PUBLIC` (fixed paths only)."""
    return frozenset(
        route.path
        for route in routes_of(app.routes)
        if getattr(route, "endpoint", None) is not None
        and rule_of(route.endpoint) is PUBLIC
        and "{" not in route.path
    )


class AccessMiddleware:
    """Authenticates each request (see the module's docstring)."""

    def __init__(
        self, app: ASGIApp, access: Access | None, page_writes: Iterable[str] = ()
    ) -> None:
        self.app = app
        self.access = access
        # where a session's write may show this server's Origin instead of its CSRF token
        self.page_writes = tuple(page_writes)
        self._public: frozenset[str] | None = None

    def _is_public(self, scope: Scope) -> bool:
        if self._public is None:
            self._public = public_paths(scope["app"])
        return bool(scope["path"] in self._public)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        access = self.access
        try:
            enabled = access is not None and access.authenticator.enabled()
        except (SQLAlchemyError, OSError) as exc:
            # the store cannot say whether there are users: health checks still answer
            # (readiness says the database is down), everything else waits for it
            log.warning("the store is not reachable to check users: %s", type(exc).__name__)
            if self._is_public(scope):
                await self.app(scope, receive, send)
            else:
                await _refuse(scope, receive, send, 503, "the database is not reachable")
            return
        if access is None or not enabled:
            state[IDENTITY_KEY] = LOCAL
            await self.app(scope, receive, send)
            return
        state[_ACCESS] = access
        headers = Headers(scope=scope)
        client = scope.get("client")
        path = scope["path"]
        try:
            identity = access.authenticator.authenticate(
                headers, client[0] if client else None, secure=scope.get("scheme") == "https"
            )
        except Unauthorized as exc:
            await _refuse(scope, receive, send, 401, str(exc))
            return
        if identity is None:
            if not self._is_public(scope):
                if _is_page_visit(scope, headers) and LOGIN_PAGE in (self._public or ()):
                    await _to_login(scope, receive, send)
                    return
                await _refuse(
                    scope,
                    receive,
                    send,
                    401,
                    "sign in first: send an API token as `Authorization: Bearer <token>` "
                    "(`ketch login`, `ketch tokens create`)",
                )
                return
            await self.app(scope, receive, send)
            return
        state[IDENTITY_KEY] = identity
        method = scope.get("method", "GET")
        # a public route is answered for anyone, so a session's token is not asked for
        # there (the sign-in form); one that acts on the session checks it itself
        if identity.via == "session" and method in _WRITES and not self._is_public(scope):
            if not _same(headers.get(CSRF_HEADER, ""), identity.csrf) and not (
                path.startswith(self.page_writes) and _same_origin(scope, headers)
            ):
                await _refuse(
                    scope, receive, send, 403, f"a signed-in page's write must send {CSRF_HEADER}"
                )
                return
        if method not in _WRITES or access.audit is None:
            await self.app(scope, receive, send)
            return
        code = 500

        async def send_and_note(message: Message) -> None:
            nonlocal code
            if message["type"] == "http.response.start":
                code = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            attributes = state.get(ATTRIBUTES_KEY)
            try:
                access.audit.record(identity, method, path, attributes, code)
            except Exception:  # noqa: BLE001 - the request was served; the audit logs why not
                log.exception("could not record the audit entry of %s %s", method, path)


def _is_page_visit(scope: Scope, headers: Headers) -> bool:
    """Whether a request is a browser's visit to a page (a GET that accepts HTML, on
    no API path): what is sent to the sign-in page rather than answered 401."""
    if scope["type"] != "http" or scope.get("method") not in ("GET", "HEAD"):
        return False
    path: str = scope["path"]
    if path.startswith(_API_PREFIXES) or is_kubernetes_path(path):
        return False
    return "text/html" in headers.get("accept", "")


async def _to_login(scope: Scope, receive: Receive, send: Send) -> None:
    query = scope.get("query_string", b"").decode("latin-1")
    target = scope["path"] + (f"?{query}" if query else "")
    location = f"{LOGIN_PAGE}?{urlencode({'next': target})}"
    await RedirectResponse(location, status_code=303)(scope, receive, send)


def _same_origin(scope: Scope, headers: Headers) -> bool:
    """Whether the request says it comes from a page of this server (its ``Origin``)."""
    origin = headers.get("origin")
    if not origin:
        return False
    scheme = "https" if scope.get("scheme") in ("https", "wss") else "http"
    return bool(origin.rstrip("/").lower() == f"{scheme}://{headers.get('host', '')}".lower())


def _same(given: str, expected: str) -> bool:
    return bool(expected) and hmac.compare_digest(given.encode(), expected.encode())


async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, message: str) -> None:
    if scope["type"] == "websocket" and "websocket.http.response" not in scope.get(
        "extensions", {}
    ):
        await send({"type": "websocket.close", "code": {401: 4401, 403: 4403}.get(status, 1011)})
        return
    headers = {"WWW-Authenticate": 'Bearer realm="ketch"'} if status == 401 else None
    response = answer(scope["path"], status, message, headers=headers)
    await response(scope, receive, send)


def forbidden(identity: Identity, attributes: Attributes) -> Forbidden:
    """A refusal worded as Kubernetes words it."""
    what = attributes.resource + (f"/{attributes.subresource}" if attributes.subresource else "")
    subject = f'{what} "{attributes.name}"' if attributes.name else what
    where = (
        f' in the namespace "{attributes.namespace}"'
        if attributes.namespace
        else " at the cluster scope"
    )
    return Forbidden(
        f'{subject} is forbidden: User "{identity.name}" cannot {attributes.verb} resource '
        f'"{what}" in API group "{attributes.group}"{where}'
    )


async def authorize(request: HTTPConnection) -> None:
    """The app's dependency on every route, websockets' too (see the module's
    docstring)."""
    state = request.scope.setdefault("state", {})
    access: Access | None = state.get(_ACCESS)
    if access is None:  # authentication is off: the one local user
        state.setdefault(IDENTITY_KEY, LOCAL)
        state[NAMESPACES_KEY] = None
        state[AUTHORIZE_KEY] = _allow
        return
    route = request.scope.get("route")
    endpoint = getattr(route, "endpoint", None)
    how = rule_of(endpoint) if endpoint is not None else None
    if how is None:
        log.error("%s has no access rule; refused", getattr(route, "path", request.url.path))
        raise Forbidden("this route declares no access rule, so it is refused")
    if how is PUBLIC:
        return
    identity: Identity | None = state.get(IDENTITY_KEY)
    if identity is None or not identity.authenticated:
        raise Unauthorized("sign in first: send an API token as `Authorization: Bearer <token>`")
    authorizer = access.authorizer

    def check(attributes: Attributes) -> None:
        decision = authorizer.authorize(identity, attributes)
        if not decision.allowed:
            raise forbidden(identity, attributes)

    state[AUTHORIZE_KEY] = check
    state[NAMESPACES_KEY] = authorizer.namespaces(identity, Verb.LIST)
    if how is AUTHENTICATED:
        return
    call = Call(
        str(request.scope.get("method", "GET")),
        request.url.path,
        request.path_params,
        request.query_params,
        request.app.state.api,
    )
    try:
        made = how(call)
    except KetchError:
        raise
    except (ValueError, KeyError) as exc:
        raise Forbidden(f"the request's access could not be read: {exc}") from None
    found = made if isinstance(made, list) else [made]
    if found:
        state[ATTRIBUTES_KEY] = found[0]  # the audit log names what was asked, allowed or not
    for attributes in found:
        check(attributes)
    if found and found[0].namespace is None and found[0].verb in READ_VERBS:
        state[NAMESPACES_KEY] = authorizer.namespaces(identity, found[0].verb)


def _allow(_attributes: Attributes) -> None:
    return None


def check(request: Request, attributes: Attributes) -> None:
    """Refuse (403) unless the caller may do ``attributes`` (for what a rule cannot see:
    a namespace named in a body, an object found by id); no check on the request means
    authentication is off, and anything goes."""
    authorize_more = check_of(request)
    if authorize_more is not None:
        authorize_more(attributes)
