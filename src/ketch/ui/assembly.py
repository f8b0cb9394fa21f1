"""The dashboard on the API server's app: :func:`create_app` is the app ``ketch up``
serves (every capability, :func:`ketch.capabilities.create_app`, with the dashboard at
``/`` on the same origin, under the same sign-in and access checks), and :func:`mount`
adds the dashboard to an app made otherwise.

Adding pages: a module of ``ketch/ui`` with an ``APIRouter`` whose routes each declare
their rule (:mod:`ketch.ui.access`) and read through the API as the caller
(:class:`ketch.ui.page.Page`), listed in :data:`ROUTERS`; a navigation entry in
:mod:`ketch.ui.nav`; the routes' probes in the isolation matrix
(``tests/tenancy/matrix_ui.py``); a browser test in ``tests/ui``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from fastapi import Request
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from ketch.core.errors import KetchError
from ketch.ui import (
    assets,
    home,
    katib,
    kfp,
    models,
    notebooks,
    pipelines,
    profiles,
    resources,
    rundetail,
    runforms,
    runs,
    serving,
    training,
    workloads,
)
from ketch.ui.page import is_htmx, problem_html
from ketch.ui.problems import error_page

if TYPE_CHECKING:
    from fastapi import FastAPI

#: the dashboard's routers, in the order they are matched
ROUTERS = (
    assets.router,
    home.router,
    runs.router,
    runforms.router,
    pipelines.router,
    kfp.router,
    models.router,
    notebooks.router,
    profiles.router,
    resources.router,
    katib.router,
    serving.router,
    training.router,
    workloads.router,
    # after every router with a /ui/runs/<word> page (a run's page takes any id)
    rundetail.router,
)

Handler = Callable[[Request, Any], Awaitable[Response] | Response]


def create_app(**options: Any) -> FastAPI:
    """Every capability's API (:func:`ketch.capabilities.create_app`, with ``options``)
    and the dashboard."""
    from ketch.capabilities import create_app as api_app

    app = api_app(**options)
    mount(app)
    return app


def is_page(request: Request) -> bool:
    """Whether ``request`` is for one of the dashboard's pages (or a fragment of one)."""
    path = request.url.path
    return path == "/" or path.startswith("/ui/")


def mount(app: FastAPI) -> None:
    """Add the dashboard's routes to ``app``, and answer their errors as pages."""
    for router in ROUTERS:
        app.include_router(router)
    for error in (KetchError, StarletteHTTPException):
        app.add_exception_handler(error, _as_page(app.exception_handlers.get(error)))


def _as_page(api_handler: Handler | None) -> Handler:
    """An error handler answering the dashboard's requests with a page (a fragment for
    htmx) and every other request as the API's handler does."""

    async def handle(request: Request, exc: Any) -> Response:
        if is_page(request) or api_handler is None:
            if isinstance(exc, KetchError):
                status, message = exc.http_status, str(exc)
            else:  # Starlette's: a path no route serves, a method it does not take
                status, message = int(exc.status_code), str(exc.detail or exc)
            if is_htmx(request):
                return problem_html(status, message)
            return await error_page(request, status, message)
        found = api_handler(request, exc)
        return await found if isinstance(found, Awaitable) else found

    return handle
