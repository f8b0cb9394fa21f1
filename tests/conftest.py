"""Fixtures shared by every test folder: fresh SQLite and PostgreSQL databases."""

from tests.core.conftest import (  # noqa: F401  (fixtures)
    database,
    db_url,
    sqlite_database,
    sqlite_url,
)
