"""A real browser for the tests: Playwright driving Debian's ``chromium``.

Playwright cannot download its own browser here; ``scripts/ci-chromium.sh`` (run by
``make test``) installs Debian's package, and the ``browser`` fixture starts it once
per test process. Tests that need it skip, saying why, when either part is missing.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

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


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """A headless Chromium (one per test process)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (make install puts it in the dev extra)")
    executable = chromium_path()
    if executable is None:
        pytest.skip("Debian's chromium is not installed (scripts/ci-chromium.sh installs it)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            launched.close()
