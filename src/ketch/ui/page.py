"""What every dashboard page has: the caller, the API as the caller, the namespace it
shows (chosen in the page's selector, kept in the URL's ``ns`` and remembered in a
cookie), the navigation, and the rendering of its template with the headers every page
is served with.

A page route opens a :class:`Page`, sends the browser on when the page needs a
namespace and was given none (:meth:`Page.needs_namespace`), reads through
:attr:`Page.api`, and answers :meth:`Page.render`::

    @router.get("/ui/things")
    @rule(in_namespace(lambda ns: Attributes("list", GROUP, "things", ns)))
    async def things(request: Request) -> Response:
        async with Page(request, section="Things") as page:
            if (moved := page.needs_namespace()) is not None:
                return moved
            found = await page.api.get(f"/apis/{GROUP}/v1/namespaces/{page.namespace}/things")
            return page.render("things.html", title="Things", things=found["items"])
"""

from __future__ import annotations

import functools
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape

from ketch.core.access import LOCAL, access_of, identity_of
from ketch.core.resource import DEFAULT_NAMESPACE
from ketch.ui import assets, formats
from ketch.ui.access import NS, namespace_in
from ketch.ui.api import Api
from ketch.ui.nav import nav_of

#: the cookie that remembers the namespace last chosen
NS_COOKIE = "ketch_ns"
#: every page is served with these: never cached, never framed, scripts and styles
#: from this server only (the page's data for charts is JSON in the page, not script)
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; object-src 'none'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
}


@functools.cache
def environment() -> Environment:
    made = Environment(
        loader=PackageLoader("ketch.ui", "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    made.globals["asset"] = assets.url
    made.filters.update(formats.FILTERS)
    return made


def render_html(template: str, code: int = 200, /, **values: Any) -> HTMLResponse:
    """The template ``template`` rendered with ``values``, served as a page with the
    status ``code``."""
    html = environment().get_template(template).render(**values)
    return HTMLResponse(html, status_code=code, headers=PAGE_HEADERS)


def send_to(request: Request, target: str) -> Response:
    """Send the browser to ``target``: htmx follows ``HX-Redirect``; anything else a 303."""
    if is_htmx(request):
        return Response(status_code=200, headers={"HX-Redirect": target})
    return Response(status_code=303, headers={"Location": target})


def problem_html(status: int, message: str) -> HTMLResponse:
    """The fragment an htmx action gets when it is refused: ``message`` with the
    ``status`` the API answered."""
    return render_html("problem.html", status, message=message, status=status)


def is_htmx(request: Request) -> bool:
    """Whether htmx asked (a fragment of a page is answered, not a whole page)."""
    return request.headers.get("hx-request") == "true"


class Page:
    """One page being served (see the module's docstring)."""

    def __init__(
        self,
        request: Request,
        *,
        section: str = "",
        namespaced: bool = True,
        refused: bool = False,
    ) -> None:
        self.request = request
        self.section = section
        self.namespaced = namespaced
        self.identity = identity_of(request)
        self.api = Api(request)
        self.namespaces: list[str] = []
        self.namespace: str = ""
        # a page answering a refusal shows the caller's own namespaces, never the one
        # the refused URL named
        self._given = None if refused else namespace_in(dict(request.query_params))

    async def __aenter__(self) -> Page:
        listed = await self.api.call("GET", "/api/v1/namespaces")
        if listed.ok:
            self.namespaces = sorted(
                str(item["metadata"]["name"]) for item in listed.body.get("items") or []
            )
        given = self._given
        if given is not None and (self.namespaced or given in self.namespaces):
            self.show_namespace(given)  # named in the URL: the page's rule allowed it
        else:
            self.namespace = self._default()
        return self

    def show_namespace(self, namespace: str) -> None:
        """Show ``namespace`` (one the page's rule allowed: a run's own)."""
        self.namespace = namespace
        if namespace not in self.namespaces:
            self.namespaces = sorted({*self.namespaces, namespace})

    async def __aexit__(self, *_exc: object) -> None:
        await self.api.close()

    def _default(self) -> str:
        """The namespace shown when the URL names none: the one chosen last, else the
        caller's own profile, else ``default``, else the first they may see."""
        visible = self.namespaces
        remembered = self.request.cookies.get(NS_COOKIE, "")
        if remembered in visible:
            return remembered
        access = access_of(self.request)
        if access is not None and self.identity.via != LOCAL.via:
            home = access.authorizer.home(self.identity)
            if home:
                return home
        if DEFAULT_NAMESPACE in visible or not visible:
            return DEFAULT_NAMESPACE
        return visible[0]

    def needs_namespace(self) -> Response | None:
        """A redirect to this page in the namespace chosen, when the page shows one and
        its URL names none (its rule checked nothing then); ``None`` otherwise."""
        if self._given is not None or not self.namespaced:
            return None
        query = [(k, v) for k, v in self.request.query_params.multi_items() if k != NS]
        query.append((NS, self.namespace))
        return RedirectResponse(f"{self.request.url.path}?{urlencode(query)}", status_code=303)

    def link(self, path: str, **params: Any) -> str:
        """``path`` in this page's namespace, with ``params``."""
        query = {NS: self.namespace, **{k: v for k, v in params.items() if v not in (None, "")}}
        return f"{path}?{urlencode(query)}"

    def context(self, **values: Any) -> dict[str, Any]:
        """What the base template reads, with ``values``."""
        local = self.identity.via == LOCAL.via
        return {
            "request": self.request,
            "page": self,
            "nav": nav_of(self.section, self.namespace),
            "namespace": self.namespace,
            "namespaces": self.namespaces,
            "here": self.request.url.path,
            "kept": [(k, v) for k, v in self.request.query_params.multi_items() if k != NS],
            "user": "" if local else self.identity.name,
            "single_user": local,
            "csrf": self.identity.csrf,
            "session": self.identity.via == "session",
            **values,
        }

    def render(self, template: str, code: int = 200, /, **values: Any) -> HTMLResponse:
        """The page's template rendered (status ``code``); the namespace it shows is
        remembered."""
        response = render_html(template, code, **self.context(**values))
        chosen = self._given is not None and self._given == self.namespace
        if chosen and self.request.cookies.get(NS_COOKIE) != self.namespace:
            response.set_cookie(
                NS_COOKIE,
                self.namespace,
                max_age=365 * 24 * 3600,
                path="/",
                httponly=True,
                samesite="lax",
                secure=self.request.url.scheme == "https",
            )
        return response
