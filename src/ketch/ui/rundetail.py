"""A KFP run's page: its DAG drawn as a graph (:mod:`ketch.ui.rungraph`) and listed as
text, both kept live while the run has not finished (htmx polls a fragment; the graph's
colours follow), a task's panel (``?task=<task_id>``: its inputs and outputs, its log,
its artifacts shown by viewers), the run's buttons (retry, terminate, clone, archive)
for callers who may, and the lineage of an artifact or of a registered model version.

Every read goes through the API as the page's caller: the KFP run (``GET
/apis/v2beta1/runs/{id}``: state, parameters, task ids), its ``PipelineRun`` (the IR
and each task's path, type and state, one read for the whole run), a task with its
inputs and outputs (``.../nodes/{task_id}``), the first bytes of an artifact
(``...:head``), a task's log (the PipelineRun's ``logs``), an artifact's lineage
(``.../artifacts/{id}/lineage``) and a version's (the registry's ``lineage``).
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import Response
from markupsafe import Markup, escape

from ketch.core.access import Call, Verb, rule
from ketch.core.conditions import TERMINAL_RUN_STATES
from ketch.core.errors import InvalidSpec
from ketch.pipelines.api.access import (
    ARCHIVE,
    ARTIFACTS,
    RETRY,
    RUNS,
    TERMINATE,
    UNARCHIVE,
    attributes,
    by_id,
)
from ketch.registry.access import by_id as registry_by_id
from ketch.ui import rungraph
from ketch.ui.access import may
from ketch.ui.page import Page, is_htmx, problem_html, render_html, send_to

router = APIRouter(include_in_schema=False)
KFP = "/apis/v2beta1"
RUN_API = "/apis/pipelines.ketch.dev/v1/namespaces/{ns}/pipelineruns/{id}"
REGISTRY = "/api/model_registry/v1alpha3"
#: the most of a log a panel shows (its end)
LOG_TAIL = 64 * 1024
#: the most of an artifact a viewer reads
PREVIEW_BYTES = 64 * 1024
PREVIEW_ROWS = 20
ACTIONS = {"terminate": TERMINATE, "retry": RETRY, "archive": ARCHIVE, "unarchive": UNARCHIVE}


def _action_rule(call: Call) -> Any:
    action = call.path_params.get("action", "")
    if action not in ACTIONS:
        raise InvalidSpec(f"a run's actions are {', '.join(ACTIONS)}", field="action")
    return by_id(ACTIONS[action], RUNS, "run_id")(call)


class RunView:
    """What the page and its live fragment show of a run, read in three API calls."""

    def __init__(self, run: dict[str, Any], resource: dict[str, Any]) -> None:
        self.run = run
        self.resource = resource
        self.state = str(run.get("state") or "")
        self.active = self.state not in TERMINAL_RUN_STATES
        details = (run.get("run_details") or {}).get("task_details") or []
        status = resource.get("status") or {}
        tasks = status.get("tasks") or []
        self.ids = _ids_by_path(details, tasks)
        ir = (resource.get("spec") or {}).get("pipelineSpec") or run.get("pipeline_spec") or {}
        self.graph = rungraph.build(ir, tasks, run_active=self.active, ids=self.ids)


def _ids_by_path(details: list[dict[str, Any]], tasks: list[dict[str, Any]]) -> dict[str, str]:
    """KFP's task ids by path: ``run_details`` has ids and names, ``status.tasks`` paths
    and names, both in the order the tasks were stored."""
    queues: dict[str, list[str]] = {}
    for detail in details:
        queues.setdefault(str(detail.get("display_name")), []).append(str(detail["task_id"]))
    found: dict[str, str] = {}
    for task in tasks:
        queue = queues.get(str(task.get("name")))
        if queue:
            found[str(task.get("path"))] = queue.pop(0)
    return found


async def _experiment(page: Page, run: dict[str, Any]) -> dict[str, Any]:
    if not run.get("experiment_id"):
        return {}
    answer = await page.api.call("GET", f"{KFP}/experiments/{run['experiment_id']}")
    return answer.body if answer.ok and isinstance(answer.body, dict) else {}


async def _namespace_of(page: Page, run: dict[str, Any]) -> str:
    """The run's namespace: the one its page's URL names (the API refuses a wrong
    one), else its experiment's (the KFP run has none of its own)."""
    if page.request.query_params.get("ns"):
        return page.namespace
    namespace = str((await _experiment(page, run)).get("namespace") or "default")
    page.show_namespace(namespace)
    return namespace


