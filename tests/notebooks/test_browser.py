"""JupyterLab in a real Chromium through Ketch, with users: Alice signs in on Ketch's
sign-in page (her visit to the notebook sends her there and back), JupyterLab loads
from ``/notebook/<ns>/<name>/lab``, she makes a Python notebook from the launcher,
types ``1+1``, runs it with Shift+Enter and sees ``2``. Everything the page asked for,
its kernel's websocket too, went to Ketch's origin; no request through the proxy
failed and the console shows no error about one; the notebook's token was never in
the page, its cookies or a URL it asked for. Bob, who owns another profile, signs in
and opening the same page gets 403. A screenshot of the notebook is left in the test's
temporary folder (jupyterlab.png)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from ketch.tenancy.users import Directory
from tests.browser import BrowserThread, browser  # noqa: F401  (fixture)
from tests.notebooks.helpers import (
    example_notebook,
    path,
    requires_jupyterlab,
    server_pid,
    wait_ready,
)
from tests.server.fixtures import SERVER_ENV
from tests.server.helpers import Server
from tests.tenancy.helpers import ALICE, BOB, as_user, directory_of, two_owners_and_a_viewer

pytestmark = [requires_jupyterlab, pytest.mark.timeout(300)]

ALICE_NS, BOB_NS, NAME = "nbb-alice", "nbb-bob", "nb"
PREFIX = f"/notebook/{ALICE_NS}/{NAME}/"
PASSWORD = "correct horse battery staple"


def _foreign(message: str, origin: str) -> bool:
    """Whether a console message is about a URL of another origin than Ketch's (what
    JupyterLab may ask the internet for: PyPI for its extension manager, news), which
    says nothing about the proxy. No such message was seen here: this machine has no
    network and JupyterLab asks for none of it unprompted."""
    urls = re.findall(r"https?://[^\s'\")]+", message)
    return bool(urls) and all(not url.startswith(origin) for url in urls)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home: Path = tmp_path_factory.mktemp("ketch-notebook-browser")
    started = Server(home, extra_env=SERVER_ENV).start()
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="module")
def directory(server: Server) -> Iterator[Directory]:
    yield from directory_of(server)


@pytest.fixture(scope="module")
def tokens(server: Server, directory: Directory) -> dict[str, str]:
    """The users' API tokens, once Alice's notebook is ready; Alice and Bob can sign in
    with :data:`PASSWORD`."""

    def reads(http: httpx.Client, namespace: str) -> bool:
        return http.get(path(namespace)).status_code == 200

    made = two_owners_and_a_viewer(server, directory, (ALICE_NS, BOB_NS), reads)
    directory.set_password(ALICE, PASSWORD)
    directory.set_password(BOB, PASSWORD)
    with as_user(server, made[ALICE]) as http:
        applied = http.post(path(ALICE_NS), json=example_notebook(NAME, ALICE_NS))
        assert applied.status_code == 201, applied.text
        wait_ready(http, ALICE_NS, NAME)
    return made


async def _sign_in(page: Any, email: str, target: str) -> None:
    """Visit ``target`` signed out: Ketch's sign-in page, then ``target`` again."""
    await page.goto(target)
    assert urlsplit(page.url).path == "/auth/login", page.url
    await page.fill("#email", email)
    await page.fill("#password", PASSWORD)
    await page.click("#sign-in")
    await page.wait_for_url(re.compile(re.escape(target) + r".*"))


