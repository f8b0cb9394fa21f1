"""The store's engine, sessions and migrations, on real SQLite files (and PostgreSQL).

The session tests write the pipelines capability's cache table (created by core's
base revision); the migration tests use core's version folder and pipelines', as
the API server does, and folders made here for capabilities that do not exist yet.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, event, inspect, select, text
from sqlalchemy.exc import IntegrityError, OperationalError

import ketch
from ketch.core.errors import KetchError
from ketch.core.store import db
from ketch.core.store.models import Base
from ketch.pipelines.tables import MIGRATIONS, CacheEntryRow
from ketch.registry.tables import MIGRATIONS as REGISTRY_MIGRATIONS
from ketch.tenancy.tables import MIGRATIONS as TENANCY_MIGRATIONS

SRC = str(Path(ketch.__file__).resolve().parents[1])


def _python(code: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_postgres_urls_use_psycopg3() -> None:
    assert db.normalize_url("postgresql://u:p@h:5/d") == "postgresql+psycopg://u:p@h:5/d"
    assert db.normalize_url("postgres://h/d") == "postgresql+psycopg://h/d"
    assert db.normalize_url("postgresql+psycopg://h/d") == "postgresql+psycopg://h/d"
    assert db.normalize_url("sqlite:///x.db") == "sqlite:///x.db"
    assert db.is_sqlite("sqlite:///x.db") and not db.is_sqlite("postgresql://h/d")


def test_one_engine_per_database(tmp_path: Path) -> None:
    url_a = f"sqlite:///{tmp_path / 'a.db'}"
    url_b = f"sqlite:///{tmp_path / 'b.db'}"
    with db.Database(url_a) as a, db.Database(url_b) as b, db.Database(url_a) as a2:
        assert a.engine is a.engine
        assert a.engine is not b.engine
        assert a.sessionmaker is a.sessionmaker
        # two objects on one URL are independent: each has its own engine and pool
        assert a2.url == a.url
        assert a2.engine is not a.engine
        a.migrate()
        a2.dispose()  # closes a2's connections only
        with a.session() as session:
            session.add(_cache_entry("kept"))
        with a2.session(readonly=True) as session:  # a2 opens new ones when used again
            assert session.scalars(select(CacheEntryRow.key)).all() == ["kept"]
        engine = a.engine
        a.dispose()
        assert a.engine is not engine


def test_postgres_url_is_normalized_and_hidden_in_repr() -> None:
    database = db.Database("postgresql://user:secret@127.0.0.1:5/d")
    assert database.url == "postgresql+psycopg://user:secret@127.0.0.1:5/d"
    assert "secret" not in repr(database)


def test_default_url_lives_in_ketch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home" / "nested"
    monkeypatch.setenv("KETCH_HOME", str(home))
    monkeypatch.delenv("KETCH_DATABASE_URL", raising=False)
    with db.Database() as database:
        database.migrate()
        assert (home / "ketch.db").is_file()
        assert database.current_revisions() == db.head_revisions()


def test_sqlite_pragmas_on_every_connection(sqlite_database: db.Database) -> None:
    engine = sqlite_database.engine
    with engine.connect() as first, engine.connect() as second:
        for connection in (first, second):
            pragma = connection.exec_driver_sql
            assert pragma("PRAGMA journal_mode").scalar() == "wal"
            assert pragma("PRAGMA synchronous").scalar() == 1  # NORMAL
            assert pragma("PRAGMA busy_timeout").scalar() == 30000
            assert pragma("PRAGMA foreign_keys").scalar() == 1


#: the newest revision of core's own branch (core's history is one line)
(CORE,) = db.head_revisions()
#: the newest revision of the pipelines capability's branch
(PIPELINES,) = db.head_revisions([MIGRATIONS]) - {CORE}


#: every capability's tables (each registers its models on Base when imported)
EVERY = [MIGRATIONS, TENANCY_MIGRATIONS, REGISTRY_MIGRATIONS]


def test_migrate_creates_every_table(database: db.Database) -> None:
    database.migrate(EVERY)
    names = set(inspect(database.engine).get_table_names())
    assert set(Base.metadata.tables) | {"alembic_version"} == names
    assert database.current_revisions() == db.head_revisions(EVERY)
    assert len(db.head_revisions()) == 1  # core's own history is one line
    assert db.head_revisions([MIGRATIONS]) == {CORE, PIPELINES}  # core's branch, pipelines'


def test_migrated_schema_matches_models(database: db.Database) -> None:
    database.migrate(EVERY)
    with database.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def test_migrate_twice_is_a_no_op(db_url: str) -> None:
    with db.Database(db_url) as database:
        database.migrate()
        with database.session() as session:
            session.add(_cache_entry("k1"))
    with db.Database(db_url) as database:  # a new object: it checks the revisions again
        database.migrate()
        with database.session(readonly=True) as session:
            assert session.scalars(select(CacheEntryRow.key)).all() == ["k1"]


def test_migration_is_checked_once_per_database(database: db.Database) -> None:
    database.migrate([MIGRATIONS])
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(database.engine, "before_cursor_execute", record)
    database.migrate([MIGRATIONS])  # done already by this object: not one query
    assert statements == []
    database.migrate()  # another set of folders: its revisions are read once
    assert any("alembic_version" in statement for statement in statements)
    statements.clear()
    database.migrate()
    assert statements == []


def test_up_to_date_check_does_not_load_alembic(sqlite_database: db.Database) -> None:
    sqlite_database.migrate([MIGRATIONS])
    code = (
        "import sys; from ketch.core.store import db; "
        "from ketch.pipelines.tables import MIGRATIONS; "
        "db.Database(sys.argv[1]).migrate([MIGRATIONS]); "
        "print('alembic' in sys.modules)"
    )
    process = _python(code, sqlite_database.url)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert out.strip() == "False"


def test_concurrent_migrate_from_many_processes(database: db.Database) -> None:
    code = (
        "import sys; from ketch.core.store import db; "
        "from ketch.pipelines.tables import MIGRATIONS; "
        "from ketch.tenancy.tables import MIGRATIONS as TENANCY; "
        "from ketch.registry.tables import MIGRATIONS as REGISTRY; "
        "db.Database(sys.argv[1]).migrate([MIGRATIONS, TENANCY, REGISTRY]); "
        "print('ok')"
    )
    processes = [_python(code, database.url) for _ in range(4)]
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        assert out.strip() == "ok"
    with database.engine.connect() as connection:
        versions = connection.execute(text("SELECT version_num FROM alembic_version")).all()
    assert sorted(v[0] for v in versions) == sorted(db.head_revisions(EVERY))
    assert set(Base.metadata.tables) <= set(inspect(database.engine).get_table_names())


def _branch(root: Path, capability: str) -> Path:
    """The version folder of a capability with tables of its own (one that does not
    exist yet): its first revision starts its branch on core's base and adds a table."""
    folder = root / capability / "migrations" / "versions"
    folder.mkdir(parents=True)
    (folder / f"{capability}_0001_first.py").write_text(
        f'''"""{capability}: its first table."""

import sqlalchemy as sa
from alembic import op

revision = "{capability}_0001"
down_revision = "0001"
branch_labels = ("{capability}",)
depends_on = None


def upgrade() -> None:
    op.create_table("{capability}_things", sa.Column("id", sa.Integer(), primary_key=True))


def downgrade() -> None:
    op.drop_table("{capability}_things")
'''
    )
    return folder