async def _read_run(page: Page, run_id: str) -> RunView:
    run = await page.api.get(f"{KFP}/runs/{run_id}")
    namespace = await _namespace_of(page, run)
    resource = await page.api.get(RUN_API.format(ns=namespace, id=run_id))
    return RunView(run, resource)


def _task_link(page: Page, run_id: str, task_id: str) -> str:
    return page.link(f"/ui/runs/{run_id}", task=task_id) + "#task"


def _live(page: Page, view: RunView, run_id: str) -> dict[str, Any]:
    graph = view.graph
    return {
        "view": view,
        "run_id": run_id,
        "rows": graph.rows,
        "loops": graph.loops,
        "counts": sorted(graph.counts().items()),
        "graph_json": rungraph.chart(graph, lambda t: _task_link(page, run_id, t)),
        "graph_height": rungraph.chart_height(graph),
        "live_url": page.link(
            f"/ui/runs/{run_id}/live", task=page.request.query_params.get("task")
        ),
        "task_href": lambda t: _task_link(page, run_id, t),
        "loop_page": _int(page.request.query_params.get("iterations"), 1),
        "page_size": rungraph.ITERATIONS_PAGE,
        "loop_limit": rungraph.LOOP_LIMIT,
    }


def _int(value: str | None, default: int) -> int:
    try:
        return max(1, int(value or default))
    except ValueError:
        return default


@router.get("/ui/runs/{run_id}")
@rule(by_id(Verb.GET, RUNS, "run_id"))
async def run_page(request: Request, run_id: str) -> Response:
    """A run: its graph and tasks (live), parameters, buttons, and a task's panel."""
    async with Page(request, section="Runs", namespaced=False) as page:
        run = await page.api.get(f"{KFP}/runs/{run_id}")
        experiment = await _experiment(page, run)
        namespace = str(experiment.get("namespace") or "default")
        page.show_namespace(namespace)
        resource = await page.api.get(RUN_API.format(ns=namespace, id=run_id))
        view = RunView(run, resource)
        task_id = request.query_params.get("task") or ""
        panel = await _panel(page, run_id, namespace, task_id) if task_id else None
        editable = may(request, attributes(TERMINATE, RUNS, namespace, run_id))
        parameters = (run.get("runtime_config") or {}).get("parameters") or {}
        clone = page.link(
            "/ui/runs/new",
            pipeline=(run.get("pipeline_version_reference") or {}).get("pipeline_id"),
            version=(run.get("pipeline_version_reference") or {}).get("pipeline_version_id"),
            clone=run_id,
            **{f"param.{k}": json.dumps(v) for k, v in parameters.items()},
        )
        return page.render(
            "rundetail.html",
            title=f"Run {run.get('display_name') or run_id}",
            run=run,
            experiment=experiment,
            editable=editable,
            clone_href=clone,
            panel=panel,
            charts=True,
            resource_href=page.link(f"/ui/k/pipelineruns.pipelines.ketch.dev/{run_id}"),
            **_live(page, view, run_id),
        )


@router.get("/ui/runs/{run_id}/live")
@rule(by_id(Verb.GET, RUNS, "run_id"))
async def run_live(request: Request, run_id: str) -> Response:
    """The live part of a run's page: its state, the graph's data and the task list;
    it asks to be polled again while the run has not finished."""
    async with Page(request, section="Runs", namespaced=False) as page:
        view = await _read_run(page, run_id)
        return render_html("rundetail_live.html", **page.context(**_live(page, view, run_id)))


@router.get("/ui/runs/{run_id}/tasks/{task_id}")
@rule(by_id(Verb.GET, RUNS, "run_id"))
async def task_panel(request: Request, run_id: str, task_id: str) -> Response:
    """A task's panel (polled while the task runs); a browser without htmx gets the
    run's page with the panel open."""
    async with Page(request, section="Runs", namespaced=False) as page:
        if not is_htmx(request):
            return Response(
                status_code=303, headers={"Location": _task_link(page, run_id, task_id)}
            )
        run = await page.api.get(f"{KFP}/runs/{run_id}")
        namespace = await _namespace_of(page, run)
        panel = await _panel(page, run_id, namespace, task_id)
        return render_html("rundetail_panel.html", **page.context(panel=panel, run_id=run_id))


