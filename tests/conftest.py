"""Fixtures shared by every test folder: fresh SQLite and PostgreSQL databases."""

from tests.core.conftest import db_url, sqlite_url  # noqa: F401  (fixtures)
