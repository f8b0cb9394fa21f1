"""The page a dashboard request gets when it fails: the status the API would answer
(401, 403, 404, 422, ...) with its message, in the dashboard's layout."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import Response

from ketch.ui.page import Page

HEADINGS = {
    400: "That request is not right",
    401: "Sign in first",
    403: "Not allowed",
    404: "Not found",
    409: "Conflict",
    422: "Not valid",
}


async def error_page(request: Request, status: int, message: str) -> Response:
    """The error page for ``status`` and ``message``."""
    async with Page(request, namespaced=False, refused=True) as page:
        return page.render(
            "error.html",
            status,
            title=HEADINGS.get(status, "Something went wrong"),
            heading=HEADINGS.get(status, "Something went wrong"),
            message=message,
        )
