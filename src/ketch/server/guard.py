"""What a request must look like before any route sees it.

A web page the user happens to visit can send requests to ``127.0.0.1``: a
``fetch(..., {mode: "no-cors"})`` or an HTML form posts ``text/plain`` or form data
cross-origin without a preflight, and DNS rebinding lets a page's own origin resolve
to the loopback address. The API runs commands as the server's user, so:

- every request's ``Host`` must name this server (the loopback names, the address it
  is bound to, or ``KETCH_ALLOWED_HOSTS``): a rebound page's requests carry its own
  host name and are refused (403);
- a state-changing request (POST, PUT, PATCH, DELETE) with an ``Origin`` that is not
  the server's own origin, or that the browser marks ``Sec-Fetch-Site: cross-site``,
  is refused (403);
- a state-changing request with a body must say it is JSON or YAML (or one of the
  Kubernetes patch types); ``multipart/form-data`` is taken only by the upload routes
  that capabilities declare (``Capability.uploads``: KFP's ``pipelines/upload`` and
  ``upload_version``), ``application/x-www-form-urlencoded`` only by the HTML
  forms that capabilities declare (``Capability.forms``: the sign-in page) and only
  with an ``Origin`` that is this server's (a browser always sends one with a form
  post; a form from another site, or with its origin hidden, is refused), and Kubernetes'
  protobuf (which kubectl sends the core kinds it creates as, and which a browser
  cannot send without a preflight) only by creates and replaces on Kubernetes
  paths; under the path prefixes of the apps Ketch serves whose own pages write
  (``Capability.page_writes``: JupyterLab behind the notebook proxy, whose scripts
  send JSON without saying so, as ``text/plain``), any type is taken with this
  server's ``Origin``, the body going to the app and not to Ketch. Anything else —
  ``text/plain`` and form posts above all, the kinds a browser sends without
  asking — is refused (415).
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

from ketch.server.bodies import PROTOBUF, YAML_TYPES
from ketch.server.errors import answer, is_kubernetes_path

ALLOWED_HOSTS_ENV = "KETCH_ALLOWED_HOSTS"

_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# JSON, the Kubernetes patch types, and the YAML types the body reader parses as YAML.
_BODY_TYPES = frozenset(
    {
        "application/json",
        "application/merge-patch+json",
        "application/strategic-merge-patch+json",
        "application/json-patch+json",
        *YAML_TYPES,
    }
)
FORM = "application/x-www-form-urlencoded"
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address, IPv6 with or without brackets) is loopback."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def allowed_hosts(bound: str | None = None) -> frozenset[str] | None:
    """The ``Host`` names a server bound to ``bound`` answers to; ``None`` means any.

    A server on a loopback address answers to the loopback names only (so DNS
    rebinding cannot reach it); one bound to a wildcard or another address answers to
    any name. ``KETCH_ALLOWED_HOSTS`` (comma-separated; ``*`` for any) adds names, for a
    reverse proxy in front of Ketch.
    """
    extra = [
        h.strip().lower() for h in os.environ.get(ALLOWED_HOSTS_ENV, "").split(",") if h.strip()
    ]
    if "*" in extra:
        return None
    if bound is not None and not is_loopback(bound):
        return None
    names = {*LOOPBACK_HOSTS, *extra}
    if bound is not None:
        names.add(bound.strip("[]").lower())
    return frozenset(names)


def _split_host(value: str) -> str:
    """The host part of a ``Host`` header value (``[::1]:8808`` -> ``::1``)."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value[1:]
    if value.count(":") == 1:
        return value.split(":", 1)[0]
    return value


class RequestGuardMiddleware:
    """Refuse requests for another host, cross-origin writes and bodies of other types."""

    def __init__(
        self,
        app: ASGIApp,
        hosts: Iterable[str] | None = None,
        uploads: Iterable[str] = (),
        forms: Iterable[str] = (),
        page_writes: Iterable[str] = (),
    ) -> None:
        self.app = app
        self.hosts = None if hosts is None else frozenset(h.lower() for h in hosts)
        self.uploads = frozenset(uploads)
        self.forms = frozenset(forms)
        self.page_writes = tuple(page_writes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = {
            key.decode("latin-1"): value.decode("latin-1") for key, value in scope["headers"]
        }
        problem = self._check(scope, headers)
        if problem is not None:
            status, message = problem
            await answer(str(scope.get("path", "")), status, message)(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _check(self, scope: Scope, headers: dict[str, str]) -> tuple[int, str] | None:
        host = headers.get("host", "")
        name = _split_host(host)
        if self.hosts is not None and name not in self.hosts and not is_loopback(name):
            return 403, (
                f"this server does not answer to host {host!r}; use 127.0.0.1 or localhost "
                f"(or list the name in {ALLOWED_HOSTS_ENV})"
            )
        method = scope.get("method", "GET") if scope["type"] == "http" else "GET"
        websocket = scope["type"] == "websocket"
        if method not in _WRITES and not websocket:
            return None
        origin = headers.get("origin")
        scheme = "https" if scope.get("scheme") in ("https", "wss") else "http"
        if origin is not None and origin.rstrip("/").lower() != f"{scheme}://{host}".lower():
            return 403, (
                f"cross-origin requests are refused: Origin {origin!r} is not this server's "
                f"origin {scheme}://{host}"
            )
        if headers.get("sec-fetch-site") in ("cross-site", "same-site"):
            return 403, "cross-site requests are refused (Sec-Fetch-Site)"
        if websocket:
            return None
        has_body = "transfer-encoding" in headers or headers.get(
            "content-length", "0"
        ).strip() not in (
            "",
            "0",
        )
        raw_type = headers.get("content-type")
        if raw_type is None and not has_body:
            return None
        media = (raw_type or "").split(";", 1)[0].strip().lower()
        if media in _BODY_TYPES:
            return None
        path: str = scope.get("path", "")
        if media == PROTOBUF and method in ("POST", "PUT") and is_kubernetes_path(path):
            return None  # kubectl's built-in kinds; no browser sends it unasked
        if media == "multipart/form-data" and method == "POST" and path in self.uploads:
            return None
        if media == FORM and method == "POST" and path in self.forms:
            if origin is None:  # the origin check above passed only because there is none
                return 403, f"a form post to {path} must come from this server's page (Origin)"
            return None
        if origin is not None and self.page_writes and path.startswith(self.page_writes):
            return None  # the app's own page (its Origin is this server's, checked above)
        accepted = "application/json or application/yaml"
        if path in self.uploads:
            accepted += " (multipart/form-data for uploads)"
        if path in self.forms:
            accepted += f" ({FORM} from this server's own page)"
        return 415, (
            f"Content-Type {raw_type or '(none)'!s} is not accepted for {method} {path}; "
            f"send {accepted}"
        )