async def _panel(page: Page, run_id: str, namespace: str, task_id: str) -> dict[str, Any]:
    task = await page.api.get(f"{KFP}/runs/{run_id}/nodes/{quote(task_id, safe='')}")
    active = task.get("state") not in TERMINAL_RUN_STATES
    log = ""
    if task.get("has_log") or active:
        answer_text = await _log(page, namespace, run_id, str(task.get("path") or ""))
        log = answer_text
    outputs = task.get("outputs") or {}
    viewers = await asyncio.gather(
        *(
            _viewer(page, run_id, task_id, key, art)
            for key, arts in (outputs.get("artifacts") or {}).items()
            for art in arts
        )
    )
    inputs = task.get("inputs") or {}
    return {
        "task": task,
        "active": active,
        "log": log,
        "inputs": inputs.get("parameters") or {},
        "outputs": outputs.get("parameters") or {},
        "input_artifacts": [
            {**a, "key": k} for k, arts in (inputs.get("artifacts") or {}).items() for a in arts
        ],
        "viewers": [v for v in viewers if v is not None],
        "poll_url": page.link(f"/ui/runs/{run_id}/tasks/{task_id}"),
        "lineage": lambda artifact_id: page.link(
            f"/ui/runs/{run_id}/artifacts/{artifact_id}/lineage"
        ),
    }


async def _log(page: Page, namespace: str, run_id: str, path: str) -> str:
    answer = await page.api.call(
        "GET",
        RUN_API.format(ns=namespace, id=run_id) + "/logs",
        params={"task": path},
        accept="text/plain, */*",
    )
    if not answer.ok:
        return f"(no log: {answer.message})"
    text = answer.text if answer.body is None else json.dumps(answer.body)
    if len(text) > LOG_TAIL:
        text = "…\n" + text[-LOG_TAIL:]
    return text


async def _head(page: Page, run_id: str, task_id: str, key: str) -> tuple[bytes, int | None, str]:
    answer = await page.api._http().request(  # noqa: SLF001 (bytes, not text)
        "GET",
        f"{KFP}/runs/{run_id}/nodes/{quote(task_id, safe='')}/artifacts/{quote(key, safe='')}:head",
        params={"bytes": str(PREVIEW_BYTES)},
        headers={**page.api._headers, "accept": "*/*"},  # noqa: SLF001
    )
    if not answer.is_success:
        return b"", None, f"cannot read the artifact (HTTP {answer.status_code})"
    size = answer.headers.get("x-ketch-artifact-size")
    return answer.content, int(size) if size and size.isdigit() else None, ""


async def _viewer(
    page: Page, run_id: str, task_id: str, key: str, art: dict[str, Any]
) -> dict[str, Any] | None:
    """How the panel shows the output artifact ``key``: a titled viewer by its type."""
    kind = str(art.get("type") or "")
    meta = art.get("metadata") or {}
    base = {"key": key, "artifact": art, "type": kind}
    if kind == "system.Metrics":
        scalars = [(k, v) for k, v in meta.items() if not isinstance(v, dict | list)]
        return {**base, "title": "Metrics", "view": "metrics", "rows": scalars}
    if kind == "system.ClassificationMetrics":
        out: dict[str, Any] = {**base, "title": "Classification metrics", "view": "classification"}
        charts: list[tuple[str, dict[str, Any]]] = []
        matrix = meta.get("confusionMatrix") or {}
        if matrix.get("rows"):
            out["matrix"] = _matrix(matrix)
            charts.append(("Confusion matrix", _heatmap(out["matrix"])))
        points = meta.get("confidenceMetrics") or []
        if points:
            out["roc"] = points
            charts.append(("ROC curve", _roc(points)))
        out["charts"] = charts
        return out
    if kind == "system.SlicedClassificationMetrics":
        slices = meta.get("evaluationSlices") or meta.get("slices") or []
        return {
            **base,
            "title": "Sliced classification metrics",
            "view": "sliced",
            "slices": slices,
        }
    if kind == "system.Markdown":
        data, size, error = await _head(page, run_id, task_id, key)
        return {
            **base,
            "title": "Markdown",
            "view": "markdown",
            "html": markdown_html(data.decode("utf-8", "replace")),
            "cut": size is not None and size > len(data),
            "error": error,
        }
    if kind == "system.HTML":
        data, size, error = await _head(page, run_id, task_id, key)
        return {
            **base,
            "title": "HTML",
            "view": "html",
            "srcdoc": data.decode("utf-8", "replace"),
            "cut": size is not None and size > len(data),
            "error": error,
        }
    if kind == "system.Dataset":
        data, size, error = await _head(page, run_id, task_id, key)
        header, rows = preview_rows(data, cut=size is not None and size > len(data))
        return {
            **base,
            "title": "Dataset preview",
            "view": "dataset",
            "header": header,
            "rows": rows,
            "size": size,
            "meta": sorted(meta.items()),
            "error": error,
        }
    if kind == "system.Model":
        return {**base, "title": "Model", "view": "model", "meta": sorted(meta.items())}
    return {**base, "title": f"Artifact {key}", "view": "model", "meta": sorted(meta.items())}


