"""The notebooks capability: Kubeflow's ``Notebook`` run as one server process each
(JupyterLab, or code-server and RStudio where installed), reached through Ketch's
authenticated proxy under ``/notebook/<namespace>/<name>/``, stopped and started with
``kubeflow-resource-stopped`` and culled when idle, as Kubeflow's notebook controller
does."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from ketch.core import config
from ketch.core.capability import Admission, Capability, Validator
from ketch.core.kinds import Kind
from ketch.core.services import ServiceContext
from ketch.core.spec import model_schema
from ketch.notebooks import poddefaults
from ketch.notebooks.controller import controller_factory
from ketch.notebooks.running import upstreams_of
from ketch.notebooks.spec import GROUP, KIND, PLURAL, NotebookSpec, validate
from ketch.notebooks.summary import COLUMNS, table_view

if TYPE_CHECKING:
    from fastapi import APIRouter

KINDS: tuple[Kind, ...] = (
    Kind(
        KIND,
        GROUP,
        ("v1", "v1beta1"),
        PLURAL,
        categories=("all", "kubeflow"),
        spec_schema=model_schema(NotebookSpec),
        columns=COLUMNS,
        table_view=table_view,
    ),
    Kind(
        poddefaults.KIND,
        poddefaults.GROUP,
        (poddefaults.VERSION,),
        poddefaults.PLURAL,
        categories=("kubeflow",),
        spec_schema=model_schema(poddefaults.PodDefaultSpec),
        subresources=(),
    ),
)


def _validators(_admission: Admission) -> Mapping[str, Validator]:
    return {KIND: validate, poddefaults.KIND: poddefaults.validate_poddefault}


def _routes() -> APIRouter:
    from ketch.notebooks.api import router

    return router


def _webapp_routes() -> APIRouter:
    from ketch.notebooks.webapp import make_router

    return make_router()


def _finalize(context: ServiceContext, namespace: str) -> bool:
    """A deleted namespace's notebook folders and volumes go, once its servers stopped."""
    if upstreams_of(context.database).in_namespace(namespace):
        return False
    from ketch.notebooks.workspace import remove_namespace

    remove_namespace(config.ketch_home(), namespace)
    return True


CAPABILITY = Capability(
    name="notebooks",
    kinds=KINDS,
    controllers=(controller_factory,),
    validators=_validators,
    routers=(_routes, _webapp_routes),
    # JupyterLab's own scripts write through the proxy with the page's Origin
    page_writes=("/notebook/",),
    namespace_finalizers=(_finalize,),
)
