"""Built-in OpenID Connect sign-in: the authorization code flow with PKCE (S256).

Configured from the environment (``ketch up --oidc-issuer/--oidc-client-id/
--oidc-client-secret-file`` set it): :data:`ISSUER_ENV`, :data:`CLIENT_ID_ENV`,
:data:`CLIENT_SECRET_ENV` (or :data:`CLIENT_SECRET_FILE_ENV`), and optionally
:data:`NAME_ENV` (the button's "Sign in with ...") and :data:`REDIRECT_URI_ENV` (the
callback's URL when a proxy in front of Ketch changes it).

- ``GET /auth/oidc/login`` sends the browser to the provider with a new ``state``,
  ``nonce`` and PKCE challenge; the state, nonce, verifier and where to go next are kept
  in a short-lived cookie signed with the store's key (HttpOnly, SameSite=Lax, path
  ``/auth/oidc``), so the callback accepts only the flow this browser started.
- ``GET /auth/oidc/callback`` checks the state, trades the code (and verifier) for
  tokens at the provider's token endpoint, and checks the ID token: its signature with
  the provider's JWKS, ``iss``, ``aud`` (and ``azp``), ``exp``, ``iat`` and ``nonce``.
  Its ``email`` claim names the Ketch user: one who exists, or a new one when
  self-registration is on (``--registration-flow``); then a Ketch session starts as a
  password sign-in's does. Tokens are never logged nor kept.

The provider's discovery document and keys are fetched with ``authlib``'s HTTP client
(``pip install 'ketch[oidc]'``) and kept for :data:`METADATA_TTL` seconds.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import logging
import os
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from ketch.core.access import PUBLIC, access_of, rule
from ketch.core.errors import InvalidSpec, KetchError
from ketch.tenancy.authn import SESSION_COOKIE
from ketch.tenancy.pages import (
    HOME,
    directory_of,
    is_secure,
    render,
    safe_next,
    set_session,
)
from ketch.tenancy.profiles import ensure_default_profile
from ketch.tenancy.users import Directory, User

log = logging.getLogger(__name__)

ISSUER_ENV = "KETCH_OIDC_ISSUER"
CLIENT_ID_ENV = "KETCH_OIDC_CLIENT_ID"
CLIENT_SECRET_ENV = "KETCH_OIDC_CLIENT_SECRET"
CLIENT_SECRET_FILE_ENV = "KETCH_OIDC_CLIENT_SECRET_FILE"
NAME_ENV = "KETCH_OIDC_NAME"
REDIRECT_URI_ENV = "KETCH_OIDC_REDIRECT_URI"

#: how the errors name each setting: the option of ``ketch up`` and its variable
_ISSUER = f"--oidc-issuer ({ISSUER_ENV})"
_CLIENT_ID = f"--oidc-client-id ({CLIENT_ID_ENV})"
_SECRET_FILE = f"--oidc-client-secret-file ({CLIENT_SECRET_FILE_ENV})"

CALLBACK = "/auth/oidc/callback"
FLOW_COOKIE = "ketch_oidc"
#: seconds a started sign-in may take at the provider
FLOW_SECONDS = 600
#: seconds the provider's discovery document and keys are kept
METADATA_TTL = 300.0
#: seconds of clock difference allowed with the provider on exp/iat
LEEWAY = 60
SCOPE = "openid email profile"
_ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"]

router = APIRouter(tags=["auth"])


class SignInFailed(KetchError):
    """An OIDC sign-in did not succeed; the page says why (never a token)."""

    http_status = 400


@dataclass(frozen=True)
class OidcSettings:
    issuer: str
    client_id: str
    client_secret: str = field(default="", repr=False)
    name: str = "OpenID Connect"
    redirect_uri: str = ""


def _is_loopback_url(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def settings(environ: Mapping[str, str] | None = None) -> OidcSettings | None:
    """The OIDC settings of this process (``None``: OIDC sign-in is off). Raises
    :class:`InvalidSpec` naming the variable that is wrong."""
    env = os.environ if environ is None else environ
    issuer = env.get(ISSUER_ENV, "").strip().rstrip("/")
    if not issuer:
        return None
    parts = urlsplit(issuer)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise InvalidSpec(f"{issuer!r} is not an https:// URL", field=_ISSUER)
    if parts.scheme == "http" and not _is_loopback_url(issuer):
        raise InvalidSpec(
            f"the OIDC issuer {issuer!r} must be https:// (plain http only on loopback)",
            field=_ISSUER,
        )
    client_id = env.get(CLIENT_ID_ENV, "").strip()
    if not client_id:
        raise InvalidSpec(
            "an OIDC issuer is set but no client id: give Ketch's client id at the provider",
            field=_CLIENT_ID,
        )
    secret = env.get(CLIENT_SECRET_ENV, "")
    secret_file = env.get(CLIENT_SECRET_FILE_ENV, "").strip()
    if secret_file and not secret:
        try:
            with open(secret_file, encoding="utf-8") as f:
                secret = f.read()
        except OSError as exc:
            raise InvalidSpec(
                f"cannot read the OIDC client secret from {secret_file}: {exc.strerror}",
                field=_SECRET_FILE,
            ) from None
    name = env.get(NAME_ENV, "").strip() or parts.hostname or "OpenID Connect"
    return OidcSettings(
        issuer=issuer,
        client_id=client_id,
        client_secret=secret.strip(),
        name=name,
        redirect_uri=env.get(REDIRECT_URI_ENV, "").strip(),
    )


# -- the provider's metadata and keys ----------------------------------------------

_CACHE: dict[str, tuple[float, dict[str, Any]]] = {}


def _client(s: OidcSettings, redirect_uri: str = "") -> Any:
    try:
        from authlib.integrations.httpx_client import AsyncOAuth2Client  # type: ignore[import-untyped]
    except ImportError:
        raise SignInFailed(
            "OIDC sign-in needs authlib on the server: pip install 'ketch[oidc]'"
        ) from None
    return AsyncOAuth2Client(
        client_id=s.client_id,
        client_secret=s.client_secret or None,
        token_endpoint_auth_method="client_secret_basic" if s.client_secret else "none",
        scope=SCOPE,
        redirect_uri=redirect_uri or None,
        code_challenge_method="S256",
        timeout=15.0,
    )


async def _get_json(url: str, *, fresh: bool = False) -> dict[str, Any]:
    now = time.monotonic()
    kept = _CACHE.get(url)
    if kept is not None and not fresh and now - kept[0] < METADATA_TTL:
        return kept[1]
    import httpx

    try:
        async with httpx.AsyncClient(timeout=15.0) as http:
            response = await http.get(url, headers={"accept": "application/json"})
        response.raise_for_status()
        found = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise SignInFailed(f"the OIDC provider could not be read at {url}: {exc}") from None
    if not isinstance(found, dict):
        raise SignInFailed(f"the OIDC provider's {url} is not a JSON object")
    _CACHE[url] = (now, found)
    return found


async def metadata(s: OidcSettings) -> dict[str, Any]:
    """The provider's discovery document (its ``issuer`` must be the one configured)."""
    found = await _get_json(f"{s.issuer}/.well-known/openid-configuration")
    if str(found.get("issuer", "")).rstrip("/") != s.issuer:
        raise SignInFailed(
            f"the OIDC provider says its issuer is {found.get('issuer')!r}, not {s.issuer!r}"
        )
    for key in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
        if not isinstance(found.get(key), str):
            raise SignInFailed(f"the OIDC provider's discovery document has no {key}")
    return found


