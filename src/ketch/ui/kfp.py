"""Kubeflow Pipelines' pages, read through the KFP v2beta1 API as the caller: the runs,
experiments and pipelines of a namespace, a run's page (its state and its tasks'), an
experiment's (its runs) and a pipeline's (its versions). These are the pages the
links ``kfp.Client`` prints lead to (``/#/runs/details/<id>``: ``kfp-links.js`` on
``/`` sends the browser on, as the fragment never reaches the server).

Each route's rule is the KFP API's own for the same read
(:mod:`ketch.pipelines.api.access`).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ketch.core.access import Verb, rule
from ketch.pipelines.api.access import (
    EXPERIMENTS,
    attributes,
    by_id,
)
from ketch.ui.access import in_namespace
from ketch.ui.page import Page

router = APIRouter(include_in_schema=False)
KFP = "/apis/v2beta1"
RECENT = "created_at desc"
PAGE_SIZE = 50


def run_row(run: dict[str, Any]) -> dict[str, Any]:
    """What a list shows of a KFP run."""
    return {
        "id": run.get("run_id", ""),
        "name": run.get("display_name") or run.get("run_id", ""),
        "state": run.get("state", ""),
        "created": run.get("created_at", ""),
        "finished": run.get("finished_at", ""),
        "experiment": run.get("experiment_id", ""),
        "href": f"/ui/runs/{run.get('run_id', '')}",
    }


async def recent_runs(
    page: Page, size: int = PAGE_SIZE, token: str = "", **query: str
) -> dict[str, Any]:
    """A page of runs, newest first, in the page's namespace (or as ``query`` says)."""
    params = {"page_size": str(size), "sort_by": RECENT, "page_token": token, **query}
    if "experiment_id" not in query:
        params["namespace"] = page.namespace
    found = await page.api.get(f"{KFP}/runs", **params)
    return {
        "runs": [run_row(r) for r in found.get("runs") or []],
        "next": found.get("next_page_token") or "",
        "total": found.get("total_size") or 0,
    }


@router.get("/ui/experiments")
@rule(in_namespace(lambda ns: attributes(Verb.LIST, EXPERIMENTS, ns)))
async def experiments_page(request: Request) -> Response:
    async with Page(request, section="Experiments") as page:
        if (moved := page.needs_namespace()) is not None:
            return moved
        found = await page.api.get(
            f"{KFP}/experiments", namespace=page.namespace, page_size="200", sort_by=RECENT
        )
        return page.render(
            "experiments.html", title="Experiments", experiments=found.get("experiments") or []
        )


@router.get("/ui/experiments/{experiment_id}")
@rule(by_id(Verb.GET, EXPERIMENTS, "experiment_id"))
async def experiment_page(request: Request, experiment_id: str) -> Response:
    async with Page(request, section="Experiments", namespaced=False) as page:
        experiment = await page.api.get(f"{KFP}/experiments/{experiment_id}")
        if experiment.get("namespace"):
            page.show_namespace(str(experiment["namespace"]))
        found = await recent_runs(
            page, token=request.query_params.get("page_token", ""), experiment_id=experiment_id
        )
        more = page.link(request.url.path, page_token=found["next"]) if found["next"] else ""
        return page.render(
            "experiment.html",
            title=f"Experiment {experiment.get('display_name') or experiment_id}",
            experiment=experiment,
            next_page=more,
            **found,
        )
