"""Engines, sessions and schema migrations for Ketch's store: one :class:`Database`.

A :class:`Database` is one database URL and what this process holds open on it: an
engine (made on first use, its connection pool), a ``sessionmaker`` and the record
of the schema it has already brought up to date. It is made by whoever composes the
process and handed down to what reads and writes the store: the API server makes
one per app (:func:`ketch.server.app.create_app`, closed when the app stops), the
embedded control plane, ``ketch.run`` and the CLI one per call, a child process
one from the URL it is given. Nothing is cached per URL at module level: two
``Database`` objects on one URL are independent, each with its own pool, and
:meth:`Database.dispose` closes one's connections without touching the other's.

SQLite (the default, a file in ``KETCH_HOME``) runs in WAL mode with a busy timeout,
so several processes (the API server, a CLI, a task launcher) can share one file.
Sessions from :meth:`Database.session` start with ``BEGIN IMMEDIATE``: a
transaction that reads and then writes takes the write lock up front and waits
for it (up to the busy timeout) instead of failing half-way with "database is
locked". Only one such session holds the lock at a time, so do not nest a write
``session()`` inside another in one thread; read with ``session(readonly=True)``,
which starts a deferred transaction that never blocks and is never blocked by
writers. Other connections (``database.engine.connect()``, sessions from
:attr:`Database.sessionmaker`) start deferred transactions.

PostgreSQL is used through psycopg 3; ``postgresql://`` URLs are mapped to the
``postgresql+psycopg://`` driver. A write session there starts by taking a
transaction-scoped advisory lock (:data:`PG_WRITE_LOCK`, waiting up to the same 30
s): writes are one at a time as on SQLite, so writes that each lock the revision
counter and other rows cannot deadlock on the order they take them in.

Forks: a pooled connection belongs to the process that opened it. A child forked
from a process holding a ``Database`` should make its own from ``database.url``;
if it goes on using the inherited one, the engine notices the new process id and
opens fresh connections instead of reusing the parent's (the parent's are left
open for the parent). ``dispose(close=False)`` in the child drops the inherited
pool without closing the parent's connections, as SQLAlchemy recommends.

Commits: a ``Database`` tells its :attr:`Database.commits` (a
:class:`~ketch.core.store.commits.Commits`) when one of its sessions commits a write
that journaled a change, from whichever thread wrote; the API server's watches listen
to their app's, so they learn of the process's own writes at once.

Migrations: one Alembic environment (``migrations/env.py``) and a version folder
per owner of tables. Core's folder (:data:`CORE_MIGRATIONS`) holds the shared base
revision ``0001`` and core's own branch (label ``core``); each capability with
tables has its own folder (``Capability.migrations``), a branch whose first
revision follows ``0001``. :meth:`Database.migrate` is given the capabilities'
folders by its caller (core's is always included) and upgrades to ``heads``.
Revisions in the database from folders it was not given (a capability this process
does not assemble) are left as they are.
"""

from __future__ import annotations

import ast
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from ketch.core import config
from ketch.core.errors import KetchError
from ketch.core.store.commits import Commits

T = TypeVar("T")

SQLITE_BUSY_TIMEOUT_MS = 30_000
#: The Alembic environment (``env.py``); the version folders are given separately.
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
#: Core's version folder: the shared base ``0001`` and core's branch.
CORE_MIGRATIONS = MIGRATIONS_DIR / "versions"
IMMEDIATE_OPTION = "ketch_begin_immediate"
#: The PostgreSQL advisory lock a write session holds until it ends ("ketw").
PG_WRITE_LOCK = 0x6B657477
#: Where a pooled connection records the process that opened it.
PID_KEY = "ketch_pid"


def normalize_url(url: str) -> str:
    """Map ``postgres://``/``postgresql://`` to the psycopg 3 driver; leave others as they are."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def is_sqlite(url: str) -> bool:
    return make_url(normalize_url(url)).get_backend_name() == "sqlite"


def _resolve(url: str | None) -> str:
    return normalize_url(url or config.database_url())


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        immediate = connection.get_execution_options().get(IMMEDIATE_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _keep_connections_in_their_process(engine: Engine) -> None:
    """A connection the pool hands out in a forked child that was opened by the
    parent is dropped (not closed: it is the parent's) and a new one opened."""

    @event.listens_for(engine, "connect")
    def _on_connect(_dbapi_connection: Any, record: Any) -> None:
        record.info[PID_KEY] = os.getpid()

    @event.listens_for(engine, "checkout")
    def _on_checkout(_dbapi_connection: Any, record: Any, proxy: Any) -> None:
        opened_by = record.info.get(PID_KEY)
        if opened_by is not None and opened_by != os.getpid():
            record.dbapi_connection = proxy.dbapi_connection = None
            raise DisconnectionError(
                f"the pooled connection was opened by process {opened_by}, not this one"
            )


def _configure_postgresql(engine: Engine) -> None:
    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        if not connection.get_execution_options().get(IMMEDIATE_OPTION, False):
            return
        # One writer at a time, as SQLite's BEGIN IMMEDIATE: a write transaction
        # takes the store's write lock before anything else. Writes that journal an
        # object also lock the revision counter row; taken second, after a row or a
        # unique index entry, that lock let two transactions wait for each other.
        connection.exec_driver_sql(f"SET LOCAL lock_timeout = '{SQLITE_BUSY_TIMEOUT_MS}ms'")
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({PG_WRITE_LOCK})")
        connection.exec_driver_sql("SET LOCAL lock_timeout = DEFAULT")


def _create_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
        )
        _configure_sqlite(engine)
    else:
        engine = create_engine(url, pool_pre_ping=True)
        _configure_postgresql(engine)
    _keep_connections_in_their_process(engine)
    return engine


