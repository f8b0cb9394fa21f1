"""Alembic environment for Ketch's store (run by ``ketch.core.store.db.init_db``)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, text

from ketch.core.store.db import get_engine
from ketch.core.store.models import Base

# Any constant works; it only has to be the same in every Ketch process.
PG_MIGRATION_LOCK = 0x6B657463  # "ketc"

target_metadata = Base.metadata


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )


def run_migrations_offline() -> None:
    context.configure(
        url=context.config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def _upgrade(connection: Connection) -> None:
    _configure(connection)
    # On SQLite the transaction starts with BEGIN IMMEDIATE (see db.py), so a second
    # process waits here and then reads the revision the first one committed.
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_MIGRATION_LOCK}
            )
        context.run_migrations()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _upgrade(connection)
        return
    url = context.config.get_main_option("sqlalchemy.url") or None
    with get_engine(url).connect() as new_connection:
        _upgrade(new_connection)


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
