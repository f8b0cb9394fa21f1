"""The tenancy capability: users, sign-in and the audit log (its tables and the
``/auth`` routes); Profiles, RoleBindings and KFAM join it."""

from __future__ import annotations

from fastapi import APIRouter

from ketch.core.capability import Capability
from ketch.tenancy.tables import MIGRATIONS


def _auth_routes() -> APIRouter:
    from ketch.tenancy.auth_api import router

    return router


CAPABILITY = Capability(
    name="tenancy",
    routers=(_auth_routes,),
    migrations=MIGRATIONS,
)