class Database:
    """The store at one URL (default: :func:`ketch.core.config.database_url`, read
    when the object is made), and this process's connections to it.

    The engine is made on first use and kept until :meth:`dispose`; every method is
    safe to call from several threads. ``with Database(url) as database:`` disposes
    it when the block ends.
    """

    def __init__(self, url: str | None = None) -> None:
        self.url: str = _resolve(url)
        self._lock = threading.RLock()  # sessionmaker reads engine while holding it
        self._engine: Engine | None = None
        self._sessionmaker: sessionmaker[Session] | None = None
        # the sets of version folders this object has brought the database up to
        self._migrated: set[tuple[Path, ...]] = set()
        #: the commits of this object's sessions that journaled a change (watches listen)
        self.commits = Commits()

    def __repr__(self) -> str:
        return f"Database({make_url(self.url).render_as_string()!r})"  # no password

    def __enter__(self) -> Database:
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.dispose()

    # -- connections -------------------------------------------------------------

    @property
    def engine(self) -> Engine:
        """This database's engine (one per object, made on first use)."""
        engine = self._engine
        if engine is not None:
            return engine
        with self._lock:
            if self._engine is None:
                self._engine = _create_engine(self.url)
            return self._engine

    @property
    def sessionmaker(self) -> sessionmaker[Session]:
        """A ``sessionmaker`` bound to :attr:`engine` (objects stay readable after a
        commit); a commit of one of its sessions that journaled a change is told to
        :attr:`commits`."""
        maker = self._sessionmaker
        if maker is not None:
            return maker
        with self._lock:
            if self._sessionmaker is None:
                maker = sessionmaker(bind=self.engine, expire_on_commit=False)
                self.commits.attach(maker)
                self._sessionmaker = maker
            return self._sessionmaker

    @contextmanager
    def session(self, *, readonly: bool = False) -> Iterator[Session]:
        """A session that commits when the block ends and rolls back if it raises.

        On SQLite the transaction takes the write lock when it starts (``BEGIN
        IMMEDIATE``). ``readonly=True`` starts a deferred transaction instead (no
        write lock, a consistent snapshot) and ends it without committing; objects
        read stay readable after the block.
        """
        session = self.sessionmaker()
        if not readonly:
            session.connection(execution_options={IMMEDIATE_OPTION: True})
        try:
            yield session
            if not readonly:
                session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def dispose(self, *, close: bool = True) -> None:
        """Close this object's pooled connections and forget its engine (and which
        schemas it brought up to date); the next use opens new ones.

        ``close=False`` (in a forked child) drops the pool without closing its
        connections, which belong to the parent process.
        """
        with self._lock:
            engine, self._engine = self._engine, None
            self._sessionmaker = None
            self._migrated.clear()
        if engine is not None:
            engine.dispose(close=close)

    # -- schema ------------------------------------------------------------------

    def alembic_config(self, migrations: Iterable[Path] = ()) -> Any:
        """:func:`alembic_config` for this database."""
        return alembic_config(self.url, migrations)

    def current_revisions(self) -> set[str]:
        """The revision(s) the database is at (empty for a new database)."""
        with self.engine.connect() as connection:
            if not inspect(connection).has_table("alembic_version"):
                return set()
            rows = connection.execute(text("SELECT version_num FROM alembic_version"))
            return {row[0] for row in rows}

    def migrate(self, migrations: Iterable[Path] = ()) -> None:
        """Bring the database to the newest schema of core and of the capabilities
        whose version folders are in ``migrations`` (Alembic ``upgrade heads``). The
        API server and the embedded control plane pass every assembled capability's
        ``Capability.migrations``; code that needs only some tables may pass only
        their folders (core's is always included).

        Cheap when the database is already up to date: one query the first time for
        this object and set of folders, nothing afterwards. Safe when several
        processes call it at once: the upgrade runs in one transaction that holds the
        SQLite write lock (or a PostgreSQL advisory lock) and re-reads the revisions
        once it has it. Revisions of folders not given (another capability's branch)
        are kept as they are. A database at a revision this Ketch does not have (a
        newer Ketch migrated it) is refused with :class:`KetchError`, unchanged.
        """
        locations = version_locations(migrations)
        if locations in self._migrated:
            return
        current = self.current_revisions()
        if not head_revisions(locations) <= current:
            from alembic import command
            from alembic.util import CommandError

            cfg = self.alembic_config(locations)
            try:
                with self.engine.connect() as connection:
                    # BEGIN IMMEDIATE on SQLite: one process migrates, the others wait.
                    cfg.attributes["connection"] = connection.execution_options(
                        **{IMMEDIATE_OPTION: True}
                    )
                    command.upgrade(cfg, "heads")
            except (SQLAlchemyError, CommandError) as exc:
                unknown = current - known_revisions(locations)
                if not unknown:
                    raise
                raise KetchError(
                    f"cannot migrate the store {make_url(self.url).render_as_string()}: it is "
                    f"at revision(s) {', '.join(sorted(unknown))}, which this Ketch does not "
                    f"have ({type(exc).__name__}: {exc}); nothing was changed",
                    hint="a newer Ketch migrated this database: open it with that version",
                ) from exc
        with self._lock:
            self._migrated.add(locations)


