"""The runs pages in a real Chromium against a real ``ketch up`` (the single-user one of
``conftest``), with runs made through the KFP API in a namespace of their own: the runs
list pages by the API's tokens, sorts and filters (htmx swapping the table), archives a
run; two runs compared show their parameters and metrics side by side with charts; the
create-run form has an input per typed parameter, names a bad one, and starts a run
that succeeds with typed values; a clone is pre-filled; a recurring run is made from its
form and disabled; a compiled pipeline uploaded from a file shows its graph, a ``.py``
pipeline is compiled by the server's compiler process and shows its graph, and one
with a syntax error is refused naming the field. Over HTTP: the light list leaves ``pipeline_spec``
out, and runs sort by duration."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from playwright.async_api import expect

from ketch.core.timestamps import parse_time
from tests.browser import BrowserThread, browser  # noqa: F401  (fixture)
from tests.ui.browsing import Watched, visiting
from tests.ui.conftest import Dashboard, made

pytestmark = pytest.mark.timeout(420)

NS = "ui-runs"
KFP = "/apis/v2beta1"
RUNS = 30


def compiled(tmp: Path, pipeline: Any, name: str) -> Path:
    from kfp import compiler

    out = tmp / f"{name}.yaml"
    compiler.Compiler().compile(pipeline, str(out))
    return out


def wait_runs(http: httpx.Client, ids: list[str], timeout: float = 240) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        runs = [made(http.get(f"{KFP}/runs/{i}")) for i in ids]
        if all(r["state"] in ("SUCCEEDED", "FAILED", "CANCELED") for r in runs):
            return runs
        assert time.monotonic() < deadline, [r["state"] for r in runs]
        time.sleep(0.3)


def upload(http: httpx.Client, path: Path, name: str) -> dict[str, Any]:
    with path.open("rb") as f:
        return made(
            http.post(
                f"{KFP}/pipelines/upload",
                params={"name": name, "namespace": NS},
                files={"uploadfile": (path.name, f, "application/x-yaml")},
            )
        )


@pytest.fixture(scope="module")
def world(single: Dashboard, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """30 quick runs (names page-run-00..29) in an experiment of ``ui-runs``, two runs of
    the typed pipeline with different parameters, and both pipelines uploaded."""
    from tests.ui.runs_pipeline import quick, typed

    tmp = tmp_path_factory.mktemp("runs-pages")
    quick_yaml, typed_yaml = compiled(tmp, quick, "quick"), compiled(tmp, typed, "typed")
    with single.client() as http:
        experiment = made(
            http.post(f"{KFP}/experiments", json={"display_name": "paging", "namespace": NS})
        )
        quick_spec = yaml.safe_load(quick_yaml.read_text())
        ids = [
            made(
                http.post(
                    f"{KFP}/runs",
                    json={
                        "display_name": f"page-run-{i:02d}",
                        "experiment_id": experiment["experiment_id"],
                        "pipeline_spec": quick_spec,
                        "runtime_config": {"parameters": {"word": "same"}},
                    },
                )
            )["run_id"]
            for i in range(RUNS)
        ]
        typed_pipeline = upload(http, typed_yaml, "ui-typed")
        quick_pipeline = upload(http, quick_yaml, "ui-quick")
        version = made(http.get(f"{KFP}/pipelines/{typed_pipeline['pipeline_id']}/versions"))[
            "pipeline_versions"
        ][0]
        reference = {
            "pipeline_id": typed_pipeline["pipeline_id"],
            "pipeline_version_id": version["pipeline_version_id"],
        }
        typed_ids = [
            made(
                http.post(
                    f"{KFP}/runs",
                    json={
                        "display_name": f"typed-{count}",
                        "experiment_id": experiment["experiment_id"],
                        "pipeline_version_reference": reference,
                        "runtime_config": {"parameters": {"count": count}},
                    },
                )
            )["run_id"]
            for count in (3, 9)
        ]
        runs = wait_runs(http, ids + typed_ids)
        assert all(r["state"] == "SUCCEEDED" for r in runs), [r["state"] for r in runs]
    return {
        "experiment": experiment["experiment_id"],
        "ids": ids,
        "typed": typed_ids,
        "typed_pipeline": typed_pipeline["pipeline_id"],
        "quick_pipeline": quick_pipeline["pipeline_id"],
        "typed_yaml": typed_yaml,
    }


def test_the_light_list_leaves_the_spec_out_and_runs_sort_by_duration(
    single: Dashboard, world: dict[str, Any]
) -> None:
    with single.client() as http:
        full = made(http.get(f"{KFP}/runs", params={"namespace": NS, "page_size": 5}))
        light = made(
            http.get(f"{KFP}/runs", params={"namespace": NS, "page_size": 5, "view": "BASIC"})
        )
        assert all("pipeline_spec" in r for r in full["runs"])
        assert light["runs"] and not any("pipeline_spec" in r for r in light["runs"])
        assert [r["run_id"] for r in light["runs"]] == [r["run_id"] for r in full["runs"]]
        bad = http.get(f"{KFP}/runs", params={"namespace": NS, "view": "SKINNY"})
        assert bad.status_code == 400 and "view" in bad.text
        seen: list[float] = []
        token = ""
        while True:
            page = made(
                http.get(
                    f"{KFP}/runs",
                    params={
                        "namespace": NS,
                        "page_size": 7,
                        "sort_by": "duration desc",
                        "view": "BASIC",
                        "page_token": token,
                    },
                )
            )
            for run in page["runs"]:
                start = run["created_at"]
                end = run["finished_at"]
                seen.append((parse_time(end) - parse_time(start)).total_seconds())
            token = page["next_page_token"]
            if not token:
                break
        assert len(seen) == RUNS + 2
        assert all(a >= b - 2.5e-3 for a, b in zip(seen, seen[1:], strict=False)), [
            (i, a, b) for i, (a, b) in enumerate(zip(seen, seen[1:], strict=False)) if a < b
        ]


def test_runs_list_pages_sorts_filters_and_archives(
    browser: BrowserThread,  # noqa: F811
    single: Dashboard,
    world: dict[str, Any],
    screenshots: Path,
) -> None:
    async def visit(w: Watched) -> None:
        page = w.page
        await page.goto(f"{single.url}/ui/runs?ns={NS}&name=page-run&sort=name&order=asc")
        rows = page.locator("#runs-table tbody tr")
        assert await page.locator("#runs-count").inner_text() == f"{RUNS} runs"
        assert await rows.count() == 25
        names = await page.locator("#runs-table tbody th").all_inner_texts()
        assert names == [f"page-run-{i:02d}" for i in range(25)]
        assert await page.locator("#runs-table .state").first.inner_text() == "SUCCEEDED"
        await w.shot("runs-list")
        await page.click("#next-page")
        await expect(rows).to_have_count(5)
        names = await page.locator("#runs-table tbody th").all_inner_texts()
        assert names == [f"page-run-{i:02d}" for i in range(25, 30)]
        assert "page_token=" in page.url  # the page is a link
        await page.click("#first-page")
        await expect(rows).to_have_count(25)
        await expect(page.locator("#first-page")).to_have_count(0)
        await page.click("#sort-name")  # descending now
        await expect(page.locator("#runs-table tbody th").first).to_have_text("page-run-29")
        await page.fill("#filter-name", "page-run-1")
        await expect(rows).to_have_count(10)
        names = await page.locator("#runs-table tbody th").all_inner_texts()
        assert names == [f"page-run-{i}" for i in range(19, 9, -1)]
        await page.select_option("#filter-state", "FAILED")
        await page.wait_for_selector("#runs-table tbody td.note")
        await page.select_option("#filter-state", "")
        await expect(rows).to_have_count(10)
        # archive one from the list: it leaves the active runs, shows among the archived
        await page.click("#runs-table tbody tr[data-name='page-run-19'] button")
        await page.wait_for_selector("tr[data-name='page-run-19'] .stored")
        await page.select_option("#filter-show", "archived")
        await expect(rows).to_have_count(1)
        assert await page.locator("#runs-table tbody th").inner_text() == "page-run-19"
        await page.click("#runs-table tbody tr[data-name='page-run-19'] button")  # restore
        await page.wait_for_selector("tr[data-name='page-run-19'] .stored")
        assert w.take_errors() == []

    visiting(browser, screenshots, "runs")(visit)
    with single.client() as http:
        run = made(http.get(f"{KFP}/runs/{world['ids'][19]}"))
        assert run["storage_state"] == "AVAILABLE"


def test_compare_two_runs_from_the_list(
    browser: BrowserThread,  # noqa: F811
    single: Dashboard,
    world: dict[str, Any],
    screenshots: Path,
) -> None:
    async def visit(w: Watched) -> None:
        page = w.page
        await page.goto(f"{single.url}/ui/runs?ns={NS}&name=typed")
        for name in ("typed-3", "typed-9"):
            await page.check(f"tr[data-name='{name}'] input[type=checkbox]")
        await page.click("#compare")
        await page.wait_for_selector("#compare-parameters")
        assert "/ui/runs/compare" in page.url
        count = page.locator("#compare-parameters tr[data-key='count']")
        assert await count.get_attribute("class") == "differs"
        heads = await page.locator("#compare-parameters thead th a").all_inner_texts()
        assert sorted(heads) == ["typed-3", "typed-9"]
        by_run = dict(zip(heads, await count.locator("td").all_inner_texts(), strict=True))
        assert by_run == {"typed-3": "3", "typed-9": "9"}
        assert await page.locator("#compare-overview").inner_text() != ""
        accuracy = page.locator("#compare-metrics tr[data-key='accuracy']")
        values = await accuracy.locator("td").all_inner_texts()
        assert dict(zip(heads, values, strict=True)) == {"typed-3": "0.375", "typed-9": "0.45"}
        await page.wait_for_selector("#metric-charts [data-chart-ready] svg")
        await w.shot("compare")
        assert w.take_errors() == []

    visiting(browser, screenshots, "runs")(visit)
    with single.client() as http:
        one = http.get("/ui/runs/compare", params={"ids": world["typed"][0]})
        assert one.status_code == 400 and "at least 2" in one.text


def test_create_run_form_with_typed_parameters_and_a_clone(
    browser: BrowserThread,  # noqa: F811
    single: Dashboard,
    world: dict[str, Any],
    screenshots: Path,
) -> None:
    started: dict[str, str] = {}

    async def visit(w: Watched) -> None:
        page = w.page
        await page.goto(f"{single.url}/ui/runs/new?ns={NS}&pipeline={world['typed_pipeline']}")
        assert await page.get_attribute("#param\\.count", "step") == "1"
        assert await page.get_attribute("#param\\.count", "type") == "number"
        assert await page.get_attribute("#param\\.rate", "step") == "any"
        assert await page.locator("#param\\.flag option").all_inner_texts() == [
            "default (true)",
            "true",
            "false",
        ]
        assert json.loads(await page.input_value("#param\\.items")) == [1, 2]
        await page.fill("#display_name", "typed-from-form")
        await page.fill("#param\\.count", "7")
        await page.fill("#param\\.rate", "0.25")
        await page.select_option("#param\\.flag", "false")
        await page.fill("#param\\.items", "[1, 2")  # not JSON
        await page.fill("#new_experiment", "form-made")
        await page.click("#start-run")
        error = page.locator(".field-error[data-field='param.items']")
        await error.wait_for()
        assert "JSON list" in await error.inner_text()
        await page.fill("#param\\.items", '["a", "b", "c"]')
        await page.fill("#new_experiment", "form-made")
        await page.click("#start-run")
        await page.wait_for_url(re.compile(r"/ui/runs/[0-9a-f]{8}-[0-9a-f-]+"))
        started["id"] = page.url.rsplit("/", 1)[-1].split("?")[0]
        await w.shot("new-run")
        # a clone is pre-filled from the run
        await page.goto(f"{single.url}/ui/runs/new?ns={NS}&clone={started['id']}")
        assert await page.input_value("#param\\.count") == "7"
        assert await page.input_value("#param\\.items") == '["a", "b", "c"]'
        assert await page.input_value("#display_name") == "Clone of typed-from-form"
        assert all("422" in e for e in w.take_errors())  # the refusal, and only it

    visiting(browser, screenshots, "runs")(visit)
    with single.client() as http:
        run = wait_runs(http, [started["id"]])[0]
        assert run["state"] == "SUCCEEDED", run
        assert run["runtime_config"]["parameters"] == {
            "count": 7,
            "rate": 0.25,
            "flag": False,
            "items": ["a", "b", "c"],
            "label": "a",  # the defaults the form was filled with
            "conf": {"k": "v"},
        }
        experiment = made(http.get(f"{KFP}/experiments/{run['experiment_id']}"))
        assert experiment["display_name"] == "form-made" and experiment["namespace"] == NS


def test_recurring_run_from_the_form_then_disabled(
    browser: BrowserThread,  # noqa: F811
    single: Dashboard,
    world: dict[str, Any],
    screenshots: Path,
) -> None:
    async def visit(w: Watched) -> None:
        page = w.page
        await page.goto(
            f"{single.url}/ui/recurringruns/new?ns={NS}&pipeline={world['quick_pipeline']}"
        )
        await page.fill("#display_name", "hourly-echo")
        await page.select_option("#trigger", "periodic")
        await page.fill("#interval_second", "3600")
        await page.fill("#max_concurrency", "2")
        await page.fill("#param\\.word", "tick")
        await page.click("#create-recurring")
        await page.wait_for_url(re.compile(r"/ui/recurringruns\?ns="))
        row = page.locator("tr[data-name='hourly-echo']")
        assert "ENABLED" in await row.locator(".recurring-status").inner_text()
        assert "every 3600 s" in await row.inner_text()
        await row.locator("button", has_text="Disable").click()
        await page.wait_for_selector("tr[data-name='hourly-echo'] button:has-text('Enable')")
        assert (
            "DISABLED"
            in await page.locator("tr[data-name='hourly-echo'] .recurring-status").inner_text()
        )
        await w.shot("recurring")
        assert w.take_errors() == []

    visiting(browser, screenshots, "runs")(visit)
    with single.client() as http:
        found = made(http.get(f"{KFP}/recurringruns", params={"namespace": NS}))["recurringRuns"]
        mine = [r for r in found if r["display_name"] == "hourly-echo"]
        assert len(mine) == 1 and mine[0]["status"] == "DISABLED"
        assert mine[0]["max_concurrency"] == "2"
        assert mine[0]["trigger"]["periodic_schedule"]["interval_second"] == "3600"
        assert mine[0]["runtime_config"]["parameters"] == {"word": "tick"}


PY_PIPELINE = """\
from kfp import dsl


