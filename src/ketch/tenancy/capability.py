"""The tenancy capability: users, sign-in and the audit log (its tables and the
``/auth`` routes); Kubeflow's ``Profile`` (kubeflow.org/v1, cluster-scoped), its
controller and the source that provisions a profile as it is written; and KFAM's API
(``/kfam/v1``). RoleBindings are Kubernetes' own kind: the server serves them
(:mod:`ketch.server.rbac`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from ketch.core.capability import Admission, Capability, Validator
from ketch.core.services import ServiceContext
from ketch.core.sources import Source
from ketch.tenancy.controller import make_controller
from ketch.tenancy.profiles import PROFILE_KIND, ProfileSource
from ketch.tenancy.spec import PROFILE, check_profile
from ketch.tenancy.tables import MIGRATIONS

if TYPE_CHECKING:
    from fastapi import APIRouter


def _auth_routes() -> APIRouter:
    from ketch.tenancy.auth_api import router

    return router


def _kfam_routes() -> APIRouter:
    from ketch.tenancy.kfam import router

    return router


def _validators(_admission: Admission) -> Mapping[str, Validator]:
    # a Profile whose owner, quota or name (its namespace's) is wrong
    return {PROFILE: check_profile}


def _profile_source(context: ServiceContext) -> Source:
    return ProfileSource(context.store)


CAPABILITY = Capability(
    name="tenancy",
    kinds=(PROFILE_KIND,),
    controllers=(make_controller,),
    validators=_validators,
    routers=(_auth_routes, _kfam_routes),
    migrations=MIGRATIONS,
    sources={PROFILE: _profile_source},
    # the sign-in page's form posts (ketch.tenancy.login): the only form posts taken
    forms=("/auth/login", "/auth/logout"),
)
