"""The model registry capability: Kubeflow's Model Registry REST API over its own
tables (:mod:`ketch.registry.api`), lineage from registered artifacts to what made
them, and the controller that resolves ``model-registry://`` storage URIs of
InferenceServices and keeps the registry's inference services in step with them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ketch.core.capability import Capability
from ketch.core.services import Service, ServiceContext
from ketch.registry.controller import make_controller
from ketch.registry.tables import MIGRATIONS

if TYPE_CHECKING:
    from fastapi import APIRouter


def _routes() -> APIRouter:
    from ketch.registry.api import router

    return router


def _service(context: ServiceContext) -> Service:
    from ketch.registry.service import RegistryService

    return RegistryService(context)


def _finalize(context: ServiceContext, namespace: str) -> bool:
    from ketch.registry.store import Registry

    return Registry(context.database).forget_namespace(namespace)


CAPABILITY = Capability(
    name="registry",
    # follows the serving capability's InferenceServices (writes only its own tables)
    controllers=(make_controller,),
    routers=(_routes,),
    migrations=MIGRATIONS,
    services=(_service,),
    # a deleted namespace's models, versions, artifacts, experiments and their records
    namespace_finalizers=(_finalize,),
)
