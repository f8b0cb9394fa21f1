"""A KFP run's page in a real Chromium against the session's single-user ``ketch up``:
a run of :mod:`tests.ui.rundetail_pipeline` made by ``kfp.Client`` shows its graph
(drawn) and its tasks with their states as text, the ParallelFor's iterations, the
condition that was not taken as skipped, a task whose state changes while the page is
open (no reload), the evaluation task's panel with its viewers (Metrics, Confusion
matrix, ROC curve, Markdown without the script it held, HTML in a sandboxed frame, the
Dataset's first rows) and its log, an artifact's lineage, and terminate. Over plain
HTTP: the task API's inputs and outputs, the bounded artifact read, the graph's layout
for a big loop, and the pages' refusals for another profile's owner."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser import BrowserThread, browser  # noqa: F401  (fixture)
from tests.ui.browsing import visiting
from tests.ui.conftest import NS, Dashboard, made
from tests.waiting import wait_for

pytestmark = pytest.mark.timeout(300)


def start_run(dashboard: Dashboard, gate: str, namespace: str = NS) -> str:
    """A run of the detail pipeline, made by ``kfp.Client``; its wait task waits for
    ``gate`` to exist."""
    import kfp

    from tests.ui.rundetail_pipeline import detail

    client = kfp.Client(host=dashboard.url)
    result = client.create_run_from_pipeline_func(
        detail, arguments={"gate": gate}, experiment_name="ui-detail", namespace=namespace
    )
    return str(result.run_id)


def run_json(http: httpx.Client, run_id: str) -> dict[str, Any]:
    return made(http.get(f"/apis/v2beta1/runs/{run_id}"))


def task_named(run: dict[str, Any], name: str) -> dict[str, Any]:
    return next(t for t in run["run_details"]["task_details"] if t["display_name"] == name)


def wait_state(http: httpx.Client, run_id: str, name: str, states: set[str]) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        run = run_json(http, run_id)
        found = [t for t in run["run_details"]["task_details"] if t["display_name"] == name]
        return run if found and found[0]["state"] in states else None

    found: dict[str, Any] = wait_for(reached, 120, 0.1, what=f"{name} to be {states}")
    return found


@pytest.fixture(scope="module")
def finished(single: Dashboard, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A run of the detail pipeline that has finished (its gate exists)."""
    gate = tmp_path_factory.mktemp("gate") / "open"
    gate.write_text("")
    run_id = start_run(single, str(gate))
    with single.client() as http:
        wait_for(
            lambda: run_json(http, run_id)["state"] in ("SUCCEEDED", "FAILED"),
            180,
            0.2,
            what="the detail run to finish",
        )
        assert run_json(http, run_id)["state"] == "SUCCEEDED"
    return run_id


async def _text(page: Any, selector: str) -> str:
    return str(await page.locator(selector).first.inner_text())


def test_task_api_inputs_outputs_and_bounded_read(single: Dashboard, finished: str) -> None:
    with single.client() as http:
        run = run_json(http, finished)
        evaluate = task_named(run, "evaluate")
        task = made(http.get(f"/apis/v2beta1/runs/{finished}/nodes/{evaluate['task_id']}"))
        metrics = task["outputs"]["artifacts"]["metrics"][0]
        assert metrics["type"] == "system.Metrics"
        assert metrics["metadata"] == {"accuracy": 0.875, "loss": 0.31}
        matrix = task["outputs"]["artifacts"]["matrix"][0]["metadata"]["confusionMatrix"]
        assert [r["row"] for r in matrix["rows"]] == [[7, 1], [2, 6]]
        squares = [t for t in run["run_details"]["task_details"] if t["display_name"] == "square"]
        assert len(squares) == 3
        one = made(http.get(f"/apis/v2beta1/runs/{finished}/nodes/{squares[0]['task_id']}"))
        assert one["inputs"]["parameters"]["x"] in (1, 2, 3)
        assert one["outputs"]["parameters"]["Output"] == one["inputs"]["parameters"]["x"] ** 2
        head = http.get(
            f"/apis/v2beta1/runs/{finished}/nodes/{evaluate['task_id']}/artifacts/table:head",
            params={"bytes": "9"},
        )
        assert head.status_code == 200
        assert head.content == b"id,label\n"
        assert int(head.headers["x-ketch-artifact-size"]) > 9
        too_much = http.get(
            f"/apis/v2beta1/runs/{finished}/nodes/{evaluate['task_id']}/artifacts/table:head",
            params={"bytes": str(10 * 1024 * 1024)},
        )
        assert too_much.status_code == 400 and "bytes" in too_much.text
        missing = http.get(f"/apis/v2beta1/runs/{finished}/nodes/nope")
        assert missing.status_code == 404 and "nope" in missing.text
        # lineage: the table the evaluation made, read by count-rows
        table_id = task["outputs"]["artifacts"]["table"][0]["artifact_id"]
        lineage = made(http.get(f"/apis/v2beta1/runs/{finished}/artifacts/{table_id}/lineage"))
        assert [p["display_name"] for p in lineage["produced_by"]] == ["evaluate"]
        assert [c["display_name"] for c in lineage["consumed_by"]] == ["count-rows"]