@dsl.component
def shout(word: str) -> str:
    return word.upper()


@dsl.pipeline
def twice(word: str = "hi"):
    first = shout(word=word)
    shout(word=first.output)
"""


def test_upload_a_compiled_pipeline_and_see_its_graph(
    browser: BrowserThread,  # noqa: F811
    single: Dashboard,
    world: dict[str, Any],
    screenshots: Path,
    tmp_path: Path,
) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text("from kfp import dsl\n\ndef oops(:\n    pass\n")
    script = tmp_path / "mine.py"
    script.write_text(PY_PIPELINE)

    async def visit(w: Watched) -> None:
        page = w.page
        await page.goto(f"{single.url}/ui/pipelines?ns={NS}")
        await page.set_input_files("#upload-file", str(broken))
        await expect(page.locator("#upload-text")).to_have_value(re.compile("kfp"))
        await page.click("#upload")
        error = page.locator(".field-error[data-field='file']")
        await error.wait_for()
        assert "syntax error at line 3" in await error.inner_text()
        await page.set_input_files("#upload-file", str(script))
        await expect(page.locator("#upload-text")).to_have_value(re.compile("dsl.pipeline"))
        await page.click("#upload")
        await page.wait_for_selector("#versions", timeout=90_000)
        assert await page.inner_text("#pipeline-name") == "mine"
        await page.click("#versions tbody th a")
        await page.wait_for_selector("#pipeline-graph svg")
        assert await page.locator("#pipeline-graph g.dag-node").count() == 2
        assert "shout" in await page.inner_text("#graph-tasks")
        await page.goto(f"{single.url}/ui/pipelines?ns={NS}")
        await page.set_input_files("#upload-file", str(world["typed_yaml"]))
        await expect(page.locator("#upload-text")).to_have_value(re.compile("pipelineInfo"))
        await page.fill("#upload-name", "uploaded-typed")
        await page.click("#upload")
        await page.wait_for_selector("#versions")
        assert await page.inner_text("#pipeline-name") == "uploaded-typed"
        await page.click("#versions tbody th a")
        await page.wait_for_selector("#pipeline-graph svg")
        assert await page.locator("#pipeline-graph g.dag-node").count() == 1
        assert "score" in await page.inner_text("#graph-tasks")
        assert "NUMBER_INTEGER" in await page.inner_text("#version-parameters")
        await w.shot("pipeline-version")
        assert all("422" in e for e in w.take_errors())

    visiting(browser, screenshots, "runs")(visit)
