"""Database fixtures: a fresh SQLite file per test, and, when ``KETCH_TEST_POSTGRES_URL``
is set, a fresh PostgreSQL database per test (so parallel workers never collide), as a
URL (``db_url``, ``sqlite_url``) or as a :class:`~ketch.core.store.db.Database` on it
(``database``, ``sqlite_database``), closed after the test; and a local process
backend, shut down after the test."""

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

# A script that runs against an old Ketch (see its docstring), not a test module.
collect_ignore = ["store/make_fixture.py"]


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
        yield _sqlite_database(tmp_path)
    else:
        yield from _postgres_database()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return _sqlite_database(tmp_path)


@pytest.fixture
def database(db_url: str) -> Iterator[db.Database]:
    """A :class:`~ketch.core.store.db.Database` on ``db_url``, closed after the test
    (before a PostgreSQL database is dropped)."""
    with db.Database(db_url) as database:
        yield database


@pytest.fixture
def sqlite_database(sqlite_url: str) -> Iterator[db.Database]:
    """A :class:`~ketch.core.store.db.Database` on ``sqlite_url``, closed after the test."""
    with db.Database(sqlite_url) as database:
        yield database


@pytest.fixture
def backend() -> Iterator[LocalBackend]:
    b = LocalBackend()
    try:
        yield b
    finally:
        b.shutdown(grace=1.0)
