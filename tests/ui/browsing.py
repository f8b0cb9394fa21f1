"""What the dashboard's browser tests share: a watched page that collects console
errors and saves screenshots, a visit in a fresh browser context, an element's text,
and signing in through the sign-in page."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tests.browser import BrowserThread
from tests.ui.conftest import PASSWORD

WIDE = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


class Watched:
    """A page and every console error, page error and failed request it had."""

    def __init__(self, page: Any, folder: Path, prefix: str) -> None:
        self.page = page
        self.folder = folder
        self.prefix = prefix
        self.errors: list[str] = []
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
        page.on("requestfailed", lambda r: self.errors.append(f"failed: {r.url} {r.failure}"))

    async def shot(self, name: str) -> None:
        await self.page.screenshot(
            path=str(self.folder / f"{self.prefix}-{name}.png"), full_page=True
        )

    def take_errors(self) -> list[str]:
        found, self.errors[:] = list(self.errors), []
        return found


def visiting(
    chromium: BrowserThread, folder: Path, prefix: str, viewport: dict[str, int] = WIDE
) -> Callable[[Callable[[Watched], Awaitable[Any]]], Any]:
    """Run a visit in a fresh browser context (its own cookies) of ``viewport``."""

    def run(visit: Callable[[Watched], Awaitable[Any]]) -> Any:
        async def go(browser_: Any) -> Any:
            context = await browser_.new_context(viewport=viewport)
            try:
                watched = Watched(await context.new_page(), folder, prefix)
                return await visit(watched)
            finally:
                await context.close()

        return chromium.run(go)

    return run


async def text_of(page: Any, selector: str) -> str:
    """The text of the one element ``selector`` names."""
    return str(await page.locator(selector).inner_text())


async def sign_in(w: Watched, url: str, email: str) -> None:
    """Open the dashboard signed out: the sign-in page, then the dashboard."""
    page = w.page
    await page.goto(f"{url}/")
    assert urlsplit(page.url).path == "/auth/login", page.url
    await page.fill("#email", email)
    await page.fill("#password", PASSWORD)
    await page.click("#sign-in")
    await page.wait_for_url(re.compile(re.escape(url) + r"/\?ns=.*"))
