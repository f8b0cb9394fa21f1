"""A real browser for the tests: Playwright driving Debian's ``chromium``.

Playwright cannot download its own browser here; ``scripts/ci-chromium.sh`` (run by
``make test``) installs Debian's package, and the ``browser`` fixture starts it once
per test process. Tests that need it skip, saying why, when either part is missing.

Chromium is driven with Playwright's async API on an event loop in a thread of its
own, so that no event loop is left running in the test process's main thread (other
tests there call ``asyncio.run``). A test hands it a coroutine function::

    async def visit(browser):
        page = await browser.new_page()
        ...

    title = browser.run(visit)
"""

from __future__ import annotations

import asyncio
import shutil
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

T = TypeVar("T")


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


class BrowserThread:
    """A headless Chromium owned by an event loop in a daemon thread."""

    def __init__(self, executable: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._playwright: Any = None
        self._browser: Any = None
        self._call(self._start(executable), timeout=120)

    async def _start(self, executable: str) -> None:
        from playwright.async_api import async_playwright

        self._playwright = await async_playwright().start()
        self._browser = await self._playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )

    def _call(self, coroutine: Awaitable[T], timeout: float) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)  # type: ignore[arg-type]

    def run(self, visit: Callable[[Any], Awaitable[T]], timeout: float = 120) -> T:
        """``visit(browser)`` run on the browser's loop; its result."""
        return self._call(visit(self._browser), timeout)

    def close(self) -> None:
        async def stop() -> None:
            if self._browser is not None:
                await self._browser.close()
            if self._playwright is not None:
                await self._playwright.stop()

        try:
            self._call(stop(), timeout=60)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(30)
            self._loop.close()


@pytest.fixture(scope="session")
def browser() -> Iterator[BrowserThread]:
    """A headless Chromium (one per test process)."""
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        pytest.skip("playwright is not installed (make install puts it in the dev extra)")
    executable = chromium_path()
    if executable is None:
        pytest.skip("Debian's chromium is not installed (scripts/ci-chromium.sh installs it)")
    launched = BrowserThread(executable)
    try:
        yield launched
    finally:
        launched.close()
