"""Fixtures for the pipeline feature suite.

Every test gets its own ``KETCH_HOME`` (database, artifacts, logs) under ``tmp_path``,
so the suite is safe to run in parallel with ``pytest -n``.
"""

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.pipelines.helpers import SRC, cli_command, cli_env

try:  # a checkout without `pip install -e .` still runs the suite
    import ketch  # noqa: F401
except ImportError:  # pragma: no cover
    sys.path.insert(0, str(SRC))


@pytest.fixture(autouse=True)
def ketch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private KETCH_HOME for each test."""
    home = tmp_path / "ketch-home"
    home.mkdir()
    monkeypatch.setenv("KETCH_HOME", str(home))
    monkeypatch.delenv("KETCH_DATABASE_URL", raising=False)
    monkeypatch.delenv("KETCH_ARTIFACTS", raising=False)
    return home


@pytest.fixture
def ketch_cli(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run ``ketch ARGS...`` in a subprocess and return the completed process."""

    def run(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*cli_command(), *map(str, args)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=cli_env(),
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
        )

    return run


@pytest.fixture
def make_service(ketch_home: Path) -> Iterator[Callable[..., Any]]:
    """Makes a ``RunService`` over this test's store (``KETCH_DATABASE_URL`` or the
    SQLite file in ``KETCH_HOME``, as it is when called), each with a ``Database`` of
    its own as each server has; their connections are closed after the test (the
    test stops the services)."""
    from ketch.capabilities import backend
    from ketch.core.store.db import Database
    from ketch.pipelines.service import RunService

    made: list[Database] = []

    def make(**options: Any) -> RunService:
        database = Database()
        made.append(database)
        return RunService(database, backend=backend(), **options)

    yield make
    for database in made:
        database.dispose()