def _tables(database: db.Database) -> set[str]:
    return set(inspect(database.engine).get_table_names())


def test_each_capability_has_a_branch_from_cores_base(
    database: db.Database, tmp_path: Path
) -> None:
    registry, notebooks = _branch(tmp_path, "registry"), _branch(tmp_path, "notebooks")
    every = [MIGRATIONS, registry, notebooks]
    heads = {CORE, PIPELINES, "registry_0001", "notebooks_0001"}
    assert db.head_revisions(every) == heads
    database.migrate(every)
    assert database.current_revisions() == heads
    assert {"registry_things", "notebooks_things", "kfp_pipelines"} <= _tables(database)


def test_a_process_migrates_the_branches_it_was_given(db_url: str, tmp_path: Path) -> None:
    registry, notebooks = _branch(tmp_path, "registry"), _branch(tmp_path, "notebooks")
    with db.Database(db_url) as database:
        database.migrate([MIGRATIONS, registry])
        assert database.current_revisions() == {CORE, PIPELINES, "registry_0001"}

    # A process that assembles fewer capabilities finds its own branches up to date.
    with db.Database(db_url) as database:
        database.migrate([MIGRATIONS])
        assert database.current_revisions() == {CORE, PIPELINES, "registry_0001"}

    # One with a branch the database lacks adds it and keeps the registry's revision,
    # though it does not know that branch.
    with db.Database(db_url) as database:
        database.migrate([MIGRATIONS, notebooks])
        assert database.current_revisions() == {
            CORE,
            PIPELINES,
            "registry_0001",
            "notebooks_0001",
        }
        assert {"registry_things", "notebooks_things"} <= _tables(database)

    with db.Database(db_url) as database:
        database.migrate([MIGRATIONS, registry, notebooks])  # nothing left to do
        assert database.current_revisions() == {
            CORE,
            PIPELINES,
            "registry_0001",
            "notebooks_0001",
        }


