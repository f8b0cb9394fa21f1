"""The Katib, Training and Serving pages in a real Chromium against the session's real
``ketch up`` servers, on objects made through the real API: a Katib Experiment of three
trials of a Python command printing its metric (random search), a PyTorchJob of two
replicas whose command prints its environment, and an InferenceService serving a tiny
scikit-learn model saved here. The pages show names and states as text, the
experiment's parallel-coordinates plot and trials table, a trial's metrics and log,
each replica's log, the service's try-it panel answers with a prediction and its form
makes a service that becomes Ready. With users, another profile's owner is refused
every page and write, and a viewer sees no create form. The Katib plot's screenshot
is saved as ``katib-plot.png``."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser import BrowserThread, browser  # noqa: F401  (fixture)
from tests.tenancy.helpers import ALICE, BOB, CAROL
from tests.ui.browsing import Watched, text_of, visiting
from tests.ui.conftest import ALICE_NS, BATCH_JOB, NS, Dashboard, made, unique
from tests.waiting import wait_for

pytestmark = pytest.mark.timeout(300)

KATIB = "/apis/kubeflow.org/v1beta1"
PRINTS = (
    "import sys, time\n"
    "x = float(sys.argv[1])\n"
    "for step in range(3):\n"
    "    print(f'accuracy={1 - (x - 0.3) ** 2 - (2 - step) * 0.01:.4f}', flush=True)\n"
    "    time.sleep(0.05)\n"
)


def experiment(name: str, trials: int = 3) -> dict[str, Any]:
    container = {
        "name": "training-container",
        "image": "python:3.12",
        "command": ["python", "-c", PRINTS, "${trialParameters.x}", "${trialParameters.opt}"],
    }
    return {
        "apiVersion": "kubeflow.org/v1beta1",
        "kind": "Experiment",
        "metadata": {"name": name},
        "spec": {
            "objective": {"type": "maximize", "objectiveMetricName": "accuracy"},
            "algorithm": {
                "algorithmName": "random",
                "algorithmSettings": [{"name": "random_state", "value": "5"}],
            },
            "maxTrialCount": trials,
            "parallelTrialCount": trials,
            "parameters": [
                {
                    "name": "x",
                    "parameterType": "double",
                    "feasibleSpace": {"min": "0", "max": "1"},
                },
                {
                    "name": "opt",
                    "parameterType": "categorical",
                    "feasibleSpace": {"list": ["sgd", "adam"]},
                },
            ],
            "trialTemplate": {
                "primaryContainerName": "training-container",
                "trialParameters": [
                    {"name": "x", "reference": "x"},
                    {"name": "opt", "reference": "opt"},
                ],
                "trialSpec": {
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "spec": {
                        "template": {"spec": {"containers": [container], "restartPolicy": "Never"}}
                    },
                },
            },
        },
    }


def _true(obj: dict[str, Any], kind: str) -> bool:
    return any(
        c.get("type") == kind and c.get("status") == "True"
        for c in (obj.get("status") or {}).get("conditions") or []
    )


@pytest.fixture(scope="module")
def tuned(single: Dashboard) -> Iterator[str]:
    """A Katib experiment of three trials in ``ui-demo``, once it succeeded."""
    name = unique("ui-tune")
    with single.client() as http:
        made(http.post(f"{KATIB}/namespaces/{NS}/experiments", json=experiment(name)))

        def done() -> bool:
            found = made(http.get(f"{KATIB}/namespaces/{NS}/experiments/{name}"))
            assert not _true(found, "Failed"), found["status"]
            return _true(found, "Succeeded")

        wait_for(done, 180, 0.2, what=f"experiment {name} to succeed")
        yield name
        http.delete(f"{KATIB}/namespaces/{NS}/experiments/{name}")


def test_katib_experiments_plot_trials_and_a_trials_log(
    browser: BrowserThread,  # noqa: F811
    single: Dashboard,
    tuned: str,
    screenshots: Path,
) -> None:
    async def visit(w: Watched) -> None:
        page = w.page
        await page.goto(f"{single.url}/ui/katib?ns={NS}")
        row = page.locator(f'#experiments-table tr[data-name="{tuned}"]')
        shown = await row.inner_text()
        assert "Succeeded" in shown and "accuracy=" in shown and "random" in shown, shown
        await w.shot("katib-list")
        await row.get_by_role("link", name=tuned).click()
        await page.wait_for_url(re.compile(rf".*/ui/katib/{tuned}\?ns={NS}$"))
        assert "Succeeded" in await text_of(page, "#experiment-state")
        trials = page.locator("#trials-table tbody tr")
        assert await trials.count() == 3
        for text in await trials.all_inner_texts():
            assert "Succeeded" in text and re.search(r"\b0\.\d+", text), text
        # the parallel-coordinates plot: ECharts drew the axes of both parameters and
        # the objective, a line per trial
        plot = page.locator("#parallel .chart svg")
        await plot.wait_for()
        drawn = await page.locator("#parallel .chart").inner_text()
        for axis in ("x", "opt", "accuracy"):
            assert axis in drawn, drawn
        assert await page.locator("#parallel .chart svg path").count() >= 3
        await page.locator("#progress .chart svg").wait_for()
        assert "best so far" in await page.locator("#progress .chart").inner_text()
        await page.locator("#parallel").screenshot(path=str(screenshots / "katib-plot.png"))
        await w.shot("katib-experiment")
        # a trial: its metrics as text, its curve, its log
        first = trials.first.locator("th a").first
        trial = (await first.inner_text()).strip()
        await first.click()
        await page.wait_for_url(re.compile(rf".*/ui/katib/{tuned}/trials/{trial}\?ns={NS}$"))
        assert "Succeeded" in await text_of(page, "#trial-state")
        assert "accuracy" in await text_of(page, '#metrics tr[data-metric="accuracy"]')
        await page.locator("#curve .chart svg").wait_for()
        log = page.locator("#trial-log pre")
        await log.wait_for()
        assert "accuracy=" in await log.inner_text()
        await w.shot("katib-trial")
        assert not w.take_errors()

    visiting(browser, screenshots, "single")(visit)


def test_katib_form_creates_an_experiment_and_yaml_refusals_name_the_field(
    browser: BrowserThread,  # noqa: F811
    single: Dashboard,
    screenshots: Path,
) -> None:
    name = unique("ui-form")

    async def visit(w: Watched) -> None:
        page = w.page
        await page.goto(f"{single.url}/ui/katib?ns={NS}")
        await page.click("#new-experiment")
        await page.wait_for_url(re.compile(r".*/ui/katib/new\?ns=ui-demo$"))
        # YAML the API refuses: the error names the field, beside its line
        editor = page.locator("#yaml-text")
        text = await editor.input_value()
        await editor.fill(text.replace("maxTrialCount: 3", "maxTrialCount: -2"))
        await page.click("#create-yaml")
        error = page.locator('.field-error[data-field="spec.maxTrialCount"]')
        await error.wait_for()
        assert "maxTrialCount: -2" in await error.inner_text()
        assert all("422" in e for e in w.take_errors())
        await w.shot("katib-new-refused")
        await page.fill("#f-name", name)
        await page.fill("#f-max", "1")
        await page.click("#create-experiment")
        await page.wait_for_url(re.compile(rf".*/ui/katib/{name}\?ns={NS}$"))
        assert await text_of(page, "#experiment-name") == name
        assert not w.take_errors()

    visiting(browser, screenshots, "single")(visit)
    with single.client() as http:
        found = made(http.get(f"{KATIB}/namespaces/{NS}/experiments/{name}"))
        assert found["spec"]["maxTrialCount"] == 1
        assert [p["name"] for p in found["spec"]["parameters"]] == ["lr", "layers"]

        def done() -> bool:
            return _true(made(http.get(f"{KATIB}/namespaces/{NS}/experiments/{name}")), "Succeeded")

        wait_for(done, 120, 0.2, what=f"the form's experiment {name} to succeed")
        http.delete(f"{KATIB}/namespaces/{NS}/experiments/{name}")


def _status(http: httpx.Client, path: str, **kwargs: Any) -> int:
    return http.request(kwargs.pop("method", "GET"), path, **kwargs).status_code


def test_another_profile_is_refused_and_a_viewer_gets_no_forms(multi: Dashboard) -> None:
    alice = f"?ns={ALICE_NS}"
    pages = [
        f"/ui/katib{alice}",
        f"/ui/katib/new{alice}",
        f"/ui/katib/any{alice}",
        f"/ui/katib/any/trials/any-trial{alice}",
        f"/ui/katib/any/trials/any-trial/log{alice}",
        f"/ui/pods/any-pod/log{alice}",
        f"/ui/training{alice}",
        f"/ui/training/pytorchjobs.kubeflow.org/any{alice}",
        f"/ui/serving{alice}",
        f"/ui/serving/new{alice}",
        f"/ui/serving/any{alice}",
        f"/ui/serving/any/model{alice}",
        f"/ui/serving/any/metrics{alice}",
    ]
    with multi.client(BOB) as bob:
        for path in pages:
            assert _status(bob, path) == 403, path
        for path in (
            "/ui/katib",
            "/ui/serving",
            "/ui/serving/any/infer",
            "/ui/serving/any/traffic",
        ):
            assert _status(bob, f"{path}{alice}", method="POST", json={"name": "x"}) == 403, path
    with multi.client(CAROL) as carol:  # views Alice's profile
        listed = carol.get(f"/ui/katib{alice}")
        assert listed.status_code == 200 and 'id="new-experiment"' not in listed.text
        assert _status(carol, f"/ui/katib/new{alice}") == 403
        assert _status(carol, f"/ui/katib{alice}", method="POST", json={"name": "x"}) == 403
        listed = carol.get(f"/ui/serving{alice}")
        assert listed.status_code == 200 and 'id="new-service"' not in listed.text
        assert _status(carol, f"/ui/serving/new{alice}") == 403
        body = {"action": "promote"}
        assert _status(carol, f"/ui/serving/any/traffic{alice}", method="POST", json=body) == 403
        assert _status(carol, f"/ui/training{alice}") == 200
    with multi.client(ALICE) as alice_http:
        assert 'id="new-experiment"' in alice_http.get(f"/ui/katib{alice}").text


# -- training -------------------------------------------------------------------------------

ENV = "import os; print('replica', os.environ['RANK'], 'of', os.environ['WORLD_SIZE'], flush=True)"


def _replica_spec() -> dict[str, Any]:
    container = {"name": "pytorch", "image": "python:3.12", "command": ["python", "-c", ENV]}
    return {
        "replicas": 1,
        "restartPolicy": "Never",
        "template": {"spec": {"containers": [container]}},
    }


@pytest.fixture(scope="module")
def trained(single: Dashboard) -> Iterator[str]:
    """A PyTorchJob of two replicas (a master and a worker printing their rank) in
    ``ui-demo``, once it succeeded."""
    name = unique("ui-pt")
    job = {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": {"name": name},
        "spec": {"pytorchReplicaSpecs": {"Master": _replica_spec(), "Worker": _replica_spec()}},
    }
    jobs = f"/apis/kubeflow.org/v1/namespaces/{NS}/pytorchjobs"
    with single.client() as http:
        made(http.post(jobs, json=job))

        def done() -> bool:
            found = made(http.get(f"{jobs}/{name}"))
            assert not _true(found, "Failed"), found["status"]
            return _true(found, "Succeeded")

        wait_for(done, 120, 0.2, what=f"PyTorchJob {name} to succeed")
        yield name
        http.delete(f"{jobs}/{name}")


def test_training_jobs_replicas_and_their_logs(
    browser: BrowserThread,  # noqa: F811
    single: Dashboard,
    trained: str,
    screenshots: Path,
) -> None:
    async def visit(w: Watched) -> None:
        page = w.page
        await page.goto(f"{single.url}/ui/training?ns={NS}")
        row = page.locator(f'#jobs-table tr[data-name="{trained}"]')
        shown = await row.inner_text()
        assert "PyTorchJob" in shown and "Succeeded" in shown, shown
        batch = await text_of(page, f'#jobs-table tr[data-name="{BATCH_JOB}"]')
        assert "Complete" in batch, batch
        await w.shot("training-list")
        await row.get_by_role("link", name=trained).click()
        await page.wait_for_url(
            re.compile(rf".*/ui/training/pytorchjobs.kubeflow.org/{trained}\?ns=")
        )
        assert "Succeeded" in await text_of(page, "#job-state")
        pods = page.locator("#pods tbody tr")
        assert await pods.count() == 2
        for text in await pods.all_inner_texts():
            assert "Succeeded" in text, text
        assert await page.locator('#replicas tr[data-role="Master"]').count() == 1
        assert await page.locator('#replicas tr[data-role="Worker"]').count() == 1
        for pod, rank in ((f"{trained}-master-0", 0), (f"{trained}-worker-0", 1)):
            log = page.locator(f'.pod-log[data-pod="{pod}"] pre')
            await log.wait_for()
            assert f"replica {rank} of 2" in await log.inner_text()
        assert "Succeeded" in await text_of(page, "#conditions")
        await w.shot("training-job")
        assert not w.take_errors()

    visiting(browser, screenshots, "single")(visit)


# -- serving ---------------------------------------------------------------------------------

ROW = [5.1, 3.5, 1.4, 0.2]
SERVICES = f"/apis/serving.kserve.io/v1beta1/namespaces/{NS}/inferenceservices"


@pytest.fixture(scope="module")
def iris_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True)
    folder = tmp_path_factory.mktemp("ui-iris") / "iris"
    folder.mkdir()
    joblib.dump(LogisticRegression(max_iter=500).fit(X, y), folder / "model.joblib")
    return f"file://{folder}"


def test_serving_form_try_it_metrics_and_logs(
    browser: BrowserThread,  # noqa: F811
    single: Dashboard,
    iris_uri: str,
    screenshots: Path,
) -> None:
    name = unique("ui-iris")

    async def visit(w: Watched) -> None:
        page = w.page
        await page.goto(f"{single.url}/ui/serving?ns={NS}")
        await page.click("#new-service")
        await page.wait_for_url(re.compile(r".*/ui/serving/new\?ns=ui-demo$"))
        await page.fill("#s-name", name)
        await page.fill("#s-uri", iris_uri)
        await page.select_option("#s-format", "sklearn")
        await w.shot("serving-new")
        await page.click("#create-service")
        await page.wait_for_url(re.compile(rf".*/ui/serving/{name}\?ns={NS}$"))
        with single.client() as http:

            def ready() -> bool:
                return _true(made(http.get(f"{SERVICES}/{name}")), "Ready")

            wait_for(ready, 120, 0.2, what=f"InferenceService {name} to be Ready")
        await page.reload()
        assert "Ready" in await text_of(page, "#service-ready")
        assert "100%" in await text_of(page, "#traffic")
        assert await page.locator("#promote").count() == 1  # the one local user may edit
        # try it: the request is built from the model's metadata, then sent
        request = page.locator("#try-request")
        await request.wait_for()
        built = await request.input_value()
        assert '"input-0"' in built and '"FP64"' in built, built
        await request.fill(
            built.replace("0,\n        0,\n        0,\n        0", ", ".join(map(str, ROW)))
        )
        await page.click("#send")
        prediction = page.locator('#prediction tr[data-output="predict"]')
        await prediction.wait_for()
        assert "[0]" in await prediction.inner_text()  # setosa
        # the charts read /metrics: the request shows in the numbers
        summary = page.locator("#metrics-summary")
        await page.wait_for_function(
            "() => /^[1-9]\\d* requests in all/.test("
            "document.getElementById('metrics-summary').textContent)",
            timeout=15000,
        )
        assert "ms mean latency" in await summary.inner_text()
        await page.locator("#metrics .chart svg").wait_for()
        # the replica's log
        log = page.locator(".pod-log pre").first
        await log.wait_for()
        await w.shot("serving-service")
        await page.goto(f"{single.url}/ui/serving?ns={NS}")
        row = await text_of(page, f'#services-table tr[data-name="{name}"]')
        assert "Ready" in row and "100%" in row and "http://127.0.0.1:" in row, row
        await w.shot("serving-list")
        # a poll (a sample of /metrics, a live log) in flight as the page was left is cut
        # off by the browser: no error of the page
        left = [e for e in w.take_errors() if "ERR_ABORTED" not in e]
        assert not left

    try:
        visiting(browser, screenshots, "single")(visit)
    finally:
        with single.client() as http:
            http.delete(f"{SERVICES}/{name}")