def _matrix(matrix: dict[str, Any]) -> dict[str, Any]:
    labels = [
        str(s.get("displayName", i)) for i, s in enumerate(matrix.get("annotationSpecs") or [])
    ]
    rows = [list(r.get("row") or []) for r in matrix.get("rows") or []]
    while len(labels) < len(rows):
        labels.append(str(len(labels)))
    return {"labels": labels, "rows": rows}


def _heatmap(matrix: dict[str, Any]) -> dict[str, Any]:
    labels, rows = matrix["labels"], matrix["rows"]
    cells = [[j, i, v] for i, row in enumerate(rows) for j, v in enumerate(row)]
    top = max((v for _j, _i, v in cells), default=1) or 1
    return {
        "animation": False,
        "tooltip": {},
        "grid": {"left": 80, "right": 20, "top": 20, "bottom": 60},
        "xAxis": {
            "type": "category",
            "data": labels,
            "name": "predicted",
            "nameLocation": "center",
            "nameGap": 30,
        },
        "yAxis": {"type": "category", "data": labels, "name": "actual", "inverse": True},
        "visualMap": {
            "min": 0,
            "max": top,
            "show": False,
            "inRange": {"color": ["#eef4fd", "#1a56c4"]},
        },
        "series": [{"type": "heatmap", "data": cells, "label": {"show": True}}],
    }


def _roc(points: list[dict[str, Any]]) -> dict[str, Any]:
    line = sorted(
        (float(p.get("falsePositiveRate") or 0), float(p.get("recall") or 0)) for p in points
    )
    return {
        "animation": False,
        "tooltip": {"trigger": "axis"},
        "grid": {"left": 56, "right": 20, "top": 20, "bottom": 45},
        "xAxis": {
            "type": "value",
            "min": 0,
            "max": 1,
            "name": "false positive rate",
            "nameLocation": "center",
            "nameGap": 28,
        },
        "yAxis": {
            "type": "value",
            "min": 0,
            "max": 1,
            "name": "true positive rate",
            "nameLocation": "center",
            "nameGap": 36,
        },
        "series": [
            {"type": "line", "data": [list(p) for p in line], "name": "ROC", "showSymbol": True},
            {
                "type": "line",
                "data": [[0, 0], [1, 1]],
                "lineStyle": {"type": "dashed"},
                "showSymbol": False,
                "name": "chance",
            },
        ],
    }


def markdown_html(text: str) -> Markup:
    """``text`` rendered as Markdown with raw HTML escaped (never passed through) and
    only safe link schemes; escaped plain text when no Markdown library is there."""
    try:
        from markdown_it import MarkdownIt
    except ImportError:
        return Markup("<pre>") + escape(text) + Markup("</pre>")
    renderer = MarkdownIt("commonmark", {"html": False}).enable("table")
    return Markup(renderer.render(text))  # noqa: S704 (html off: markdown-it escapes it)