def test_a_database_migrated_by_a_newer_ketch_is_refused_unchanged(db_url: str) -> None:
    with db.Database(db_url) as database:
        database.migrate([MIGRATIONS])
        with database.engine.begin() as connection:  # core's branch one revision on
            connection.execute(
                text("UPDATE alembic_version SET version_num = '9999' WHERE version_num = :core"),
                {"core": CORE},
            )
    with db.Database(db_url) as database:
        with pytest.raises(
            KetchError, match="revision\\(s\\) 9999, which this Ketch does not have"
        ):
            database.migrate([MIGRATIONS])
        assert database.current_revisions() == {"9999", PIPELINES}


def test_core_alone_migrates_without_any_capability(db_url: str) -> None:
    with db.Database(db_url) as database:
        database.migrate()
        assert database.current_revisions() == db.head_revisions() == {CORE}
        assert "kfp_pipelines" not in _tables(database)
    with db.Database(db_url) as database:
        database.migrate([MIGRATIONS])  # pipelines' branch joins later
        assert database.current_revisions() == {CORE, PIPELINES}
        assert "kfp_pipelines" in _tables(database)


def _cache_entry(key: str) -> CacheEntryRow:
    from ketch.core.resource import utcnow

    return CacheEntryRow(
        key=key, pipeline_name="p", task_name="t", run_id="r", outputs={"x": 1}, created_at=utcnow()
    )


def test_session_commits_and_rolls_back(database: db.Database) -> None:
    database.migrate()
    with database.session() as session:
        session.add(_cache_entry("kept"))
    with pytest.raises(RuntimeError), database.session() as session:
        session.add(_cache_entry("dropped"))
        session.flush()
        raise RuntimeError("boom")
    with pytest.raises(IntegrityError), database.session() as session:
        session.add(_cache_entry("kept"))
    with database.session(readonly=True) as session:
        rows = session.scalars(select(CacheEntryRow)).all()
    assert [(r.key, r.outputs) for r in rows] == [("kept", {"x": 1})]


def test_readers_are_not_blocked_by_a_writer(sqlite_database: db.Database) -> None:
    database = sqlite_database
    database.migrate()
    with database.session() as session:
        session.add(_cache_entry("before"))
    with database.session() as writer:
        writer.add(_cache_entry("pending"))
        writer.flush()  # holds the write lock until the block ends
        started = time.monotonic()
        with database.session(readonly=True) as reader:
            keys = reader.scalars(select(CacheEntryRow.key)).all()
        assert keys == ["before"]
        assert time.monotonic() - started < 5
    with database.session(readonly=True) as reader:
        assert sorted(reader.scalars(select(CacheEntryRow.key)).all()) == ["before", "pending"]