# -- the flow's cookie -------------------------------------------------------------


def _flow_key(directory: Directory) -> bytes:
    return hmac.new(directory.key(), b"ketch oidc flow", hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def seal(key: bytes, values: dict[str, Any]) -> str:
    body = _b64(json.dumps(values, separators=(",", ":")).encode())
    mac = _b64(hmac.new(key, body.encode(), hashlib.sha256).digest())
    return f"{body}.{mac}"


def unseal(key: bytes, value: str) -> dict[str, Any] | None:
    """The values of a :func:`seal` made with ``key`` that has not expired."""
    body, _, mac = value.partition(".")
    expected = _b64(hmac.new(key, body.encode(), hashlib.sha256).digest())
    if not mac or not hmac.compare_digest(mac, expected):
        return None
    try:
        found = json.loads(_unb64(body))
    except ValueError:
        return None
    if not isinstance(found, dict) or float(found.get("exp", 0)) < time.time():
        return None
    return found


def _redirect_uri(request: Request, s: OidcSettings) -> str:
    return s.redirect_uri or str(request.url_for("oidc_callback"))


def _settings_or_fail() -> OidcSettings:
    try:
        found = settings()
    except InvalidSpec as exc:
        raise SignInFailed(f"OIDC sign-in is misconfigured: {exc}") from None
    if found is None:
        raise SignInFailed(f"OIDC sign-in is not configured on this server ({ISSUER_ENV})")
    return found


def _failed(message: str, next_path: str = HOME) -> Response:
    response = render("login.html", 400, error=message, next=next_path, passwords=True)
    response.delete_cookie(FLOW_COOKIE, path="/auth/oidc")
    return response


@router.get("/auth/oidc/login", summary="Sign in with the OIDC provider", include_in_schema=False)
@rule(PUBLIC)
async def oidc_login(request: Request, next: str = HOME) -> Response:  # noqa: A002
    next_path = safe_next(next)
    directory = directory_of(request)
    try:
        s = _settings_or_fail()
        if directory is None:
            raise SignInFailed("this server has no users; nothing to sign in to")
        meta = await metadata(s)
        key = await run_in_threadpool(_flow_key, directory)
    except SignInFailed as exc:
        return _failed(str(exc), next_path)
    state, nonce, verifier = (secrets.token_urlsafe(n) for n in (24, 24, 48))
    async with _client(s, _redirect_uri(request, s)) as client:
        url, _ = client.create_authorization_url(
            meta["authorization_endpoint"], state=state, code_verifier=verifier, nonce=nonce
        )
    flow = {
        "s": state,
        "n": nonce,
        "v": verifier,
        "r": next_path,
        "exp": time.time() + FLOW_SECONDS,
    }
    response = RedirectResponse(url, status_code=303)
    response.set_cookie(
        FLOW_COOKIE,
        seal(key, flow),
        max_age=FLOW_SECONDS,
        path="/auth/oidc",
        httponly=True,
        samesite="lax",
        secure=is_secure(request),
    )
    return response


@router.get(CALLBACK, name="oidc_callback", summary="The OIDC provider's redirect back")
@rule(PUBLIC)
async def oidc_callback(request: Request) -> Response:
    directory = directory_of(request)
    query = request.query_params
    try:
        s = _settings_or_fail()
        if directory is None:
            raise SignInFailed("this server has no users; nothing to sign in to")
        key = await run_in_threadpool(_flow_key, directory)
        flow = unseal(key, request.cookies.get(FLOW_COOKIE, ""))
        if flow is None or not hmac.compare_digest(str(flow.get("s", "")), query.get("state", "")):
            raise SignInFailed(
                "this sign-in expired or was not started in this browser: sign in again"
            )
        next_path = safe_next(flow.get("r"))
        if query.get("error"):
            detail = query.get("error_description") or query["error"]
            raise SignInFailed(f"{s.name} did not sign you in: {detail[:200]}")
        code = query.get("code", "")
        if not code:
            raise SignInFailed(f"{s.name} sent no authorization code back")
        claims = await _exchange(s, code, str(flow["v"]), str(flow["n"]), request)
        user = await run_in_threadpool(_user_for, request, directory, claims, s)
        secret, _csrf = await run_in_threadpool(directory.start_session, user)
    except SignInFailed as exc:
        return _failed(str(exc))
    response = RedirectResponse(next_path, status_code=303)
    old = request.cookies.get(SESSION_COOKIE)
    if old:
        await run_in_threadpool(directory.end_session, old)
    set_session(request, response, secret)
    response.delete_cookie(FLOW_COOKIE, path="/auth/oidc")
    log.info("signed in %s with OIDC (%s)", user.email, s.issuer)
    return response


async def _exchange(
    s: OidcSettings, code: str, verifier: str, nonce: str, request: Request
) -> dict[str, Any]:
    """The checked claims of the ID token the code is traded for."""
    meta = await metadata(s)
    try:
        from authlib.integrations.base_client import OAuthError  # type: ignore[import-untyped]
    except ImportError:
        raise SignInFailed("OIDC sign-in needs authlib: pip install 'ketch[oidc]'") from None
    import httpx

    try:
        async with _client(s, _redirect_uri(request, s)) as client:
            token = await client.fetch_token(
                meta["token_endpoint"],
                grant_type="authorization_code",
                code=code,
                code_verifier=verifier,
            )
    except OAuthError as exc:  # the provider's error code, never the token
        raise SignInFailed(f"{s.name} refused the sign-in: {exc.error}") from None
    except (httpx.HTTPError, ValueError) as exc:
        raise SignInFailed(f"{s.name}'s token endpoint could not be used: {exc}") from None
    id_token = token.get("id_token") if isinstance(token, Mapping) else None
    if not isinstance(id_token, str):
        raise SignInFailed(f"{s.name} sent no ID token (is the scope openid allowed?)")
    return await verify_id_token(s, meta, id_token, nonce)


async def verify_id_token(
    s: OidcSettings, meta: Mapping[str, Any], id_token: str, nonce: str
) -> dict[str, Any]:
    """The claims of ``id_token`` once its signature (the provider's JWKS), issuer,
    audience, authorized party, expiry and nonce hold."""
    try:
        from joserfc import jwt
        from joserfc.errors import InvalidKeyIdError, JoseError
        from joserfc.jwk import KeySet
    except ImportError:
        raise SignInFailed("OIDC sign-in needs joserfc: pip install 'ketch[oidc]'") from None

    jwks_uri = str(meta["jwks_uri"])
    for fresh in (False, True):  # a key the provider rolled in: fetch its keys again
        keys = KeySet.import_key_set(await _get_json(jwks_uri, fresh=fresh))  # type: ignore[arg-type]
        try:
            decoded = jwt.decode(id_token, keys, algorithms=_ALGORITHMS)
            break
        except InvalidKeyIdError:  # no key of the set has the token's kid
            if fresh:
                raise SignInFailed(f"{s.name}'s ID token is signed with an unknown key") from None
        except JoseError as exc:
            raise SignInFailed(f"{s.name}'s ID token does not verify: {exc}") from None
    registry = jwt.JWTClaimsRegistry(
        leeway=LEEWAY,
        iss={"essential": True, "value": s.issuer},
        aud={"essential": True, "value": s.client_id},
        exp={"essential": True},
        iat={"essential": True},
        sub={"essential": True},
        nonce={"essential": True, "value": nonce},
    )
    claims = dict(decoded.claims)
    try:
        registry.validate(claims)
    except JoseError as exc:
        raise SignInFailed(f"{s.name}'s ID token is not for this sign-in: {exc}") from None
    audience = claims["aud"]
    if isinstance(audience, list) and len(audience) > 1 and claims.get("azp") != s.client_id:
        raise SignInFailed(f"{s.name}'s ID token was issued to another party (azp)")
    return claims


def _user_for(
    request: Request, directory: Directory, claims: Mapping[str, Any], s: OidcSettings
) -> User:
    """The Ketch user the claims name: by email; made when registration is on."""
    email = claims.get("email")
    if not isinstance(email, str) or "@" not in email:
        raise SignInFailed(f"{s.name} sent no email for you (is the scope email allowed?)")
    if claims.get("email_verified") is False:
        raise SignInFailed(f"{s.name} has not verified the email {email}")
    email = email.strip().lower()
    found = directory.get(email)
    if found is not None:
        return found
    access = access_of(request)
    if access is None or not access.extra.get("registration"):
        raise SignInFailed(
            f"no Ketch user has the email {email}: ask an admin to add it (ketch users add {email})"
        )
    try:
        made = directory.add(email)
    except KetchError:  # another sign-in made it first, or the email is refused
        found = directory.get(email)
        if found is None:
            raise SignInFailed(f"{email} cannot be a Ketch user") from None
        return found
    ensure_default_profile(request.app.state.api.store, email)
    return made