def preview_rows(data: bytes, *, cut: bool) -> tuple[list[str], list[list[str]]]:
    """The first rows of a CSV (or text) file's first ``data`` bytes: its header and
    up to :data:`PREVIEW_ROWS` rows (a last line cut short is left out)."""
    text = data.decode("utf-8", "replace")
    if cut and "\n" in text:
        text = text[: text.rindex("\n")]
    if data[:4] == b"PAR1":
        return ["(Parquet)"], [["a Parquet file: install pyarrow to preview it"]]
    try:
        dialect: Any = csv.Sniffer().sniff(text[:4096], delimiters=",\t;|")
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(io.StringIO(text), dialect)
    rows = []
    for row in reader:
        rows.append(row)
        if len(rows) > PREVIEW_ROWS:
            break
    if not rows:
        return [], []
    return rows[0], rows[1:]


@router.post("/ui/runs/{run_id}/{action}")
@rule(_action_rule)
async def run_action(request: Request, run_id: str, action: str) -> Response:
    """Retry, terminate, archive or unarchive the run through the KFP API; the page is
    shown again (htmx follows ``HX-Redirect``)."""
    async with Page(request, section="Runs", namespaced=False) as page:
        answer = await page.api.call("POST", f"{KFP}/runs/{run_id}:{action}")
        if not answer.ok:
            return problem_html(answer.status, answer.message)
        target = f"/ui/runs/{run_id}"
        return send_to(request, target)


# -- lineage ---------------------------------------------------------------------------


def lineage_box(
    key: str, x: float, y: float, size: list[int], colour: str, label: str, href: str = ""
) -> dict[str, Any]:
    """One box of a lineage chart (an artifact or a task) at its place; a link when
    ``href`` is given."""
    item: dict[str, Any] = {
        "name": key,
        "x": x,
        "y": y,
        "symbol": "roundRect",
        "symbolSize": size,
        "itemStyle": {"color": colour},
        "label": {"formatter": label},
    }
    if href:
        item["href"] = href
    return item


def lineage_options(data: list[dict[str, Any]], links: list[dict[str, Any]]) -> dict[str, Any]:
    """The ECharts options of a lineage chart: ``data``'s boxes where they were placed,
    joined by ``links``' arrows."""
    return {
        "animation": False,
        "tooltip": {},
        "series": [
            {
                "type": "graph",
                "layout": "none",
                "roam": True,
                "left": 100,
                "right": 100,
                "edgeSymbol": ["none", "arrow"],
                "label": {"show": True, "fontSize": 11, "color": "#111827"},
                "lineStyle": {"color": "#6b7280"},
                "data": data,
                "links": links,
            }
        ],
    }


def lineage_chart(
    center: dict[str, Any],
    producers: list[dict[str, Any]],
    consumers: list[dict[str, Any]],
    link: Any,
) -> dict[str, Any]:
    """Inputs → the tasks that made the artifact → the artifact → the tasks that read it,
    as an ECharts graph in four columns."""
    data: list[dict[str, Any]] = []
    links: list[dict[str, Any]] = []

    def column(x: int, items: list[tuple[str, str, str, str]]) -> None:
        for index, (key, label, colour, href) in enumerate(items):
            y = (index - (len(items) - 1) / 2) * 60
            data.append(lineage_box(key, x * 230, y, [170, 38], colour, label, href))

    inputs: list[tuple[str, str, str, str]] = []
    for producer in producers:
        for art in producer.get("inputs") or []:
            key = f"artifact:{art['artifact_id']}"
            if all(k != key for k, *_ in inputs):
                inputs.append((key, f"{art.get('name')}\n{art.get('type')}", "#fde68a", link(art)))
            links.append({"source": key, "target": f"task:{producer['execution_id']}"})
    column(0, inputs)
    column(
        1,
        [
            (
                f"task:{p['execution_id']}",
                f"{p.get('display_name') or p.get('path')}\n{str(p.get('state', '')).lower()}",
                rungraph.COLOURS.get(str(p.get("state")), "#9aa0a6"),
                p.get("href", ""),
            )
            for p in producers
        ],
    )
    center_key = f"artifact:{center['artifact_id']}"
    column(2, [(center_key, f"{center.get('name')}\n{center.get('type')}", "#f59e0b", "")])
    column(
        3,
        [
            (
                f"task:{c['execution_id']}",
                f"{c.get('display_name') or c.get('path')}\n{str(c.get('state', '')).lower()}",
                rungraph.COLOURS.get(str(c.get("state")), "#9aa0a6"),
                c.get("href", ""),
            )
            for c in consumers
        ],
    )
    for producer in producers:
        links.append({"source": f"task:{producer['execution_id']}", "target": center_key})
    for consumer in consumers:
        links.append({"source": center_key, "target": f"task:{consumer['execution_id']}"})
    return lineage_options(data, links)


