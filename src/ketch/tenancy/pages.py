"""What the sign-in pages share: their templates (Jinja2, server-side, no script) and
Ketch's look (which the dashboard's stylesheet starts with), the session cookie a
browser keeps, and where a sign-in may send the browser next."""

from __future__ import annotations

import functools
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

from fastapi import Request
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape

from ketch.core.access import access_of
from ketch.tenancy.authn import SESSION_COOKIE
from ketch.tenancy.users import SESSION_HOURS, Directory

#: where a sign-in goes when it was given nowhere (or nowhere it may go)
HOME = "/auth/account"
#: the pages are served with these: never cached, never framed (clickjacking), no
#: script, forms post to this server only
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; connect-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
}


@functools.cache
def _templates() -> Environment:
    return Environment(
        loader=PackageLoader("ketch.tenancy", "templates"),
        autoescape=select_autoescape(["html"]),
    )


@functools.cache
def look_css() -> str:
    """Ketch's look (``templates/look.css``: colours, type, buttons, errors and notes):
    inlined in the sign-in pages and the start of the dashboard's stylesheet, so both
    look alike from one source."""
    return resources.files("ketch.tenancy").joinpath("templates", "look.css").read_text("utf-8")


def render(name: str, status: int = 200, **values: Any) -> HTMLResponse:
    """The page ``name`` (a template of ``ketch/tenancy/templates``)."""
    html = _templates().get_template(name).render(**values)
    return HTMLResponse(html, status_code=status, headers=PAGE_HEADERS)


def directory_of(request: Request) -> Directory | None:
    access = access_of(request)
    found = access.extra.get("directory") if access is not None else None
    return found if isinstance(found, Directory) else None


def is_secure(request: Request) -> bool:
    return request.url.scheme == "https"


def safe_next(value: object, default: str = HOME) -> str:
    """``value`` when it is a path on this server (``/...``), else ``default``: a
    sign-in never sends the browser to another site (no scheme, no host, no ``//``
    or ``/\\`` that a browser reads as one, no control characters)."""
    if not isinstance(value, str) or not value or len(value) > 2048:
        return default
    if not value.startswith("/") or value.startswith(("//", "/\\")):
        return default
    if "\\" in value or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        return default
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return default
    return value


def set_session(request: Request, response: Response, secret: str) -> None:
    """The session cookie: HttpOnly (no script reads it), SameSite=Lax (not sent with
    another site's writes), the whole server's path, Secure under TLS."""
    response.set_cookie(
        SESSION_COOKIE,
        secret,
        max_age=SESSION_HOURS * 3600,
        path="/",
        httponly=True,
        samesite="lax",
        secure=is_secure(request),
    )


def clear_session(request: Request, response: Response) -> None:
    response.delete_cookie(
        SESSION_COOKIE, path="/", httponly=True, samesite="lax", secure=is_secure(request)
    )
