"""Property-based requests generated from the served OpenAPI document: never a 5xx.

Streaming operations (watches, logs) are left out; every other operation gets a
bounded number of generated requests, positive and negative.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server.fixtures import SERVER_ENV, serve
from tests.server.helpers import Server


@pytest.fixture
def fresh_server(tmp_path: Path) -> Iterator[Server]:
    yield from serve(Server(tmp_path / "home", extra_env=SERVER_ENV))


def _st() -> list[str]:
    script = Path(sys.executable).with_name("st")
    if script.exists():
        return [str(script)]
    found = shutil.which("st")
    if found is None:
        pytest.skip("schemathesis is not installed")
    return [found]


def _without_warnings(output: str) -> str:
    """``output`` less its WARNINGS section (hundreds of lines on operations that only
    got 404s or 422s), so a failure's report keeps its ERRORS and FAILURES."""
    return re.sub(r"(?ms)^=+ WARNINGS =+$.*?(?=^=+ )", "", output)


def test_no_server_errors(fresh_server: Server, tmp_path: Path) -> None:
    command = [
        *_st(),
        "run",
        f"{fresh_server.url}/openapi.json",
        "--checks",
        "not_a_server_error",
        "--max-examples",
        "15",
        "--exclude-path-regex",
        r"/(log|logs)$|/watch/",
        "--request-timeout",
        "20",
        "--generation-database",
        "none",
        "--workers",
        "2",
        "--seed",
        "20240601",
        "--no-color",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=180, cwd=tmp_path)
    report = _without_warnings(result.stdout + result.stderr)[-8000:]
    assert result.returncode == 0, report
    assert "passed" in result.stdout, report
    assert "Traceback" not in fresh_server.output(), fresh_server.output()[-4000:]
