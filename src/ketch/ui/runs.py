"""KFP runs on the dashboard: the runs list of a namespace (filter by name, state and
experiment; sort by creation, name or duration; pages by the API's page tokens, swapped
in by htmx), archiving and restoring runs and experiments from their lists, and the
comparison of 2 to 10 runs (their parameters and metrics side by side, the metrics
charted).

The list reads ``GET /apis/v2beta1/runs`` with Ketch's light view (``view=BASIC``): the
items carry no ``pipeline_spec``, which is then not even read from the store, so a
page costs the same however large the runs' pipelines are.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ketch.core.access import Attributes, Call, Rule, Verb, rule
from ketch.core.errors import InvalidSpec
from ketch.core.timestamps import parse_time
from ketch.pipelines.api.access import (
    ARCHIVE,
    EXPERIMENTS,
    RUNS,
    UNARCHIVE,
    attributes,
    namespace_of,
)
from ketch.ui.access import in_namespace
from ketch.ui.page import Page, is_htmx, problem_html, render_html

router = APIRouter(include_in_schema=False)
KFP = "/apis/v2beta1"
PAGE_SIZE = 25
#: the list's sort keys: what the page offers, and the API's key for each
SORTS = {"created": "created_at", "name": "display_name", "duration": "duration"}
STATES = ("PENDING", "RUNNING", "SUCCEEDED", "SKIPPED", "FAILED", "CANCELING", "CANCELED")
MAX_COMPARED = 10


def ids_in(query: Any) -> list[str]:
    """The ids a page names: ``ids=a,b`` or ``ids=a&ids=b`` (in order, once each)."""
    raw = query.getlist("ids") if hasattr(query, "getlist") else [query.get("ids") or ""]
    found: list[str] = []
    for value in raw:
        for each in str(value).split(","):
            if each.strip() and each.strip() not in found:
                found.append(each.strip())
    return found


def each_id(verb: str, resource: str) -> Rule:
    """The rule of a page on the objects its ``ids`` name: ``verb`` on each, in its own
    namespace (the API checks each call again)."""

    def attributes_of(call: Call) -> list[Attributes]:
        ids = ids_in(call.query)
        if not ids:
            raise InvalidSpec("name the objects in ids (ids=<id>,<id>)", field="ids")
        if len(ids) > MAX_COMPARED:
            raise InvalidSpec(f"name at most {MAX_COMPARED} ids", field="ids")
        return [
            attributes(verb, resource, namespace_of(call.state.database, resource, key), key)
            for key in ids
        ]

    return attributes_of


def duration(run: dict[str, Any]) -> str:
    """How long a run took (``""`` while it runs), as ``1h2m``, ``3m4s`` or ``5.6s``."""
    start, end = run.get("created_at"), run.get("finished_at")
    if not start or not end or str(end).startswith("1970"):
        return ""
    try:
        seconds = (parse_time(end) - parse_time(start)).total_seconds()
    except (TypeError, ValueError):
        return ""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs}s"
    return f"{minutes // 60}h{minutes % 60}m"


def row_of(run: dict[str, Any]) -> dict[str, Any]:
    """What the list shows of a KFP run."""
    run_id = str(run.get("run_id", ""))
    return {
        "id": run_id,
        "name": run.get("display_name") or run_id,
        "state": run.get("state", ""),
        "created": run.get("created_at", ""),
        "finished": run.get("finished_at", ""),
        "duration": duration(run),
        "experiment": run.get("experiment_id", ""),
        "archived": run.get("storage_state") == "ARCHIVED",
        "href": f"/ui/runs/{run_id}",
    }


def run_filter(name: str, state: str, archived: bool) -> str:
    """The KFP filter of what the list's controls ask."""
    predicates: list[dict[str, Any]] = [
        {
            "key": "storage_state",
            "operation": "EQUALS",
            "string_value": "ARCHIVED" if archived else "AVAILABLE",
        }
    ]
    if name:
        predicates.append({"key": "name", "operation": "IS_SUBSTRING", "string_value": name})
    if state:
        predicates.append({"key": "state", "operation": "EQUALS", "string_value": state})
    return json.dumps({"predicates": predicates})


