"""The dashboard's static files: vendored htmx and ECharts (``static/``, see
``static/VENDORED.md``), and Ketch's own script and stylesheet (the stylesheet starts
with the sign-in pages' look, :func:`ketch.tenancy.pages.look_css`, so both look alike
from one source).

Each file is served at ``/ui/static/<digest>/<name>``, where the digest is a hash of its
content: a page names the current one, so the file may be cached for a year and is
never stale (a digest that is not the current one is a 404). Each is compressed with
gzip once, on first use, and sent compressed to a browser that accepts it.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
from dataclasses import dataclass
from importlib import resources

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ketch.core.access import AUTHENTICATED, rule
from ketch.core.errors import NotFound
from ketch.tenancy.pages import look_css

PREFIX = "/ui/static"
HTMX = "htmx-2.0.11.min.js"
ECHARTS = "echarts-5.6.0.min.js"
SCRIPT = "ketch.js"
KFP_LINKS = "kfp-links.js"
STYLE = "ketch.css"
#: the live charts of the Katib, Training and Serving pages
WORKLOADS = "workloads.js"
RUN_GRAPH = "rundetail.js"
#: every file served, by name (their license files stay in the package, beside them)
FILES = (HTMX, ECHARTS, SCRIPT, KFP_LINKS, STYLE, RUN_GRAPH, WORKLOADS)
_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
CACHE_FOREVER = "public, max-age=31536000, immutable"

router = APIRouter(include_in_schema=False)


@dataclass(frozen=True)
class Asset:
    name: str
    body: bytes
    digest: str

    @property
    def url(self) -> str:
        return f"{PREFIX}/{self.digest}/{self.name}"

    @property
    def media_type(self) -> str:
        return _TYPES[self.name[self.name.rindex(".") :]]

    @functools.cached_property
    def compressed(self) -> bytes:
        return gzip.compress(self.body, compresslevel=9, mtime=0)


def _read(name: str) -> bytes:
    body = resources.files("ketch.ui").joinpath("static", name).read_bytes()
    if name == STYLE:  # the shared look first, then the dashboard's own rules
        body = look_css().encode() + b"\n" + body
    return body


@functools.cache
def asset(name: str) -> Asset:
    """The file ``name`` (one of :data:`FILES`), read once."""
    if name not in FILES:
        raise NotFound(f"no static file {name!r}")
    body = _read(name)
    return Asset(name, body, hashlib.sha256(body).hexdigest()[:16])


def url(name: str) -> str:
    """Where a page finds the file ``name``."""
    return asset(name).url


@router.get(PREFIX + "/{digest}/{name}")
@rule(AUTHENTICATED)
async def static_file(request: Request, digest: str, name: str) -> Response:
    """A static file (for anyone signed in: only the dashboard's pages load them)."""
    found = asset(name) if name in FILES else None
    if found is None or digest != found.digest:
        raise NotFound(f"no static file {name!r} at version {digest!r}")
    headers = {
        "Cache-Control": CACHE_FOREVER,
        "ETag": f'"{found.digest}"',
        "Vary": "Accept-Encoding",
        "X-Content-Type-Options": "nosniff",
    }
    if request.headers.get("if-none-match") == headers["ETag"]:
        return Response(status_code=304, headers=headers)
    if "gzip" in request.headers.get("accept-encoding", ""):
        headers["Content-Encoding"] = "gzip"
        return Response(found.compressed, media_type=found.media_type, headers=headers)
    return Response(found.body, media_type=found.media_type, headers=headers)
