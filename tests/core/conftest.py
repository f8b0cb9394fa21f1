"""Database fixtures: a fresh SQLite file per test, and, when ``KETCH_TEST_POSTGRES_URL``
is set, a fresh PostgreSQL database per test (so parallel workers never collide); and a
local process backend, shut down after the test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from ketch.core.backend import LocalBackend
from ketch.core.store import db

POSTGRES_ENV = "KETCH_TEST_POSTGRES_URL"


def _postgres_database() -> Iterator[str]:
    admin_url = os.environ.get(POSTGRES_ENV)
    if not admin_url:
        pytest.skip(f"{POSTGRES_ENV} is not set (scripts/ci-postgres.sh starts a server)")
    admin_url = db.normalize_url(admin_url)
    name = f"ketch_test_{uuid.uuid4().hex[:16]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
        yield url
        db.dispose_engine(url)
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def _sqlite_database(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ketch.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL of an empty database: SQLite, and PostgreSQL when one is configured."""
    if request.param == "sqlite":
        url = _sqlite_database(tmp_path)
        yield url
        db.dispose_engine(url)
    else:
        yield from _postgres_database()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> Iterator[str]:
    url = _sqlite_database(tmp_path)
    yield url
    db.dispose_engine(url)


@pytest.fixture
def backend() -> Iterator[LocalBackend]:
    b = LocalBackend()
    try:
        yield b
    finally:
        b.shutdown(grace=1.0)