def test_run_graph_panel_viewers_and_lineage(
    browser: BrowserThread,  # noqa: F811
    single: Dashboard,
    finished: str,
    screenshots: Path,
) -> None:
    with single.client() as http:
        evaluate = task_named(run_json(http, finished), "evaluate")

    async def visit(w: Any) -> None:
        page = w.page
        await page.goto(f"{single.url}/ui/runs/{finished}")
        assert "SUCCEEDED" in await _text(page, "#run-state")
        await page.wait_for_selector("#run-graph svg")
        # every task as text with its state, the loop's iterations, the skipped branch
        rows = page.locator("#tasks tbody tr")
        names = await rows.evaluate_all("rows => rows.map(r => r.dataset.task)")
        for name in ("evaluate", "count-rows", "wait-for-file", "for-loop-2", "condition-3"):
            assert name in names
        assert names.count("square") == 3
        for index in range(3):
            assert f"for-loop-2 [{index}]" in names
        assert "3 iterations" in await _text(page, '#tasks tr[data-task="for-loop-2"]')
        assert "SKIPPED" in await _text(page, '#tasks tr[data-task="condition-3"]')
        assert "skipped" in await _text(page, '#tasks tr[data-task="condition-3"] .condition')
        assert "SKIPPED" in await _text(page, '#tasks tr[data-task="shout"]')
        assert "SUCCEEDED" in await _text(page, '#tasks tr[data-task="evaluate"]')
        await w.shot("run-graph")
        # the graph alone, for the README
        await page.locator("section.run-graph").screenshot(path=str(screenshots / "run-graph.png"))
        # the task's panel, from its link in the list
        await page.click('#tasks tr[data-task="evaluate"] a')
        await page.wait_for_url(f"**/ui/runs/{finished}?*task={evaluate['task_id']}*")
        panel = page.locator("#task-panel")
        text = await panel.inner_text()
        for title in ("Metrics", "Confusion matrix", "ROC curve", "Markdown", "HTML"):
            assert title in text, title
        assert "Dataset preview" in text
        assert "accuracy" in await _text(page, "#task-panel table.metrics")
        assert "0.875" in await _text(page, "#task-panel table.metrics")
        await page.wait_for_selector("#task-panel .viewer-chart svg")
        assert await page.locator("#task-panel .viewer-chart").count() == 2
        dataset = page.locator("#task-panel table.dataset tbody tr")
        assert await dataset.count() == 3
        assert await dataset.nth(1).inner_text() == "2\tdog"
        markdown = page.locator("#task-panel .markdown")
        assert await markdown.locator("h1").inner_text() == "Evaluation"
        assert await markdown.locator("script").count() == 0
        assert "<script>" in await markdown.inner_text()  # shown as text, never run
        frame = page.locator("#task-panel iframe.html-artifact")
        assert await frame.get_attribute("sandbox") == ""
        assert (
            "Report"
            in await page.frame_locator("#task-panel iframe.html-artifact")
            .locator("h1")
            .inner_text()
        )
        await w.shot("run-task-panel")
        # a finished task's log stays
        await page.goto(
            f"{single.url}/ui/runs/{finished}?task="
            f"{task_named(await_run(single, finished), 'wait-for-file')['task_id']}"
        )
        assert "the file is there" in await _text(page, "#task-log")
        # lineage: from the dataset to what made it and what read it
        await page.goto(f"{single.url}/ui/runs/{finished}?task={evaluate['task_id']}")
        await page.click('#task-panel tr:has(th:text-is("table")) a:text("lineage")')
        await page.wait_for_selector("#lineage-graph svg")
        assert "evaluate" in await _text(page, "#produced-by")
        assert "count-rows" in await _text(page, "#consumed-by")
        await w.shot("lineage")
        assert not w.take_errors()

    visiting(browser, screenshots, "rundetail")(visit)


def await_run(dashboard: Dashboard, run_id: str) -> dict[str, Any]:
    with dashboard.client() as http:
        return run_json(http, run_id)


