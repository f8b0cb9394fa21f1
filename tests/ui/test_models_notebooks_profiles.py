"""The Models, Notebooks and Profiles pages in a real Chromium against the real
``ketch up`` servers of :mod:`tests.ui.conftest`.

Models: a model registered with the real ``model-registry`` client is found by name and
state, its page shows its versions with their artifacts (URI, format) and typed custom
properties, an editor archives and restores it, and a version's deploy form creates an
InferenceService serving ``model-registry://<model>/<version>``.
Notebooks: the spawner form (images, CPU, memory, volumes, PodDefaults as
configurations) makes Notebooks (one real JupyterLab start, stopped at once), whose
stop, start and delete (after asking) change the stored notebooks.
Profiles: the owner adds a new user as a viewer (and removes him after asking), who then
sees the profile's pages without edit buttons and is refused another profile's; the
admin sees every profile. No page logs a console error; screenshots of each page are
saved."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.browser import BrowserThread, browser  # noqa: F401  (fixture)
from tests.tenancy.helpers import ADMIN, ALICE, BOB, directory_of
from tests.ui.browsing import Watched, sign_in, text_of, visiting
from tests.ui.conftest import ALICE_NS, BOB_NS, NOTEBOOK, PASSWORD, Dashboard, unique

pytestmark = pytest.mark.timeout(300)

REGISTRY = "/api/model_registry/v1"
ISVCS = "/apis/serving.kserve.io/v1beta1/namespaces/{ns}/inferenceservices"


@pytest.fixture
def registered(single: Dashboard) -> Iterator[tuple[str, str]]:
    """A model (and its version v1) registered in ``default`` with the real
    ``model-registry`` client: its name and id."""
    pytest.importorskip("model_registry", reason="the model-registry client is not installed")
    from model_registry import ModelRegistry

    from tests.registry.conftest import LoopRunner

    runner = LoopRunner()
    try:
        host, port = single.url.rsplit(":", 1)
        registry = ModelRegistry(
            host, int(port), author="ui-tester", is_secure=False, async_runner=runner.run
        )
        name = unique("ui-iris")
        model = registry.register_model(
            name,
            "file:///models/iris/1",
            model_format_name="sklearn",
            model_format_version="1",
            version="v1",
            metadata={"accuracy": 0.93, "epochs": 3, "tuned": False, "framework": "sklearn"},
        )
        yield name, str(model.id)
    finally:
        runner.close()


def test_models_list_detail_archive_and_deploy(
    browser: BrowserThread,  # noqa: F811
    single: Dashboard,
    screenshots: Path,
    registered: tuple[str, str],
) -> None:
    name, model_id = registered
    deployed = unique("ui-deploy")

    async def visit(w: Watched) -> None:
        page = w.page
        await page.goto(f"{single.url}/ui/models?ns=default")
        assert await page.locator(f'#models-table tr[data-name="{name}"]').count() == 1
        # found by a part of its name; another name finds nothing
        await page.fill("#model-search", name[-8:])
        await page.click("#model-find")
        await page.wait_for_url(re.compile(r".*q="))
        assert await page.locator("#models-table tbody th").all_inner_texts() == [name]
        await w.shot("models")
        await page.goto(f"{single.url}/ui/models?ns=default&q=no-such-model-at-all")
        assert "No registered model matches" in await text_of(page, "#models-table")
        await page.goto(f"{single.url}/ui/models?ns=default&q={name}")
        await page.get_by_role("link", name=name).click()
        await page.wait_for_url(re.compile(rf".*/ui/models/{model_id}\?ns=default$"))
        assert await text_of(page, "#model-name") == name
        assert "LIVE" in await text_of(page, "#model-state")
        version = page.locator('#versions tr[data-version="v1"]')
        shown = await version.inner_text()
        assert "file:///models/iris/1" in shown and "sklearn" in shown
        assert "accuracy" in shown and "(double)" in shown and "0.93" in shown
        await w.shot("model")
        # archive, then restore (an editor's buttons)
        await page.click('button[data-action="archive"]')
        await page.locator("#model-state", has_text="ARCHIVED").wait_for()
        await page.goto(f"{single.url}/ui/models?ns=default&state=ARCHIVED")
        assert name in await page.locator("#models-table tbody th").all_inner_texts()
        await page.goto(f"{single.url}/ui/models/{model_id}?ns=default")
        await page.click('button[data-action="restore"]')
        await page.locator("#model-state", has_text="LIVE").wait_for()
        # the version's page: artifacts, typed properties, lineage, deploy
        await page.click('#versions a:has-text("v1")')
        await page.wait_for_url(re.compile(r".*/ui/model-versions/\d+\?ns=default$"))
        assert "file:///models/iris/1" in await text_of(page, "#artifacts")
        properties = await text_of(page, "#version-properties")
        assert re.search(r"epochs\s+int\s+3", properties), properties
        assert re.search(r"tuned\s+bool\s+false", properties), properties
        assert "no recorded producer" in await text_of(page, "#lineage")
        assert await page.locator("#deploy-format").input_value() == "sklearn"
        await w.shot("model-version")
        await page.fill("#deploy-name", "Not A Name")
        await page.click("#deploy")
        await page.locator("#deploy-result .error").wait_for()
        assert "name" in await text_of(page, "#deploy-result")
        errors = w.take_errors()
        assert all("422" in e or "400" in e for e in errors), errors
        await page.fill("#deploy-name", deployed)
        await page.click("#deploy")
        await page.wait_for_url(
            re.compile(rf".*/ui/k/inferenceservices.serving.kserve.io/{deployed}\?ns=default$")
        )
        await w.shot("model-deployed")
        assert not w.take_errors()

    visiting(browser, screenshots, "models")(visit)
    with single.client() as http:
        made = http.get(ISVCS.format(ns="default") + f"/{deployed}")
        assert made.status_code == 200, made.text
        model = made.json()["spec"]["predictor"]["model"]
        assert model["storageUri"] == f"model-registry://{name}/v1"
        assert model["modelFormat"]["name"] == "sklearn"
        http.delete(ISVCS.format(ns="default") + f"/{deployed}")


POD_DEFAULTS = "/apis/kubeflow.org/v1alpha1/namespaces/default/poddefaults"
NOTEBOOKS = "/apis/kubeflow.org/v1/namespaces/default/notebooks"
STOPPED = "kubeflow-resource-stopped"


def _notebook(http: Any, name: str) -> dict[str, Any] | None:
    found = http.get(f"{NOTEBOOKS}/{name}")
    if found.status_code == 404:
        return None
    assert found.status_code == 200, found.text
    body: dict[str, Any] = found.json()
    return body


def test_notebooks_spawner_form_stop_start_and_delete(
    browser: BrowserThread,  # noqa: F811
    single: Dashboard,
    screenshots: Path,
) -> None:
    """The form makes a JupyterLab notebook (the one real start, stopped again at once)
    and a VS Code one (nothing runs: code-server is not installed, it waits); stop,
    start and delete change the stored notebooks."""
    lab, code = unique("ui-lab"), unique("ui-code")
    label = unique("ui-pd")
    with single.client() as http:
        made = http.post(
            POD_DEFAULTS,
            json={
                "apiVersion": "kubeflow.org/v1alpha1",
                "kind": "PodDefault",
                "metadata": {"name": label},
                "spec": {
                    "desc": f"Add {label}",
                    "selector": {"matchLabels": {label: "true"}},
                    "env": [{"name": "UI_PD", "value": "1"}],
                },
            },
        )
        assert made.status_code == 201, made.text

    async def visit(w: Watched) -> None:
        page = w.page
        await page.goto(f"{single.url}/ui/notebooks?ns=default")
        await page.click("#new-notebook")
        await page.wait_for_url(re.compile(r".*/ui/notebooks/new\?ns=default$"))
        assert await page.locator(f'input[data-poddefault="{label}"]').count() == 1
        assert "jupyter-scipy" in await page.locator("#nb-image").input_value()
        await w.shot("notebook-new")
        # a refusal names the field
        await page.fill("#nb-name", lab)
        await page.fill("#nb-cpu", "lots")
        await page.click("#launch")
        await page.locator("#spawn-result .error").wait_for()
        assert "cpu" in await text_of(page, "#spawn-result")
        errors = w.take_errors()
        assert all("400" in e or "422" in e for e in errors), errors
        await page.fill("#nb-cpu", "0.5")
        await page.check(f'input[data-poddefault="{label}"]')
        await page.click("#launch")
        await page.wait_for_url(re.compile(r".*/ui/notebooks\?ns=default$"))
        row = page.locator(f'#notebooks tr[data-name="{lab}"]')
        await row.wait_for()
        # stop it at once: one real start at most
        await row.locator("button.stop").click()
        await page.locator(f'#notebooks tr[data-name="{lab}"] button.start').wait_for()
        # a VS Code notebook: the form's other server type
        await page.goto(f"{single.url}/ui/notebooks/new?ns=default")
        await page.fill("#nb-name", code)
        await page.check('input[name="serverType"][value="group-one"]')
        await page.select_option("#nb-image", label=await _code_image(page))
        await page.uncheck("#nb-workspace")
        await page.click("#launch")
        await page.wait_for_url(re.compile(r".*/ui/notebooks\?ns=default$"))
        code_row = page.locator(f'#notebooks tr[data-name="{code}"]')
        await code_row.locator("button.stop").click()
        await page.locator(f'#notebooks tr[data-name="{code}"] button.start').wait_for()
        await page.locator(f'#notebooks tr[data-name="{code}"] button.start').click()
        await page.locator(f'#notebooks tr[data-name="{code}"] button.stop').wait_for()
        await w.shot("notebooks")
        # delete asks first; dismissed, nothing happens
        page.once("dialog", lambda d: asyncio.ensure_future(d.dismiss()))
        await page.locator(f'#notebooks tr[data-name="{code}"] button.delete').click()
        assert await page.locator(f'#notebooks tr[data-name="{code}"]').count() == 1
        page.once("dialog", lambda d: asyncio.ensure_future(d.accept()))
        await page.locator(f'#notebooks tr[data-name="{code}"] button.delete').click()
        await page.locator(f'#notebooks tr[data-name="{code}"]').wait_for(state="detached")
        assert not w.take_errors()

    with single.client() as http:
        try:
            visiting(browser, screenshots, "notebooks")(visit)
            stored = _notebook(http, lab)
            assert stored is not None
            assert STOPPED in stored["metadata"]["annotations"]
            assert stored["metadata"]["labels"][label] == "true"
            pod = stored["spec"]["template"]["spec"]
            (container,) = pod["containers"]
            assert "jupyter-scipy" in container["image"]
            assert container["resources"]["requests"]["cpu"] == "0.5"
            assert any(m["mountPath"] == "/home/jovyan" for m in container["volumeMounts"])
            assert _notebook(http, code) is None
        finally:
            for name in (lab, code):
                http.delete(f"{NOTEBOOKS}/{name}")
            http.delete(f"{POD_DEFAULTS}/{label}")


async def _code_image(page: Any) -> str:
    options = await page.locator('#nb-image optgroup[label="VS Code"] option').all_inner_texts()
    return str(options[0])


def test_the_owner_adds_a_viewer_who_then_reads_only(
    browser: BrowserThread,  # noqa: F811
    multi: Dashboard,
    screenshots: Path,
) -> None:
    """Alice adds a new user to her profile as a viewer; he sees its profile, notebooks
    and models without an edit button, and Bob's profile is refused him; Alice removes
    him again (after asking); the admin sees every profile."""
    dave = f"{unique('dave')}@example.com"
    for directory in directory_of(multi.server):
        directory.add(dave)
        directory.set_password(dave, PASSWORD)

    async def owner(w: Watched) -> None:
        page = w.page
        await sign_in(w, multi.url, ALICE)
        await page.goto(f"{multi.url}/ui/profiles?ns={ALICE_NS}")
        assert await text_of(page, "#profile-owner") == ALICE
        assert "manage" in await text_of(page, "#profile-access")
        assert "owner" in await text_of(page, f'#contributors tr[data-email="{ALICE}"]')
        assert BOB_NS not in await page.content()  # Alice sees no other profile
        # a refusal names the field
        await page.evaluate("document.querySelector('#contributor-email').type = 'text'")
        await page.fill("#contributor-email", "not an email")
        await page.click("#add")
        await page.locator("#contributor-result .error").wait_for()
        assert "email" in await text_of(page, "#contributor-result")
        errors = w.take_errors()
        assert all("422" in e or "400" in e for e in errors), errors
        await page.fill("#contributor-email", dave)
        await page.select_option("#contributor-role", "view")
        await page.click("#add")
        await page.locator(f'#contributors tr[data-email="{dave}"]').wait_for()
        assert "view" in await text_of(page, f'#contributors tr[data-email="{dave}"]')
        await w.shot("profile-owner")
        assert not w.take_errors()

    async def viewer(w: Watched) -> None:
        page = w.page
        await sign_in(w, multi.url, dave)
        assert urlsplit(page.url).query == f"ns={ALICE_NS}"
        await page.goto(f"{multi.url}/ui/profiles?ns={ALICE_NS}")
        assert await text_of(page, "#profile-access") == "read-only"
        assert await page.locator("#add-contributor").count() == 0
        assert await page.locator("#contributors details.remove").count() == 0
        await w.shot("profile-viewer")
        await page.goto(f"{multi.url}/ui/notebooks?ns={ALICE_NS}")
        assert await page.locator(f'#notebooks tr[data-name="{NOTEBOOK}"]').count() == 1
        for button in ("#new-notebook", "button.start", "button.stop", "button.delete"):
            assert await page.locator(button).count() == 0, button
        await page.goto(f"{multi.url}/ui/models?ns={ALICE_NS}")
        assert await page.locator("#models-table").count() == 1
        assert not w.take_errors()
        for where in ("profiles", "notebooks", "models", "notebooks/new"):
            await page.goto(f"{multi.url}/ui/{where}?ns={BOB_NS}")
            assert await text_of(page, "main h1") == "Not allowed", where
        await page.goto(f"{multi.url}/ui/notebooks/new?ns={ALICE_NS}")
        assert await text_of(page, "main h1") == "Not allowed"
        assert all("403" in e for e in w.take_errors())

    async def admin(w: Watched) -> None:
        page = w.page
        await sign_in(w, multi.url, ADMIN)
        await page.goto(f"{multi.url}/ui/profiles?ns={ALICE_NS}")
        assert await page.locator(f'#profiles tr[data-name="{BOB_NS}"]').count() == 1
        assert BOB in await text_of(page, f'#profiles tr[data-name="{BOB_NS}"]')
        await w.shot("profiles-admin")
        assert not w.take_errors()

    async def removal(w: Watched) -> None:
        page = w.page
        await sign_in(w, multi.url, ALICE)
        await page.goto(f"{multi.url}/ui/profiles?ns={ALICE_NS}")
        row = page.locator(f'#contributors tr[data-email="{dave}"]')
        await row.locator("summary").click()
        await row.locator("button.confirm-remove").click()
        await page.locator(f'#contributors tr[data-email="{dave}"]').wait_for(state="detached")
        assert ALICE in await text_of(page, "#contributors")
        assert not w.take_errors()

    run = visiting(browser, screenshots, "profiles")
    run(owner)
    try:
        run(viewer)
        run(admin)
    finally:
        run(removal)