def test_writers_wait_for_each_other_instead_of_failing(sqlite_database: db.Database) -> None:
    database = sqlite_database
    database.migrate()
    errors: list[BaseException] = []

    def write(prefix: str) -> None:
        try:
            for i in range(20):
                with database.session() as session:
                    # read, then write, in one transaction: the pattern that fails with
                    # "database is locked" under deferred transactions
                    session.scalars(select(CacheEntryRow.key)).all()
                    session.add(_cache_entry(f"{prefix}-{i}"))
        except BaseException as exc:  # noqa: BLE001  # pragma: no cover - a thread's errors, asserted below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(f"t{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with database.session(readonly=True) as session:
        assert len(session.scalars(select(CacheEntryRow.key)).all()) == 80


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_opens_its_own_connections(sqlite_database: db.Database) -> None:
    database = sqlite_database
    database.migrate()
    with database.session() as session:  # the parent has a pooled connection now
        session.add(_cache_entry("parent"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads around
        pid = os.fork()
    if pid == 0:  # the child: no pytest cleanup here, just an exit code
        code = 1
        try:
            with database.engine.connect() as connection:
                opened_here = connection.connection.info[db.PID_KEY] == os.getpid()
            with database.session() as session:
                session.add(_cache_entry("child"))
            database.dispose(close=False)
            code = 0 if opened_here else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    # the parent's pooled connection was left alone and still works
    with database.engine.connect() as connection:
        assert connection.connection.info[db.PID_KEY] == os.getpid()
    with database.session(readonly=True) as session:
        assert sorted(session.scalars(select(CacheEntryRow.key)).all()) == ["child", "parent"]


def test_retry_locked_retries_until_the_lock_is_released(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x INTEGER)")
    holder.execute("BEGIN IMMEDIATE")
    impatient = create_engine(f"sqlite:///{path}", connect_args={"timeout": 0})
    attempts: list[int] = []

    def insert() -> None:
        attempts.append(1)
        if len(attempts) == 2:
            holder.execute("COMMIT")
        with impatient.begin() as connection:
            connection.execute(text("INSERT INTO t VALUES (1)"))

    try:
        db.retry_locked(insert, attempts=5, initial_delay=0.01)
        assert len(attempts) == 2
        assert holder.execute("SELECT count(*) FROM t").fetchone() == (1,)
        with pytest.raises(OperationalError, match="no such table"):
            db.retry_locked(
                lambda: impatient.connect().execute(text("SELECT * FROM missing")),
                attempts=5,
            )
    finally:
        impatient.dispose()
        holder.close()


_WRITER = """
import sys
from ketch.core.resource import ObjectMeta, Resource
from ketch.core.store.db import Database
from ketch.core.store.resources import ResourceStore

store = ResourceStore(Database(sys.argv[1]))
i = 0
while True:
    name = f"job-{i}"
    store.create(Resource(apiVersion="v1", kind="Job", metadata=ObjectMeta(name=name),
                          spec={"index": i, "payload": "x" * (i % 500)}))
    store.update_status("Job", "default", name, {"phase": "Done", "index": i})
    print(name, flush=True)
    i += 1
"""


@pytest.mark.slow
def test_sigkill_mid_write_leaves_a_consistent_database(sqlite_url: str) -> None:
    with db.Database(sqlite_url) as database:
        database.migrate()
    process = _python(_WRITER, sqlite_url)
    committed: list[str] = []
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 60
        while len(committed) < 60 and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            committed.append(line.strip())
        assert len(committed) >= 60, process.stderr.read() if process.stderr else ""
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout:
            process.stdout.close()
        if process.stderr:
            process.stderr.close()
    assert process.returncode == -signal.SIGKILL

    path = sqlite_url.removeprefix("sqlite:///")
    raw = sqlite3.connect(path)
    try:
        assert raw.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        raw.close()

    from ketch.core.store.resources import ResourceStore

    with db.Database(sqlite_url) as database:
        store = ResourceStore(database)
        for name in committed:
            index = int(name.split("-")[1])
            resource = store.get("Job", "default", name)
            assert resource.spec == {"index": index, "payload": "x" * (index % 500)}
            assert resource.status == {"phase": "Done", "index": index}
            # created then given a status: the store's revisions 2i+1 and 2i+2
            assert resource.metadata.resourceVersion == str(2 * index + 2)
        # the store still takes writes after the crash
        stored = store.list("Job").items
        assert len(stored) >= len(committed)
