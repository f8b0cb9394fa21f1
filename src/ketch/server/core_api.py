"""The Kubernetes core group (``/api/v1``) as far as Kubeflow's tools read it:
``namespaces``, ``events`` (and ``events.k8s.io/v1``), ``secrets`` and ``configmaps``.

The server holds this surface itself (it is Kubernetes', not a capability's), but
declares it through the same seam the capabilities use: :func:`core_capability` is a
:class:`~ketch.core.capability.Capability` bringing the kinds, their validators, the
sources that serve them and their routes, which :func:`ketch.server.app.create_app`
adds to the capabilities it is given. Discovery, the OpenAPI documents, Tables and
Status errors then treat these kinds as every other.

Routes: the namespaces' (:mod:`ketch.server.namespaces`) and the events'
(:mod:`ketch.server.events_k8s`) come first; every other core path is the generic
resource routes' (:mod:`ketch.server.resources_api`) at ``/api/{version}/...``
instead of ``/apis/{group}/{version}/...`` (:func:`core_routes`), so secrets and
configmaps are created, read, listed, watched, applied, patched and deleted as any
kind is, from :mod:`ketch.server.configdata`'s source. RBAC's ``RoleBinding``
(:mod:`ketch.server.rbac`), Kubernetes' own too, is declared here as well and served
at ``/apis/rbac.authorization.k8s.io/v1/...`` by the generic routes. ``ResourceQuota``
is served read-only: each profile's ``kf-resource-quota`` with what its namespace uses
(:mod:`ketch.server.resourcequotas`).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import APIRouter
from fastapi.routing import APIRoute
from starlette.convertors import Convertor, register_url_convertor

from ketch.core.capability import Admission, Capability, Validator, kinds_of
from ketch.core.services import ServiceContext
from ketch.core.sources import Source
from ketch.server import configdata, namespaces, rbac, resourcequotas
from ketch.server.events_k8s import EVENT, EVENT_V1, EventSource, check_event

#: The core group's kinds, in the order their names are looked up (``events`` is the
#: core group's Event before ``events.k8s.io``'s), and RBAC's RoleBinding.
CORE_KINDS = (
    namespaces.NAMESPACE,
    EVENT,
    EVENT_V1,
    configdata.SECRET,
    configdata.CONFIG_MAP,
    rbac.ROLE_BINDING_KIND,
    resourcequotas.RESOURCE_QUOTA,
)

CORE_CONVERTOR = "ketchcoregroup"


class CoreGroup(Convertor[str]):
    """A path parameter matching nothing: ``/api{group:...}/v1`` is ``/api/v1`` with
    ``group`` the core group's name, ``""``."""

    regex = ""

    def convert(self, value: str) -> str:
        return ""

    def to_string(self, value: str) -> str:
        return ""


register_url_convertor(CORE_CONVERTOR, CoreGroup())

VERSION_CONVERTOR = "ketchapiversion"


class ApiVersion(Convertor[str]):
    """A Kubernetes API version (``v1``, ``v2beta1``): what ``/api/{version}`` takes, so
    other paths under ``/api/`` (the Model Registry's ``/api/model_registry/...``) are
    not taken for the core group."""

    regex = "v[0-9]+(?:(?:alpha|beta)[0-9]+)?"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor(VERSION_CONVERTOR, ApiVersion())

_GROUP_PREFIX = "/apis/{group}/"


def core_routes() -> APIRouter:
    """The generic resource routes (``/apis/{group}/{version}/...``) again at
    ``/api/{version}/...``, with ``group`` the core group's ``""``."""
    from ketch.server import resources_api

    router = APIRouter()
    for route in resources_api.router.routes:
        if not isinstance(route, APIRoute) or not route.path.startswith(_GROUP_PREFIX):
            continue
        router.add_api_route(
            f"/api{{group:{CORE_CONVERTOR}}}/"
            + route.path[len(_GROUP_PREFIX) :].replace(
                "{version}", f"{{version:{VERSION_CONVERTOR}}}", 1
            ),
            route.endpoint,
            methods=sorted(route.methods or ()),
            response_model=route.response_model,
            status_code=route.status_code,
            tags=list(route.tags),
            summary=route.summary,
            responses=dict(route.responses),
            response_class=route.response_class,
            openapi_extra=route.openapi_extra,
            # the Kubernetes OpenAPI documents (/openapi/v3/api/v1) describe these paths
            include_in_schema=False,
        )
    return router


def _validators(_admission: Admission) -> Mapping[str, Validator]:
    return {
        **configdata.validators(),
        **rbac.validators(),
        "Namespace": namespaces.check_namespace,
        "Event": check_event,
        "ResourceQuota": resourcequotas.refuse_writes,
    }


def core_capability(capabilities: Sequence[Capability]) -> Capability:
    """The core group for an app serving ``capabilities`` (events name the kinds of
    the objects they are about, so their source knows every kind served)."""
    kinds = kinds_of([], *CORE_KINDS, *(k for c in capabilities for k in c.kinds))

    def events(context: ServiceContext) -> Source:
        return EventSource(context.store, kinds)

    def elsewhere(_context: ServiceContext) -> Any:
        return namespaces.ServedElsewhere()

    def quotas(context: ServiceContext) -> Source:
        # the kinds served from elsewhere are counted through sources of their own
        elsewhere = {
            kind: functools.partial(factory, context)
            for capability in capabilities
            for kind, factory in capability.sources.items()
        }
        return resourcequotas.QuotaSource(context.store, kinds, elsewhere)

    return Capability(
        name="core",
        kinds=CORE_KINDS,
        validators=_validators,
        routers=(
            lambda: namespaces.router,
            _events_router,
            core_routes,
        ),
        sources={
            **configdata.sources(),
            **rbac.sources(),
            "Event": events,
            "Namespace": elsewhere,
            "ResourceQuota": quotas,
        },
    )


def _events_router() -> APIRouter:
    from ketch.server import events_k8s

    return events_k8s.router