def test_states_change_live_and_terminate(
    browser: BrowserThread,  # noqa: F811
    single: Dashboard,
    screenshots: Path,
    tmp_path: Path,
) -> None:
    gate = tmp_path / "open"
    run_id = start_run(single, str(gate))
    with single.client() as http:
        wait_state(http, run_id, "wait-for-file", {"RUNNING"})
        wait_state(http, run_id, "evaluate", {"SUCCEEDED"})
    doomed = start_run(single, str(tmp_path / "never"))

    async def visit(w: Any) -> None:
        page = w.page
        await page.goto(f"{single.url}/ui/runs/{run_id}")
        await page.wait_for_selector("#run-graph svg")
        row = '#tasks tr[data-task="wait-for-file"]'
        assert "RUNNING" in await _text(page, row)
        marker = await page.evaluate("() => (window.__kept = Math.random())")
        gate.write_text("")
        started = time.monotonic()
        await page.wait_for_selector(f'{row}[data-state="SUCCEEDED"]', timeout=60_000)
        print(f"state change shown {time.monotonic() - started:.2f} s after the gate opened")
        await page.wait_for_selector('#run-live[data-active="false"]', timeout=60_000)
        assert "SUCCEEDED" in await _text(page, "#run-state")
        # no reload: the page's own state survived
        assert await page.evaluate("() => window.__kept") == marker
        # the graph's node took the new colour: its data is the fragment's
        data = await page.evaluate(
            "() => JSON.parse(document.getElementById('run-live').dataset.options)"
        )
        node = next(n for n in data["series"][0]["data"] if n["name"] == "wait-for-file")
        assert node["value"] == "SUCCEEDED"
        await w.shot("run-live-finished")
        # terminate a run that waits for a gate that never opens
        await page.goto(f"{single.url}/ui/runs/{doomed}")
        await page.wait_for_selector('#tasks tr[data-task="wait-for-file"][data-state="RUNNING"]')
        await page.click("#terminate")
        await page.wait_for_selector('#run-live[data-active="false"]', timeout=60_000)
        assert await _text(page, "#run-state") in ("CANCELED", "CANCELING")
        assert not w.take_errors()

    visiting(browser, screenshots, "rundetail-live")(visit)


def test_big_loop_is_summarised() -> None:
    """A loop of 200 items is a few nodes, with counts per state; its page lists a
    page of iterations."""
    from ketch.ui import rungraph

    ir = {
        "components": {
            "comp-for-loop-1": {"dag": {"tasks": {"work": {"componentRef": {"name": "c"}}}}},
            "c": {"executorLabel": "e"},
        },
        "root": {
            "dag": {
                "tasks": {
                    "for-loop-1": {
                        "componentRef": {"name": "comp-for-loop-1"},
                        "parameterIterator": {"items": {"raw": "[]"}},
                    },
                    "after": {"componentRef": {"name": "c"}, "dependentTasks": ["for-loop-1"]},
                }
            }
        },
    }
    tasks: list[dict[str, Any]] = [{"path": "for-loop-1", "type": "loop", "state": "RUNNING"}]
    for i in range(200):
        state = "SUCCEEDED" if i < 150 else "RUNNING"
        tasks.append({"path": f"for-loop-1[{i}]", "type": "iteration", "state": state})
        tasks.append({"path": f"for-loop-1[{i}]/work", "type": "container", "state": state})
    graph = rungraph.build(ir, tasks, run_active=True)
    assert [n.id for n in graph.nodes] == ["for-loop-1", "for-loop-1[*]/work", "after"]
    work = graph.nodes[1]
    assert work.counts == {"SUCCEEDED": 150, "RUNNING": 50}
    assert work.state == "RUNNING"
    assert graph.nodes[2].state == "PENDING"
    assert [n.layer for n in graph.nodes] == [0, 1, 1]
    assert graph.loops[0]["total"] == 200
    assert [r.path for r in graph.rows] == ["for-loop-1", "after"]
    options = rungraph.chart(graph, lambda t: t)
    assert len(options["series"][0]["data"]) == 3


def test_run_pages_refuse_another_profile(multi: Dashboard) -> None:
    from tests.tenancy.helpers import ALICE, BOB

    with multi.client(ALICE) as alice:
        run = run_json(alice, multi.run_id)
        task_id = run["run_details"]["task_details"][0]["task_id"]
        assert alice.get(f"/ui/runs/{multi.run_id}/live").status_code == 200
    with multi.client(BOB) as bob:
        for url in (
            f"/ui/runs/{multi.run_id}",
            f"/ui/runs/{multi.run_id}/live",
            f"/ui/runs/{multi.run_id}/tasks/{task_id}",
            f"/apis/v2beta1/runs/{multi.run_id}/nodes/{task_id}",
            f"/apis/v2beta1/runs/{multi.run_id}/artifacts/1/lineage",
        ):
            assert bob.get(url).status_code == 403, url
        refused = bob.post(
            f"/ui/runs/{multi.run_id}/archive",
            headers={"content-type": "application/json"},
            content="{}",
        )
        assert refused.status_code == 403
