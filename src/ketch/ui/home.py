"""The home page (``/``): what is happening in the namespace shown: its recent pipeline
runs (and their states, charted), jobs of every kind, Katib experiments, inference
services and notebooks, each with its state, and its newest events. Everything is read
through the API as the caller, the lists at once; a list the caller may not read says
so in its place.

``/`` also carries ``kfp-links.js``: the links ``kfp.Client`` prints
(``/#/runs/details/<id>``) open the matching page.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ketch.core.access import rule
from ketch.core.errors import KetchError
from ketch.server.state import api_state
from ketch.ui.access import in_namespace, kind_named, namespace_read
from ketch.ui.kfp import recent_runs
from ketch.ui.listing import Row, events, listing
from ketch.ui.nav import KATIB, SERVING, TRAINING
from ketch.ui.page import Page

router = APIRouter(include_in_schema=False)
SHOWN = 10
#: how many of the newest runs the chart of states counts
CHARTED = 50
T = TypeVar("T")


@dataclass
class Summary:
    """One of the home page's lists: its rows (newest first) or why it is not shown."""

    title: str
    key: str
    href: str
    rows: list[Row] = field(default_factory=list)
    kinds: dict[str, str] = field(default_factory=dict)  # a row's name -> its kind
    error: str = ""


async def _safely(made: Awaitable[T]) -> T | KetchError:
    try:
        return await made
    except KetchError as exc:
        return exc


async def _summary(page: Page, title: str, key: str, resources: tuple[str, ...]) -> Summary:
    """The newest objects of the kinds ``resources`` in the page's namespace."""
    kinds = api_state(page.request).kinds
    served = []
    for name in resources:
        try:
            kind = kind_named(kinds, name)
        except KetchError:
            continue  # a capability this server does not assemble
        if kind.namespaced and "list" in kind.verbs:
            served.append(kind)
    found = Summary(title, key, page.link(f"/ui/k/{resources[0]}"))
    lists = await asyncio.gather(
        *(_safely(listing(page.api, kind, page.namespace, whole=True)) for kind in served)
    )
    for kind, made in zip(served, lists, strict=True):
        if isinstance(made, KetchError):
            found.error = str(made)
            continue
        for row in made.rows:
            found.rows.append(row)
            found.kinds[row.href] = kind.kind
    found.rows.sort(key=lambda r: r.created, reverse=True)
    del found.rows[SHOWN:]
    return found


@router.get("/")
@rule(in_namespace(namespace_read))
async def home_page(request: Request) -> Response:
    async with Page(request, section="Home") as page:
        if (moved := page.needs_namespace()) is not None:
            return moved
        jobs = tuple(k for k in TRAINING if "runtimes" not in k)
        runs, *summaries, feed = await asyncio.gather(
            _safely(recent_runs(page, size=CHARTED)),
            _summary(page, "Jobs", "jobs", jobs),
            _summary(page, "Katib experiments", "experiments", KATIB[:1]),
            _summary(page, "Inference services", "services", SERVING[:1]),
            _summary(page, "Notebooks", "notebooks", ("notebooks.kubeflow.org",)),
            _safely(events(page.api, api_state(request).kinds, page.namespace, newest=20)),
        )
        run_rows: list[dict[str, Any]] = []
        run_error = ""
        if isinstance(runs, KetchError):
            run_error = str(runs)
        else:
            run_rows = runs["runs"]
        states = Counter(str(r["state"] or "UNKNOWN") for r in run_rows)
        chart = {
            "title": {
                "text": f"Newest {len(run_rows)} runs by state",
                "textStyle": {"fontSize": 13},
            },
            "tooltip": {},
            "grid": {"containLabel": True, "left": 8, "right": 8, "bottom": 8, "top": 36},
            "xAxis": {"type": "category", "data": sorted(states)},
            "yAxis": {"type": "value", "minInterval": 1},
            "series": [{"type": "bar", "data": [states[s] for s in sorted(states)]}],
        }
        return page.render(
            "home.html",
            title="Home",
            charts=bool(run_rows),
            runs=run_rows[:SHOWN],
            run_states=sorted(states.items()),
            run_error=run_error,
            runs_chart=chart,
            summaries=summaries,
            events=[] if isinstance(feed, KetchError) else feed,
            events_error=str(feed) if isinstance(feed, KetchError) else "",
            kfp_links=True,
        )
