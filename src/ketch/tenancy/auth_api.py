"""The sign-in API: ``POST /auth/token`` trades an email and password for a new API
token (what ``ketch login`` calls), ``GET /auth/whoami`` says who the caller is and
the profiles they work in, ``GET /auth/audit`` reads the audit log (cluster admins).
The browser's sign-in pages (:mod:`ketch.tenancy.login`, :mod:`ketch.tenancy.oidc`)
are included in the same router.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from ketch.core.access import (
    AUTHENTICATED,
    PUBLIC,
    Attributes,
    Call,
    Verb,
    access_of,
    identity_of,
    rule,
)
from ketch.core.errors import Forbidden, InvalidSpec
from ketch.tenancy import login, oidc
from ketch.tenancy.audit import AuditTrail
from ketch.tenancy.pages import directory_of
from ketch.tenancy.users import parse_duration

router = APIRouter(tags=["auth"])
router.include_router(login.router)
router.include_router(oidc.router)


class TokenRequest(BaseModel):
    email: str = Field(max_length=254)
    password: str = Field(max_length=1024)
    name: str = Field(default="ketch login", max_length=128)
    expires: str | None = Field(default=None, max_length=32)


@router.post("/auth/token", summary="Trade an email and password for a new API token")
@rule(PUBLIC)
async def create_token(body: TokenRequest, request: Request) -> dict[str, Any]:
    directory = directory_of(request)
    if directory is None:
        raise InvalidSpec("this server has no users; nothing to sign in to")
    expires = parse_duration(body.expires) if body.expires else None
    client = request.client.host if request.client else None

    def issue() -> dict[str, Any]:
        user = directory.sign_in(body.email, body.password, client)
        token, secret = directory.create_token(user.email, name=body.name, expires=expires)
        return {
            "token": secret,
            "user": user.email,
            "expires": token.expires_at.isoformat() if token.expires_at else None,
        }

    return await run_in_threadpool(issue)


@router.get("/auth/whoami", summary="Who the caller is, and the profiles they work in")
@rule(AUTHENTICATED)
async def whoami(request: Request) -> dict[str, Any]:
    identity = identity_of(request)
    access = access_of(request)
    profiles: dict[str, Any] = {}
    profiles_of = getattr(access.authorizer, "profiles_of", None) if access else None
    if profiles_of is not None and identity.via != "local":
        profiles = profiles_of(identity)
    return {
        "user": identity.name,
        "admin": identity.admin,
        "groups": sorted(g for g in identity.groups if not g.startswith("system:")),
        "via": identity.via,
        "profiles": profiles,
    }


def _audit_rule(_call: Call) -> Attributes:
    return Attributes(Verb.LIST, "ketch.dev", "audit")


@router.get("/auth/audit", summary="The audit log, newest first (cluster admins)")
@rule(_audit_rule)
async def audit(
    request: Request, user: str | None = None, namespace: str | None = None, limit: int = 100
) -> dict[str, Any]:
    identity = identity_of(request)
    access = access_of(request)
    trail = access.audit if access is not None else None
    if not identity.admin:
        raise Forbidden("only a cluster admin reads the audit log")
    if not isinstance(trail, AuditTrail):
        return {"items": []}
    found = await run_in_threadpool(trail.entries, user=user, namespace=namespace, limit=limit)
    return {
        "items": [
            {
                "at": e.at.isoformat(),
                "user": e.user,
                "method": e.method,
                "path": e.path,
                "verb": e.verb,
                "resource": e.resource,
                "namespace": e.namespace,
                "name": e.name,
                "code": e.code,
            }
            for e in found
        ]
    }