def test_jupyterlab_runs_a_cell_in_chromium_through_ketch(
    browser: BrowserThread,  # noqa: F811
    server: Server,
    tokens: dict[str, str],
    tmp_path: Path,
) -> None:
    lab = f"{server.url}{PREFIX}lab"
    shot = tmp_path / "jupyterlab.png"

    async def visit(chromium: Any) -> dict[str, Any]:
        context = await chromium.new_context(viewport={"width": 1280, "height": 800})
        page = await context.new_page()
        seen: dict[str, Any] = {
            "console": [],
            "failed": [],
            "requests": [],
            "writes": [],
            "sockets": [],
        }
        page.on(
            "console",
            lambda m: seen["console"].append(m.text) if m.type == "error" else None,
        )
        page.on("pageerror", lambda e: seen["console"].append(f"page error: {e}"))
        page.on("requestfailed", lambda r: seen["failed"].append(f"{r.url} {r.failure}"))

        async def answered(response: Any) -> None:
            seen["requests"].append(response.url)
            if response.request.method != "GET":
                seen["writes"].append(f"{response.request.method} {response.url} {response.status}")
            if response.status >= 400:
                try:
                    why = (await response.text())[:300]
                except Exception as exc:  # noqa: BLE001 - the body may be gone
                    why = repr(exc)
                what = f"{response.request.method} {response.url} {response.status}: {why}"
                seen["failed"].append(what)

        page.on("response", answered)
        page.on("websocket", lambda ws: seen["sockets"].append(ws.url))
        try:
            await _sign_in(page, ALICE, lab)
            seen["url"] = page.url
            card = page.locator('.jp-LauncherCard[data-category="Notebook"]').first
            await card.wait_for(timeout=90_000)
            await card.click()
            cell = page.locator(".jp-Notebook .jp-Cell .cm-content").first
            await cell.wait_for(timeout=60_000)
            # the kernel is connected (over its websocket) once the status bar says
            # "Idle" after its name; before, a cell run finds no kernel and is dropped
            status = page.locator(".jp-StatusBar-Widget").get_by_text(
                re.compile(r"Python 3.*\| Idle")
            )
            await status.first.wait_for(timeout=90_000)
            await cell.click()
            await page.keyboard.type("1+1")
            await page.keyboard.press("Shift+Enter")
            output = page.locator(".jp-OutputArea-output").first
            await output.wait_for(timeout=60_000)
            seen["output"] = (await output.inner_text()).strip()
            seen["cookies"] = await context.cookies(server.url)
            seen["page_config"] = await page.evaluate(
                "JSON.parse(document.getElementById('jupyter-config-data').textContent)"
            )
            seen["html"] = await page.content()
            await page.screenshot(path=str(shot))
            return seen
        except Exception as exc:  # what the page did says why
            await page.screenshot(path=str(shot))
            raise AssertionError(f"{exc}\nseen in the page: {seen}") from exc
        finally:
            await context.close()

    seen = browser.run(visit, timeout=240)
    ketch = urlsplit(server.url)
    assert urlsplit(seen["url"]).netloc == ketch.netloc
    assert urlsplit(seen["url"]).path == f"{PREFIX}lab"
    assert seen["output"] == "2", seen["output"]
    # the kernel's channels went through the proxy, on Ketch's origin
    channels = [u for u in seen["sockets"] if "/channels" in u]
    assert channels, seen["sockets"]
    for url in channels:
        parts = urlsplit(url)
        assert parts.scheme == "ws" and parts.netloc == ketch.netloc, url
        assert parts.path.startswith(f"{PREFIX}api/kernels/"), url
    # everything the page loaded came from Ketch's origin
    assert all(urlsplit(u).netloc == ketch.netloc for u in seen["requests"]), seen["requests"]
    assert not seen["failed"], seen["failed"]
    errors = [m for m in seen["console"] if not _foreign(m, server.url)]
    assert not errors, errors
    # JupyterLab wrote through the proxy from its own scripts (the notebook's file, the
    # kernel's session), without Ketch's CSRF token
    assert any(w.startswith("POST ") and "/api/sessions" in w for w in seen["writes"])
    # Ketch's session is what the page's requests carried (Jupyter, asked with its token
    # by the proxy, needs no _xsrf cookie of its own)
    assert "ketch_session" in {c["name"] for c in seen["cookies"]}
    # the page never held the notebook's token: JupyterLab's page configuration has it
    # empty, so its scripts send Ketch's session only
    assert seen["page_config"]["token"] == ""
    with as_user(server, tokens[ALICE]) as alice:
        pid = server_pid(alice, ALICE_NS, NAME)
    environ = dict(
        item.split("=", 1)
        for item in Path(f"/proc/{pid}/environ").read_text().split("\0")
        if "=" in item
    )
    token = environ["JUPYTER_TOKEN"]
    assert token and token not in seen["html"]
    assert all(token not in c["value"] for c in seen["cookies"])
    assert all(token not in url for url in seen["requests"] + seen["sockets"])
    assert shot.stat().st_size > 0


def test_another_profiles_owner_gets_403_in_chromium(
    browser: BrowserThread,  # noqa: F811
    server: Server,
    tokens: dict[str, str],
) -> None:
    lab = f"{server.url}{PREFIX}lab"

    async def visit(chromium: Any) -> tuple[int, str]:
        context = await chromium.new_context()
        page = await context.new_page()
        try:
            await page.goto(f"{server.url}/auth/login")
            await page.fill("#email", BOB)
            await page.fill("#password", PASSWORD)
            await page.click("#sign-in")
            await page.wait_for_url(f"{server.url}/auth/account")
            opened = await page.goto(lab)
            assert opened is not None
            return opened.status, await page.content()
        finally:
            await context.close()

    status, content = browser.run(visit)
    assert status == 403, content
    assert "notebooks/proxy" in content and BOB in content
