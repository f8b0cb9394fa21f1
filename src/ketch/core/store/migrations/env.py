"""Alembic environment for Ketch's store (run by ``ketch.core.store.db.Database.migrate``).

One environment, a version folder per owner of tables: ``migrate`` lists core's
folder and the assembled capabilities' folders in ``version_locations``. Each
folder is a branch from core's base revision ``0001``, and the database is brought
to ``heads``. A database may also hold revisions of a capability whose folder was
not given (this process does not assemble it): they are set aside for the upgrade
and put back unchanged, so each process migrates the branches it knows.
"""

from __future__ import annotations

import importlib

from alembic import context
from sqlalchemy import Connection, column, delete, insert, inspect, select, table, text

from ketch.core.store.db import Database
from ketch.core.store.models import Base

# Any constant works; it only has to be the same in every Ketch process.
PG_MIGRATION_LOCK = 0x6B657463  # "ketc"
VERSION_TABLE = "alembic_version"

# For a developer's `alembic revision --autogenerate` (see alembic.ini): the
# modules whose tables join core's on the shared metadata. Ketch itself never
# sets this; upgrades do not need the metadata.
for _module in (context.config.get_main_option("ketch_table_modules") or "").split():
    importlib.import_module(_module)

target_metadata = Base.metadata


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        # SQLite runs DDL in transactions too (db.py leaves BEGIN to SQLAlchemy):
        # the whole upgrade is one transaction, not one per revision, so a second
        # process never reads the revisions half-way through another's upgrade.
        transactional_ddl=True,
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


def _set_aside_unknown(connection: Connection) -> list[str]:
    """Delete (and return) the version rows of revisions in none of the folders
    given: the heads of branches this process does not migrate."""
    if not inspect(connection).has_table(VERSION_TABLE):
        return []
    known = {script.revision for script in context.script.walk_revisions()}
    versions = table(VERSION_TABLE, column("version_num"))
    stored = connection.execute(select(versions.c.version_num)).scalars().all()
    unknown = [revision for revision in stored if revision not in known]
    if unknown:
        connection.execute(delete(versions).where(versions.c.version_num.in_(unknown)))
    return unknown


def _put_back(connection: Connection, revisions: list[str]) -> None:
    if revisions:
        versions = table(VERSION_TABLE, column("version_num"))
        connection.execute(insert(versions), [{"version_num": r} for r in revisions])


def _upgrade(connection: Connection) -> None:
    _configure(connection)
    # On SQLite the transaction starts with BEGIN IMMEDIATE (see db.py), so a second
    # process waits here and then reads the revisions the first one committed.
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_MIGRATION_LOCK}
            )
        others = _set_aside_unknown(connection)
        context.run_migrations()
        _put_back(connection, others)


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _upgrade(connection)
        return
    # `alembic` run by hand (see alembic.ini): a database of its own for this command
    with Database(context.config.get_main_option("sqlalchemy.url") or None) as database:
        with database.engine.connect() as new_connection:
            _upgrade(new_connection)


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
