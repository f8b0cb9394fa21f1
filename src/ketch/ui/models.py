"""The Model Registry's page: the registered models of a namespace, read through the
registry's REST API as the caller (what the ``model-registry`` client calls); the
rule is the API's own for that list (:mod:`ketch.registry.access`)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ketch.core.access import Verb, rule
from ketch.registry.access import attributes
from ketch.ui.access import in_namespace
from ketch.ui.page import Page

router = APIRouter(include_in_schema=False)
REGISTRY = "/api/model_registry/v1"


@router.get("/ui/models")
@rule(in_namespace(lambda ns: attributes(Verb.LIST, "registered_model", ns)))
async def models_page(request: Request) -> Response:
    async with Page(request, section="Models") as page:
        if (moved := page.needs_namespace()) is not None:
            return moved
        found = await page.api.get(
            f"{REGISTRY}/registered_models",
            namespace=page.namespace,
            pageSize="200",
            orderBy="LAST_UPDATE_TIME",
            sortOrder="DESC",
        )
        return page.render("models.html", title="Models", models=found.get("items") or [])