def is_locked_error(exc: BaseException) -> bool:
    """Whether ``exc`` is SQLite's "database is locked"/"busy" (worth retrying)."""
    if not isinstance(exc, OperationalError):
        return False
    text = str(exc.orig if exc.orig is not None else exc).lower()
    return "database is locked" in text or "database is busy" in text


def retry_locked(
    fn: Callable[[], T], *, attempts: int = 5, initial_delay: float = 0.05, max_delay: float = 2.0
) -> T:
    """Call ``fn`` again (with backoff) when SQLite says the database is locked.

    ``fn`` must run its own transaction (for example a whole ``Database.session``
    block), so a retry starts from a clean state.
    """
    delay = initial_delay
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except OperationalError as exc:
            if attempt == attempts or not is_locked_error(exc):
                raise
            time.sleep(delay)
            delay = min(delay * 2, max_delay)
    raise AssertionError("unreachable")  # pragma: no cover


def version_locations(migrations: Iterable[Path] = ()) -> tuple[Path, ...]:
    """Core's version folder, then each folder of ``migrations`` (capabilities'
    ``Capability.migrations``), each once."""
    locations = [CORE_MIGRATIONS]
    for folder in migrations:
        resolved = Path(folder).resolve()
        if resolved not in locations:
            locations.append(resolved)
    return tuple(locations)


def alembic_config(url: str | None = None, migrations: Iterable[Path] = ()) -> Any:
    """An ``alembic.config.Config`` for the environment shipped in the package, with
    core's version folder and the folders in ``migrations``, for the database at
    ``url`` (default :func:`ketch.core.config.database_url`)."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    cfg.set_main_option("path_separator", "newline")
    cfg.set_main_option(
        "version_locations",
        "\n".join(str(p) for p in version_locations(migrations)).replace("%", "%%"),
    )
    cfg.set_main_option("sqlalchemy.url", _resolve(url).replace("%", "%%"))
    return cfg


_ASSIGNMENT = re.compile(r"^(revision|down_revision)\s*(?::[^=]+)?=\s*(.+?)\s*$", re.MULTILINE)


def _revision_ids(path: Path) -> dict[str, Any]:
    """``revision`` and ``down_revision`` as written at the top level of a migration file."""
    text_ = path.read_text(encoding="utf-8")
    return {name: ast.literal_eval(value) for name, value in _ASSIGNMENT.findall(text_)}


def _graph(migrations: Iterable[Path]) -> tuple[set[str], set[str]]:
    """Every revision in core's folder and the folders in ``migrations``, and every
    revision one of them follows."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (p for folder in version_locations(migrations) for p in folder.glob("*.py")):
        values = _revision_ids(path)
        if "revision" not in values:
            continue
        revisions.add(values["revision"])
        down = values.get("down_revision")
        if isinstance(down, str):
            parents.add(down)
        elif down:
            parents.update(down)
    return revisions, parents


def known_revisions(migrations: Iterable[Path] = ()) -> set[str]:
    """Every revision in core's version folder and the folders in ``migrations``."""
    return _graph(migrations)[0]


def head_revisions(migrations: Iterable[Path] = ()) -> set[str]:
    """The newest revision of each branch in core's version folder and the folders
    in ``migrations`` (one per branch: core's, and each capability's).

    Read from the migration files without importing Alembic, so checking an
    up-to-date database stays cheap.
    """
    revisions, parents = _graph(migrations)
    return revisions - parents
