"""``ketch demo``, the platform tour ``make demo`` runs, as the real command.

First with no terminal on standard input and its port taken: it takes a free port,
runs the pipeline (prepare, Katib trials, train, evaluate, register) through
``kfp.Client``, serves the registered version from the registry, queries it, prints
the dashboard's links and a closing line, stops the server and exits 0. Then again on
the same Ketch home with a terminal on standard input: the runs, experiments, model
and service of both tours are on the server it keeps serving (the second run,
no better, registered nothing), and its dashboard shows the first run's evaluation in
Chromium (the Metrics table with the accuracy, the confusion matrix and the ROC curve
drawn), until Ctrl-C stops it and the tour exits 0."""

from __future__ import annotations

import os
import pty
import re
import signal
import socket
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser import BrowserThread, browser  # noqa: F401  (fixture)
from tests.server.helpers import base_env, ketch_command
from tests.waiting import poll

pytest.importorskip("sklearn", reason="the tour's pipeline needs scikit-learn")
pytest.importorskip("model_registry", reason="the tour registers with the model-registry client")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

TASKS = ("prepare-data", "tune", "train-model", "evaluate", "register")
RUNS = "/apis/pipelines.ketch.dev/v1/namespaces/default/pipelineruns"
KATIB = "/apis/kubeflow.org/v1beta1/namespaces/default"
ISVC = "/apis/serving.kserve.io/v1beta1/namespaces/default/inferenceservices/breast-cancer"
REGISTRY = "/api/model_registry/v1"


def _tour(home: Path, port: int, *options: str, **popen: Any) -> subprocess.Popen[str]:
    command = [*ketch_command(), "demo", "--home", str(home), "--port", str(port), *options]
    return subprocess.Popen(command, env=base_env(home), text=True, **popen)


def _answers(url: str) -> bool:
    try:
        httpx.get(f"{url}/healthz", timeout=5)
    except httpx.TransportError:
        return False
    return True


def _checked(out: str, taken: int) -> tuple[str, str, str]:
    """The server's URL, the run id and the service's URL the tour printed."""
    listening = re.search(r"server listening on (http://127\.0\.0\.1:(\d+))", out)
    assert listening, out
    url = listening.group(1)
    assert int(listening.group(2)) != taken
    run = re.search(r"run ([0-9a-f-]{36}) submitted with kfp\.Client", out)
    assert run, out
    run_id = run.group(1)
    service = re.search(r"Ready at (http://127\.0\.0\.1:\d+)", out)
    assert service, out
    for task in TASKS:
        assert re.search(rf"{task}\s+SUCCEEDED", out), (task, out)
    assert f"{url}/\n" in out
    assert f"{url}/#/runs/details/{run_id}\n" in out
    assert f"POST {service.group(1)}/v2/models/breast-cancer/infer" in out
    closing = f"Tour complete: run {run_id} SUCCEEDED; breast-cancer-clf v1 serves as breast-cancer"
    assert closing in out, out
    assert "predicted malignant, benign (actual: malignant, benign)" in out
    return url, run_id, service.group(1)


def _chromium(request: pytest.FixtureRequest) -> BrowserThread | None:
    """The browser fixture's Chromium, or None (saying why) where it cannot start: the
    tour itself is still checked without it."""
    try:
        found: BrowserThread = request.getfixturevalue("browser")
    except pytest.skip.Exception as reason:
        print(f"the dashboard's viewers are not checked: {reason}")
        return None
    return found