@router.get("/ui/runs")
@rule(in_namespace(lambda ns: attributes(Verb.LIST, RUNS, ns)))
async def runs_page(request: Request) -> Response:
    """The namespace's runs: the controls are a GET form (links work without script),
    htmx swaps only the table in."""
    query = request.query_params
    name = (query.get("name") or "").strip()
    state = (query.get("state") or "").strip().upper()
    if state and state not in STATES:
        raise InvalidSpec(f"state {state!r} is not one of {', '.join(STATES)}", field="state")
    sort = query.get("sort") or "created"
    if sort not in SORTS:
        raise InvalidSpec(f"sort {sort!r} is not one of {', '.join(SORTS)}", field="sort")
    order = "asc" if query.get("order") == "asc" else "desc"
    experiment = (query.get("experiment") or "").strip()
    archived = query.get("show") == "archived"
    token = query.get("page_token") or ""
    async with Page(request, section="Runs") as page:
        if (moved := page.needs_namespace()) is not None:
            return moved
        params = {
            "page_size": str(PAGE_SIZE),
            "view": "BASIC",
            "page_token": token,
            "sort_by": f"{SORTS[sort]} {order}",
            "filter": run_filter(name, state, archived),
        }
        if experiment:
            params["experiment_id"] = experiment
        else:
            params["namespace"] = page.namespace
        listed, experiments = await asyncio.gather(
            page.api.get(f"{KFP}/runs", **params),
            page.api.call(
                "GET",
                f"{KFP}/experiments",
                params={"namespace": page.namespace, "page_size": "200"},
            ),
        )
        known = experiments.body.get("experiments") or [] if experiments.ok else []
        names = {e.get("experiment_id"): e.get("display_name") for e in known}
        rows = [row_of(r) for r in listed.get("runs") or []]
        for row in rows:
            row["experiment_name"] = names.get(row["experiment"], "")
        chosen = {
            "name": name,
            "state": state,
            "sort": sort,
            "order": order,
            "experiment": experiment,
            "show": "archived" if archived else "",
        }

        def link(**change: str) -> str:
            return page.link("/ui/runs", **{**chosen, **change})

        def sort_link(key: str) -> str:
            flip = "asc" if sort == key and order == "desc" else "desc"
            return link(sort=key, order=flip)

        values = {
            "title": "Runs",
            "runs": rows,
            "total": listed.get("total_size") or 0,
            "next_page": link(page_token=listed["next_page_token"])
            if listed.get("next_page_token")
            else "",
            "first_page": link() if token else "",
            "chosen": chosen,
            "states": STATES,
            "experiments": known,
            "sort_link": sort_link,
            "archived": archived,
        }
        if is_htmx(request) and request.headers.get("hx-target") == "runs-area":
            return render_html("runs_table.html", **page.context(fragment=True, **values))
        return page.render("runs.html", **values)


async def _storage(request: Request, resource: str, verb: str) -> Response:
    """Archive or restore (``verb``) the runs or experiments ``ids`` names through the
    API; htmx gets the rows' new state."""
    ids = ids_in(request.query_params)
    async with Page(request, section="Runs", namespaced=False) as page:
        answers = await asyncio.gather(
            *(page.api.call("POST", f"{KFP}/{resource}/{key}:{verb}") for key in ids)
        )
        refused = [a for a in answers if not a.ok]
        if refused:
            first = refused[0]
            return problem_html(first.status, first.message)
        word = "Archived" if verb == ARCHIVE else "Restored"
        return render_html("stored.html", word=word, ids=ids)


@router.post("/ui/runs/archive")
@rule(each_id(ARCHIVE, RUNS))
async def archive_runs(request: Request) -> Response:
    return await _storage(request, "runs", ARCHIVE)


@router.post("/ui/runs/unarchive")
@rule(each_id(UNARCHIVE, RUNS))
async def unarchive_runs(request: Request) -> Response:
    return await _storage(request, "runs", UNARCHIVE)


@router.post("/ui/experiments/archive")
@rule(each_id(ARCHIVE, EXPERIMENTS))
async def archive_experiments(request: Request) -> Response:
    return await _storage(request, "experiments", ARCHIVE)


@router.post("/ui/experiments/unarchive")
@rule(each_id(UNARCHIVE, EXPERIMENTS))
async def unarchive_experiments(request: Request) -> Response:
    return await _storage(request, "experiments", UNARCHIVE)


# -- comparing runs ---------------------------------------------------------------------


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(str(value))
    except (TypeError, ValueError):
        return None


