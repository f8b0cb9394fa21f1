"""The dashboard in a real Chromium (Playwright driving Debian's ``chromium``) against
real ``ketch up`` servers holding real objects: the home page shows them as text with
their states and a chart; every navigation link opens its page; a kind's list leads to
an object's page, whose YAML editor shows the API's refusal at the field and saves a
fix, and whose delete asks first; the links ``kfp.Client`` prints land on Ketch's run
and experiment pages; the pages fit a phone's width and work from the keyboard; with
users, a viewer who signs in sees her profile's objects without edit or delete, and
nothing of another profile. No page logs a console error. Screenshots of each page are
saved (their folder is printed; ``KETCH_UI_SCREENSHOTS`` chooses it)."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.browser import BrowserThread, browser  # noqa: F401  (fixture)
from tests.tenancy.helpers import BOB, CAROL
from tests.ui.browsing import PHONE, Watched, sign_in, text_of, visiting
from tests.ui.conftest import (
    ALICE_NS,
    BATCH_JOB,
    BOB_NS,
    DOOMED,
    EDIT_JOB,
    NOTEBOOK,
    NS,
    Dashboard,
)

pytestmark = pytest.mark.timeout(300)

FIELD = "spec.pytorchReplicaSpecs.Master.replicas"


def test_home_shows_the_objects_and_every_link_opens_its_page(
    browser: BrowserThread,  # noqa: F811
    single: Dashboard,
    screenshots: Path,
) -> None:
    async def visit(w: Watched) -> None:
        page = w.page
        await page.goto(f"{single.url}/")
        assert urlsplit(page.url).query == "ns=default"
        await page.select_option("#ns-select", NS)  # the selector shows its choice at once
        await page.wait_for_url(re.compile(r".*ns=ui-demo"))
        await page.locator(".chart svg").first.wait_for()
        run = page.locator(f'#runs tr:has(a[href="/ui/runs/{single.run_id}"])')
        assert "ui-adder" in await run.inner_text() and "SUCCEEDED" in await run.inner_text()
        assert "Complete" in await text_of(page, f'#jobs tr[data-name="{BATCH_JOB}"]')
        assert "Suspended" in await text_of(page, f'#jobs tr[data-name="{EDIT_JOB}"]')
        assert "Stopped" in await text_of(page, f'#notebooks tr[data-name="{NOTEBOOK}"]')
        assert await page.locator("#events tbody tr").count() >= 1
        await w.shot("home")
        links = page.locator('nav[aria-label="Main"] a')
        labels = [str(t).strip() for t in await links.all_inner_texts()]
        assert "Runs" in labels and "Notebooks" in labels
        for label in labels:
            await page.goto(f"{single.url}/?ns={NS}")
            await page.get_by_role("link", name=label, exact=True).first.click()
            await page.wait_for_load_state("load")
            heading = await text_of(page, "main h1")
            assert heading, label
            current = page.locator('nav[aria-label="Main"] a[aria-current="page"]')
            assert (await current.inner_text()).strip() == label
            assert f"ns={NS}" in page.url, (label, page.url)
            await w.shot(f"nav-{label.lower()}")
        assert not w.take_errors()

    visiting(browser, screenshots, "single")(visit)


def test_kfp_client_links_land_on_ketchs_pages(
    browser: BrowserThread,  # noqa: F811
    single: Dashboard,
    screenshots: Path,
) -> None:
    async def visit(w: Watched) -> None:
        page = w.page
        await page.goto(f"{single.url}/#/runs/details/{single.run_id}")
        await page.wait_for_url(f"{single.url}/ui/runs/{single.run_id}")
        assert "SUCCEEDED" in await text_of(page, "#run-state")
        tasks = page.locator("#tasks tbody tr")
        assert sorted(await tasks.evaluate_all("rows => rows.map(r => r.dataset.task)")) == [
            "add",
            "add-2",
        ]
        assert "SUCCEEDED" in await text_of(page, '#tasks tr[data-task="add-2"]')
        await w.shot("run")
        await page.goto(f"{single.url}/#/experiments/details/{single.experiment_id}")
        await page.wait_for_url(f"{single.url}/ui/experiments/{single.experiment_id}")
        assert await text_of(page, "#experiment-name") == "ui-experiment"
        assert await page.locator(f'#runs-table a[href="/ui/runs/{single.run_id}"]').count() == 1
        assert not w.take_errors()

    visiting(browser, screenshots, "single")(visit)


def test_list_object_edit_with_a_refusal_at_the_field_and_delete(
    browser: BrowserThread,  # noqa: F811
    single: Dashboard,
    screenshots: Path,
) -> None:
    async def visit(w: Watched) -> None:
        page = w.page
        await page.goto(f"{single.url}/ui/k/pytorchjobs.kubeflow.org?ns={NS}")
        await w.shot("list")
        await page.get_by_role("link", name=EDIT_JOB).click()
        await page.wait_for_url(re.compile(rf".*/ui/k/pytorchjobs.kubeflow.org/{EDIT_JOB}\?ns="))
        assert f"name: {EDIT_JOB}" in await text_of(page, "#yaml")
        await w.shot("object")
        await page.click("#edit")
        editor = page.locator("#yaml-text")
        text = await editor.input_value()
        await editor.fill(text.replace("replicas: 1", "replicas: -1"))
        await page.click("#save")
        error = page.locator(f'.field-error[data-field="{FIELD}"]')
        await error.wait_for()
        shown = await error.inner_text()
        assert FIELD in shown and "greater than or equal to 0" in shown and "replicas: -1" in shown
        assert await editor.get_attribute("aria-invalid") == "true"
        await error.locator("[data-goto-line]").click()
        assert await page.evaluate("document.activeElement.id") == "yaml-text"
        selected = await page.evaluate(
            "(() => { const t = document.activeElement;"
            " return t.value.slice(t.selectionStart, t.selectionEnd); })()"
        )
        assert selected.strip() == "replicas: -1"
        await w.shot("edit-refused")
        # the refusal's 422 is the only error the browser logged
        assert all("422" in e for e in w.take_errors())
        fixed = (await editor.input_value()).replace("replicas: -1", "replicas: 1")
        await editor.fill(fixed.replace("  labels: {}", "  labels:\n    edited: by-the-dashboard"))
        await page.click("#save")
        await page.wait_for_url(re.compile(rf".*/{EDIT_JOB}\?ns={NS}$"))
        assert "edited: by-the-dashboard" in await text_of(page, "#yaml")
        # delete asks first, then goes back to the kind's list
        await page.goto(f"{single.url}/ui/k/configmaps/{DOOMED}?ns={NS}")
        await page.locator("#delete summary").click()
        await w.shot("delete-confirm")
        await page.click("#confirm-delete")
        await page.wait_for_url(re.compile(rf".*/ui/k/configmaps\?ns={NS}$"))
        assert await page.locator(f'tr[data-name="{DOOMED}"]').count() == 0
        assert await page.locator(f'tr[data-name="{NS}-plans"]').count() == 1
        assert not w.take_errors()

    visiting(browser, screenshots, "single")(visit)


def test_pages_fit_a_phone_and_work_from_the_keyboard(
    browser: BrowserThread,  # noqa: F811
    single: Dashboard,
    screenshots: Path,
) -> None:
    async def visit(w: Watched) -> None:
        page = w.page
        for where in ("/", f"/ui/runs/{single.run_id}", f"/ui/k/jobs.batch/{BATCH_JOB}"):
            await page.goto(f"{single.url}{where}?ns={NS}")
            width = await page.evaluate("document.documentElement.scrollWidth")
            assert width <= PHONE["width"], (where, width)
            await w.shot("phone-" + (where.strip("/").replace("/", "-") or "home")[:40])
        # keyboard: the first stop skips to the content; the navigation is reachable
        await page.goto(f"{single.url}/?ns={NS}")
        await page.keyboard.press("Tab")
        assert await page.evaluate("document.activeElement.textContent") == "Skip to content"
        await page.keyboard.press("Enter")
        assert await page.evaluate("document.activeElement.id") == "content"
        await page.goto(f"{single.url}/?ns={NS}")
        for _ in range(12):
            await page.keyboard.press("Tab")
            if await page.evaluate("document.activeElement.textContent") == "Runs":
                break
        else:
            raise AssertionError("the Runs link is not reachable with Tab")
        await page.keyboard.press("Enter")
        await page.wait_for_url(re.compile(r".*/ui/runs\?ns=ui-demo$"))
        assert not w.take_errors()

    visiting(browser, screenshots, "phone", PHONE)(visit)


def test_a_viewer_sees_her_profile_without_edit_and_nothing_of_another(
    browser: BrowserThread,  # noqa: F811
    multi: Dashboard,
    screenshots: Path,
) -> None:
    async def visit(w: Watched) -> None:
        page = w.page
        await sign_in(w, multi.url, CAROL)
        assert urlsplit(page.url).query == f"ns={ALICE_NS}"
        assert await text_of(page, "#user") == CAROL
        options = await page.locator("#ns-select option").evaluate_all("os => os.map(o => o.value)")
        assert options == [ALICE_NS]
        assert "SUCCEEDED" in await text_of(page, "#runs tbody")
        assert "Stopped" in await text_of(page, f'#notebooks tr[data-name="{NOTEBOOK}"]')
        await w.shot("viewer-home")
        await page.click(f'#jobs a:has-text("{EDIT_JOB}")')
        await page.wait_for_url(re.compile(rf".*/{EDIT_JOB}\?ns={ALICE_NS}$"))
        assert f"name: {EDIT_JOB}" in await text_of(page, "#yaml")
        assert await page.locator("#edit").count() == 0
        assert await page.locator("#delete").count() == 0
        await w.shot("viewer-object")
        assert not w.take_errors()
        # another profile's pages: refused, naming nothing of it
        await page.goto(f"{multi.url}/?ns={BOB_NS}")
        assert await text_of(page, "main h1") == "Not allowed"
        assert f"{BOB_NS}-plans" not in await page.content()
        await w.shot("viewer-refused")
        assert all("403" in e for e in w.take_errors())
        await page.click("#sign-out")
        await page.wait_for_url(re.compile(r".*/auth/login$"))
        assert not w.take_errors()

    visiting(browser, screenshots, "users")(visit)


def test_another_owner_sees_only_his_profile(
    browser: BrowserThread,  # noqa: F811
    multi: Dashboard,
    screenshots: Path,
) -> None:
    async def visit(w: Watched) -> None:
        page = w.page
        await sign_in(w, multi.url, BOB)
        assert urlsplit(page.url).query == f"ns={BOB_NS}"
        content = await page.content()
        assert ALICE_NS not in content and multi.run_id not in content
        assert EDIT_JOB in await text_of(page, "#jobs")
        await page.goto(f"{multi.url}/ui/k/profiles.kubeflow.org?ns={BOB_NS}")
        profiles = await page.locator("table.list tbody th").all_inner_texts()
        assert profiles == [BOB_NS]
        await w.shot("owner-profiles")
        assert not w.take_errors()

    visiting(browser, screenshots, "users")(visit)
