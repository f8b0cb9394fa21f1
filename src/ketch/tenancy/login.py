"""Browser sign-in: ``GET /auth/login`` shows a form (email and password, and a
"Sign in with ..." button when OIDC is configured), ``POST /auth/login`` checks it and
starts a session (the ``ketch_session`` cookie, then a 303 to ``next``),
``POST /auth/logout`` ends it, ``GET /auth/session`` gives a signed-in page its user
and the CSRF token its writes send (``x-csrf-token``), ``GET /auth/account`` is the
page a sign-in lands on.

The form is a plain HTML form post (``application/x-www-form-urlencoded``), which the
server's request guard takes on the paths the tenancy capability declares only, and there only with the
``Origin`` of this server, so another site cannot sign a browser in or out.
"""

from __future__ import annotations

import hmac
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from ketch.core.access import AUTHENTICATED, CSRF_HEADER, PUBLIC, access_of, identity_of, rule
from ketch.core.errors import Forbidden, InvalidSpec, Unauthorized
from ketch.tenancy import oidc
from ketch.tenancy.authn import SESSION_COOKIE
from ketch.tenancy.pages import (
    HOME,
    clear_session,
    directory_of,
    render,
    safe_next,
    set_session,
)
from ketch.tenancy.users import WINDOW

WRONG = "Wrong email or password."
LIMITED = (
    "Too many failed sign-ins for this account or address: "
    f"try again in {int(WINDOW.total_seconds() // 60)} minutes."
)

router = APIRouter(tags=["auth"])


def _login_page(
    request: Request, next_path: str, *, error: str = "", email: str = "", status: int = 200
) -> Response:
    identity = identity_of(request)
    try:
        settings = oidc.settings()
    except InvalidSpec as exc:  # shown on the page, which still takes passwords
        settings = None
        error = error or f"OIDC sign-in is misconfigured on this server: {exc}"
    return render(
        "login.html",
        status,
        next=next_path,
        error=error,
        email=email,
        passwords=directory_of(request) is not None,
        provider=settings.name if settings is not None else "",
        signed_in=identity.name if identity.via == "session" else "",
    )


@router.get("/auth/login", summary="The sign-in page", include_in_schema=False)
@rule(PUBLIC)
async def login_page(request: Request, next: str = HOME) -> Response:  # noqa: A002
    return _login_page(request, safe_next(next))


@router.post("/auth/login", summary="Sign in with an email and password (a form post)")
@rule(PUBLIC)
async def login(request: Request) -> Response:
    form = await request.form(max_files=0, max_fields=8)
    email = str(form.get("email") or "").strip()[:254]
    password = str(form.get("password") or "")[:1024]
    next_path = safe_next(form.get("next"))
    directory = directory_of(request)
    if directory is None or not email or not password:
        error = "Enter your email and password." if directory else "This server has no users."
        return _login_page(request, next_path, error=error, email=email, status=400)
    client = request.client.host if request.client else None
    old = request.cookies.get(SESSION_COOKIE)

    def sign_in() -> str:
        user = directory.sign_in(email, password, client)
        if old:
            directory.end_session(old)
        secret, _csrf = directory.start_session(user)
        return secret

    try:
        secret = await run_in_threadpool(sign_in)
    except Unauthorized as exc:
        # the directory says "too many failed sign-ins" once an account or address is
        # limited; anything else is a wrong email or password (never which of the two)
        limited = str(exc).startswith("too many")
        return _login_page(
            request,
            next_path,
            error=LIMITED if limited else WRONG,
            email=email,
            status=429 if limited else 401,
        )
    response = RedirectResponse(next_path, status_code=303)
    set_session(request, response, secret)
    return response


@router.post("/auth/logout", summary="End the browser's session")
@rule(PUBLIC)
async def logout(request: Request) -> Response:
    """Ends the session of the cookie sent. It must send the session's CSRF token, in
    ``x-csrf-token`` (a page's script) or the ``csrf`` field (the sign-out form)."""
    directory = directory_of(request)
    secret = request.cookies.get(SESSION_COOKIE)
    is_form = request.headers.get("content-type", "").startswith(
        "application/x-www-form-urlencoded"
    )
    given = request.headers.get(CSRF_HEADER, "")
    if is_form and not given:
        form = await request.form(max_files=0, max_fields=8)
        given = str(form.get("csrf") or "")
    if directory is not None and secret:
        found = await run_in_threadpool(directory.session_user, secret)
        if found is not None:
            if not given or not hmac.compare_digest(given.encode(), found[1].encode()):
                raise Forbidden(
                    f"signing out must send the session's CSRF token ({CSRF_HEADER} or "
                    "the sign-out form's csrf field)"
                )
            await run_in_threadpool(directory.end_session, secret)
    response: Response = (
        RedirectResponse("/auth/login", status_code=303)
        if is_form
        else JSONResponse({"signedOut": True})
    )
    clear_session(request, response)
    return response


@router.get("/auth/session", summary="The signed-in user and the CSRF token of their writes")
@rule(AUTHENTICATED)
async def session(request: Request) -> dict[str, Any]:
    identity = identity_of(request)
    return {"user": identity.name, "via": identity.via, "csrf": identity.csrf}


@router.get("/auth/account", summary="The signed-in user's page", include_in_schema=False)
@rule(AUTHENTICATED)
async def account(request: Request) -> Response:
    identity = identity_of(request)
    access = access_of(request)
    profiles: dict[str, Any] = {}
    profiles_of = getattr(access.authorizer, "profiles_of", None) if access else None
    if profiles_of is not None and identity.via != "local":
        profiles = await run_in_threadpool(profiles_of, identity)
    return render(
        "account.html",
        user=identity.name,
        admin=identity.admin,
        profiles=profiles,
        csrf=identity.csrf,
    )