def _viewers_shown(chromium: BrowserThread, url: str, run_id: str, folder: Path) -> None:
    """The run's page in Chromium: the evaluate task's panel, opened from its link in
    the task list, shows the Metrics table with the accuracy and the confusion matrix
    and ROC curve viewers with their charts drawn; a screenshot of it is saved."""

    async def visit(browser_: Any) -> None:
        context = await browser_.new_context(viewport={"width": 1280, "height": 800})
        errors: list[str] = []
        try:
            page = await context.new_page()
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            await page.goto(f"{url}/ui/runs/{run_id}")
            await page.wait_for_selector("#run-graph svg")
            await page.click('#tasks tr[data-task="evaluate"] a')
            await page.wait_for_url(f"**/ui/runs/{run_id}?*task=*")
            panel = page.locator("#task-panel")
            text = await panel.inner_text()
            for title in ("Metrics", "Confusion matrix", "ROC curve"):
                assert title in text, (title, text)
            metrics = await panel.locator("table.metrics").inner_text()
            assert re.search(r"accuracy\s+[01](\.\d+)?", metrics), metrics
            for title in ("Confusion matrix", "ROC curve"):
                chart = panel.locator(f'.viewer-chart[aria-label="{title}"]')
                await chart.locator("svg").wait_for()
                assert await chart.locator("svg path").count() >= 4, title
            # the matrix's labels and the curve's axis, as ECharts drew them
            assert "malignant" in await panel.locator(".viewer-chart").first.inner_text()
            await page.screenshot(path=str(folder / "tour-evaluate-viewers.png"), full_page=True)
            assert not errors, errors
        finally:
            await context.close()

    chromium.run(visit)


def test_the_tour_runs_end_to_end_then_serves_until_ctrl_c(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    home = tmp_path / "tour"
    log = tmp_path / "first.out"
    with socket.socket() as taken, log.open("w") as output:
        taken.bind(("127.0.0.1", 0))  # the port asked for is taken: a free one is used
        taken.listen()
        port = taken.getsockname()[1]
        first = _tour(home, port, stdin=subprocess.DEVNULL, stdout=output, stderr=output)
        try:
            first.wait(400)
        except subprocess.TimeoutExpired:
            first.terminate()  # the tour stops its server
            first.wait(60)
            raise AssertionError(f"the tour did not end:\n{log.read_text()}") from None
    out = log.read_text()
    assert first.returncode == 0, out
    assert f"port {port} is taken" in out
    url, first_run, service_url = _checked(out, port)
    assert "registered breast-cancer-clf v1" in out
    trials = re.findall(r"trial (tour-[0-9a-f]{6}-\w+) .* Succeeded accuracy=0\.\d+", out)
    assert len(set(trials)) == 4, out
    assert not _answers(url) and not _answers(service_url)  # stopped with the tour

    # again, on a terminal: it keeps serving what both tours made, until Ctrl-C
    controller, terminal = pty.openpty()
    log = tmp_path / "second.out"
    with log.open("w") as output:
        second = _tour(
            home,
            0,
            "--trials",
            "2",
            stdin=terminal,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    os.close(terminal)
    try:
        serving = poll(
            lambda: "press Ctrl-C to stop" in log.read_text() or second.poll() is not None,
            400,
            0.2,
        )
        assert serving and second.poll() is None, log.read_text()
        out = log.read_text()
        url, second_run, service_url = _checked(out, port)
        assert "nothing registered" in out
        with httpx.Client(base_url=url, timeout=30) as http:
            for run_id in (first_run, second_run):
                run = http.get(f"{RUNS}/{run_id}").json()
                assert run["status"]["state"] == "SUCCEEDED"
                assert [t["state"] for t in run["status"]["tasks"]] == ["SUCCEEDED"] * 5
            experiments = http.get(f"{KATIB}/experiments").json()["items"]
            done = sorted(e["status"]["trialsSucceeded"] for e in experiments)
            assert done == [2, 4], experiments
            model = http.get(f"{REGISTRY}/registered_model", params={"name": "breast-cancer-clf"})
            versions = http.get(f"{REGISTRY}/registered_models/{model.json()['id']}/versions")
            assert [v["name"] for v in versions.json()["items"]] == ["v1"]
            service = http.get(ISVC).json()
            assert service["spec"]["predictor"]["sklearn"]["storageUri"] == (
                "model-registry://breast-cancer-clf/v1"
            )
            assert service["status"]["url"] == service_url
        chromium = _chromium(request)
        if chromium is not None:
            shots = Path(os.environ.get("KETCH_UI_SCREENSHOTS") or tmp_path)
            shots.mkdir(parents=True, exist_ok=True)
            _viewers_shown(chromium, url, first_run, shots)
        os.killpg(second.pid, signal.SIGINT)  # Ctrl-C: the terminal signals its group
        assert second.wait(60) == 0, log.read_text()
    finally:
        if second.poll() is None:
            os.killpg(second.pid, signal.SIGKILL)
            second.wait()
        os.close(controller)
    assert "stopping the server" in log.read_text()
    assert not _answers(url) and not _answers(service_url)