@router.get("/ui/runs/{run_id}/artifacts/{artifact_id}/lineage")
@rule(by_id(Verb.GET, RUNS, "run_id", sub=ARTIFACTS))
async def artifact_lineage(request: Request, run_id: str, artifact_id: str) -> Response:
    """An artifact's lineage: what made it, from what, and what read it."""
    async with Page(request, section="Runs", namespaced=False) as page:
        found = await page.api.get(
            f"{KFP}/runs/{run_id}/artifacts/{quote(artifact_id, safe='')}/lineage"
        )
        run = await page.api.get(f"{KFP}/runs/{run_id}")
        await _namespace_of(page, run)
        for entry in [*found.get("produced_by", []), *found.get("consumed_by", [])]:
            if entry.get("task_id"):
                entry["href"] = _task_link(page, entry["run_id"], entry["task_id"])

        def art_link(art: dict[str, Any]) -> str:
            return page.link(
                f"/ui/runs/{art.get('run_id') or run_id}/artifacts/{art['artifact_id']}/lineage"
            )

        for producer in found.get("produced_by", []):
            for art in producer.get("inputs") or []:
                art["href"] = art_link(art)
        artifact = found["artifact"]
        options = lineage_chart(
            artifact, found.get("produced_by", []), found.get("consumed_by", []), art_link
        )
        return page.render(
            "lineage.html",
            title=f"Lineage of {artifact.get('name') or artifact_id}",
            artifact=artifact,
            produced_by=found.get("produced_by", []),
            consumed_by=found.get("consumed_by", []),
            run=run,
            run_href=page.link(f"/ui/runs/{run_id}"),
            chart=options,
            charts=True,
            version=None,
        )


@router.get("/ui/model-versions/{id}/lineage")
@rule(registry_by_id(Verb.GET, "model_version"))
async def version_lineage(request: Request, id: str) -> Response:  # noqa: A002
    """A registered model version's lineage: each of its artifacts, the run's task
    that made it and what that task read (the registry's lineage)."""
    async with Page(request, section="Models", namespaced=False) as page:
        found = await page.api.get(f"{REGISTRY}/model_versions/{quote(id, safe='')}/lineage")
        version = found.get("modelVersion") or {}
        entries = []
        data: list[dict[str, Any]] = []
        links: list[dict[str, Any]] = []
        for index, entry in enumerate(found.get("artifacts") or []):
            artifact = entry.get("artifact") or {}
            made = entry.get("producedBy") or {}
            href = ""
            if made.get("kind") == "PipelineRun" and made.get("name"):
                href = page.link(f"/ui/runs/{made['name']}")
            entries.append(
                {
                    "artifact": artifact,
                    "made": made,
                    "inputs": entry.get("inputs") or [],
                    "href": href,
                }
            )
            y = index * 120
            art_key = f"artifact:{artifact.get('id', index)}"
            art_label = f"{artifact.get('name') or 'artifact'}\n{artifact.get('uri', '')[-40:]}"
            data.append(lineage_box(art_key, 460, y, [180, 38], "#f59e0b", art_label))
            if made:
                task_key = f"task:{index}"
                task_label = (
                    f"{made.get('displayName') or made.get('task') or made.get('name')}"
                    f"\n{made.get('kind', '')}"
                )
                data.append(lineage_box(task_key, 230, y, [180, 38], "#2e9e5b", task_label, href))
                links.append({"source": task_key, "target": art_key})
                for number, put in enumerate(entry.get("inputs") or []):
                    key = f"input:{index}:{number}"
                    put_y = y + (number - (len(entry["inputs"]) - 1) / 2) * 50
                    put_label = f"{put.get('name')}\n{str(put.get('uri', ''))[-36:]}"
                    data.append(lineage_box(key, 0, put_y, [170, 34], "#fde68a", put_label))
                    links.append({"source": key, "target": task_key})
        options = lineage_options(data, links)
        return page.render(
            "lineage.html",
            title=f"Lineage of model version {version.get('name') or id}",
            version=version,
            version_href=page.link(f"/ui/model-versions/{id}"),
            entries=entries,
            chart=options,
            charts=True,
            artifact=None,
        )