async def run_metrics(page: Page, run: dict[str, Any]) -> dict[str, Any]:
    """A run's metrics: the values its tasks' Metrics artifacts hold (``task.name``
    when two tasks log the same name), read through the API's task reads."""
    run_id = run.get("run_id", "")
    tasks = (run.get("run_details") or {}).get("task_details") or []
    with_outputs = [t for t in tasks if t.get("task_id")]
    answers = await asyncio.gather(
        *(page.api.call("GET", f"{KFP}/runs/{run_id}/nodes/{t['task_id']}") for t in with_outputs)
    )
    found: dict[str, Any] = {}
    for task, answer in zip(with_outputs, answers, strict=True):
        if not answer.ok or not isinstance(answer.body, dict):
            continue
        outputs = answer.body.get("outputs") or {}
        artifacts = outputs.get("artifacts") if isinstance(outputs, dict) else None
        for art in _artifact_list(artifacts):
            if art.get("type") != "system.Metrics":
                continue
            for key, value in (art.get("metadata") or {}).items():
                if key == "display_name" or _number(value) is None:
                    continue
                name = key if key not in found else f"{task.get('display_name')}.{key}"
                found[name] = value
    return found


def _artifact_list(artifacts: Any) -> list[dict[str, Any]]:
    """The artifacts of a task's outputs (a list, or lists by output name)."""
    if isinstance(artifacts, list):
        return [a for a in artifacts if isinstance(a, dict)]
    if isinstance(artifacts, dict):
        found: list[dict[str, Any]] = []
        for each in artifacts.values():
            found += _artifact_list(each if isinstance(each, list) else [each])
        return found
    return []


def side_by_side(values: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of a comparison: each key with every run's value, and whether they differ."""
    keys: list[str] = []
    for each in values:
        keys += [k for k in each if k not in keys]
    rows = []
    for key in keys:
        cells = [each.get(key) for each in values]
        shown = [json.dumps(c) if isinstance(c, dict | list) else c for c in cells]
        rows.append(
            {
                "key": key,
                "cells": ["" if c is None else c for c in shown],
                "differs": len({json.dumps(c, sort_keys=True, default=str) for c in cells}) > 1,
            }
        )
    return rows


def metric_charts(names: list[str], metrics: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One ECharts bar chart per metric: the runs' values side by side."""
    charts = []
    keys: list[str] = []
    for each in metrics:
        keys += [k for k in each if k not in keys]
    for index, key in enumerate(keys):
        values = [_number(m.get(key)) for m in metrics]
        charts.append(
            {
                "id": f"metric-chart-{index}",
                "name": key,
                "option": {
                    "title": {"text": key, "textStyle": {"fontSize": 13}},
                    "tooltip": {},
                    "grid": {"left": 50, "right": 10, "top": 34, "bottom": 40},
                    "xAxis": {"type": "category", "data": names, "axisLabel": {"interval": 0}},
                    "yAxis": {"type": "value"},
                    "series": [{"type": "bar", "name": key, "data": values}],
                },
            }
        )
    return charts


@router.get("/ui/runs/compare")
@rule(each_id(Verb.GET, RUNS))
async def compare_page(request: Request) -> Response:
    """2 to 10 runs side by side: parameters and metrics (the rows that differ marked),
    a bar chart per metric."""
    ids = ids_in(request.query_params)
    if len(ids) < 2:
        raise InvalidSpec("choose at least 2 runs to compare", field="ids")
    async with Page(request, section="Runs", namespaced=False) as page:
        runs = await asyncio.gather(*(page.api.get(f"{KFP}/runs/{key}") for key in ids))
        metrics = await asyncio.gather(*(run_metrics(page, run) for run in runs))
        names = [str(r.get("display_name") or r.get("run_id")) for r in runs]
        parameters = [(r.get("runtime_config") or {}).get("parameters") or {} for r in runs]
        overview = [
            {
                "key": "State",
                "cells": [r.get("state", "") for r in runs],
                "differs": len({r.get("state") for r in runs}) > 1,
            },
            {"key": "Duration", "cells": [duration(r) for r in runs], "differs": False},
        ]
        charts = metric_charts(names, metrics)
        return page.render(
            "compare.html",
            title=f"Compare {len(runs)} runs",
            runs=[row_of(r) for r in runs],
            overview=overview,
            parameters=side_by_side(parameters),
            metrics=side_by_side(metrics),
            charts=charts,
        )
