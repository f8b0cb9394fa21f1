"""Engines, sessions and schema migrations for Ketch's store.

SQLite (the default, a file in ``KETCH_HOME``) runs in WAL mode with a busy timeout,
so several processes (the API server, a CLI, a task launcher) can share one file.
Sessions from :func:`session_scope` start with ``BEGIN IMMEDIATE``: a
transaction that reads and then writes takes the write lock up front and waits
for it (up to the busy timeout) instead of failing half-way with "database is
locked". Only one such session holds the lock at a time, so do not nest a write
``session_scope`` inside another in one thread; read with
``session_scope(readonly=True)``, which starts a deferred transaction that never
blocks and is never blocked by writers. Other connections (``get_engine().connect()``,
sessions from :func:`get_sessionmaker`) start deferred transactions.

PostgreSQL is used through psycopg 3; ``postgresql://`` URLs are mapped to the
``postgresql+psycopg://`` driver.

Migrations: one Alembic environment (``migrations/env.py``) and a version folder
per owner of tables. Core's folder (:data:`CORE_MIGRATIONS`) holds the shared base
revision ``0001`` and core's own branch (label ``core``); each capability with
tables has its own folder (``Capability.migrations``), a branch whose first
revision follows ``0001``. :func:`init_db` is given the capabilities' folders by
its caller (core's is always included) and upgrades to ``heads``. Revisions in the
database from folders it was not given (a capability this process does not
assemble) are left as they are.
"""

from __future__ import annotations

import ast
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from ketch.core import config
from ketch.core.errors import KetchError

T = TypeVar("T")

SQLITE_BUSY_TIMEOUT_MS = 30_000
#: The Alembic environment (``env.py``); the version folders are given separately.
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
#: Core's version folder: the shared base ``0001`` and core's branch.
CORE_MIGRATIONS = MIGRATIONS_DIR / "versions"
IMMEDIATE_OPTION = "ketch_begin_immediate"

_lock = threading.RLock()  # get_sessionmaker calls get_engine while holding it
_engines: dict[str, Engine] = {}
_sessionmakers: dict[str, sessionmaker[Session]] = {}
# (url, version folders) this process has brought up to date
_migrated: set[tuple[str, tuple[Path, ...]]] = set()


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
        return engine
    return create_engine(url, pool_pre_ping=True)


def get_engine(url: str | None = None) -> Engine:
    """The engine for ``url`` (default :func:`ketch.core.config.database_url`), one per URL."""
    key = _resolve(url)
    engine = _engines.get(key)
    if engine is not None:
        return engine
    with _lock:
        engine = _engines.get(key)
        if engine is None:
            engine = _create_engine(key)
            _engines[key] = engine
        return engine


def get_sessionmaker(url: str | None = None) -> sessionmaker[Session]:
    """A ``sessionmaker`` bound to :func:`get_engine` for ``url``."""
    key = _resolve(url)
    maker = _sessionmakers.get(key)
    if maker is None:
        with _lock:
            maker = _sessionmakers.get(key)
            if maker is None:
                maker = sessionmaker(bind=get_engine(key), expire_on_commit=False)
                _sessionmakers[key] = maker
    return maker


@contextmanager
def session_scope(url: str | None = None, *, readonly: bool = False) -> Iterator[Session]:
    """A session that commits when the block ends and rolls back if it raises.

    On SQLite the transaction takes the write lock when it starts (``BEGIN
    IMMEDIATE``). ``readonly=True`` starts a deferred transaction instead (no write
    lock, a consistent snapshot) and ends it without committing; objects read stay
    readable after the block.
    """
    session = get_sessionmaker(url)()
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

    ``fn`` must run its own transaction (for example a whole ``session_scope``
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
    core's version folder and the folders in ``migrations``."""
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


def current_revisions(url: str | None = None) -> set[str]:
    """The revision(s) the database at ``url`` is at (empty for a new database)."""
    with get_engine(url).connect() as connection:
        if not inspect(connection).has_table("alembic_version"):
            return set()
        rows = connection.execute(text("SELECT version_num FROM alembic_version"))
        return {row[0] for row in rows}


def init_db(url: str | None = None, migrations: Iterable[Path] = ()) -> None:
    """Bring the database at ``url`` to the newest schema of core and of the
    capabilities whose version folders are in ``migrations`` (Alembic ``upgrade
    heads``). The API server and the embedded control plane pass every assembled
    capability's ``Capability.migrations``; code that needs only some tables may
    pass only their folders (core's is always included).

    Cheap when the database is already up to date: one query the first time per
    process and set of folders, nothing afterwards. Safe when several processes call
    it at once: the upgrade runs in one transaction that holds the SQLite write lock
    (or a PostgreSQL advisory lock) and re-reads the revisions once it has it.
    Revisions of folders not given (another capability's branch) are kept as they are.
    """
    key = _resolve(url)
    locations = version_locations(migrations)
    if (key, locations) in _migrated:
        return
    current = current_revisions(key)
    if not head_revisions(locations) <= current:
        from alembic import command
        from alembic.util import CommandError

        cfg = alembic_config(key, locations)
        try:
            with get_engine(key).connect() as connection:
                # BEGIN IMMEDIATE on SQLite: one process migrates, the others wait for it.
                cfg.attributes["connection"] = connection.execution_options(
                    **{IMMEDIATE_OPTION: True}
                )
                command.upgrade(cfg, "heads")
        except (SQLAlchemyError, CommandError) as exc:
            unknown = current - known_revisions(locations)
            if not unknown:
                raise
            raise KetchError(
                f"cannot migrate the store {make_url(key).render_as_string()}: it is at "
                f"revision(s) {', '.join(sorted(unknown))}, which this Ketch does not have "
                f"({type(exc).__name__}: {exc}); nothing was changed",
                hint="a newer Ketch migrated this database: open it with that version",
            ) from exc
    _migrated.add((key, locations))


def dispose_engine(url: str | None = None) -> None:
    """Close the engine for ``url`` and forget it (and that it was migrated)."""
    key = _resolve(url)
    with _lock:
        engine = _engines.pop(key, None)
        _sessionmakers.pop(key, None)
        _migrated.difference_update({done for done in _migrated if done[0] == key})
    if engine is not None:
        engine.dispose()


def dispose_engines() -> None:
    """Close every pooled connection (before forking, or at the end of a test)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()
        _sessionmakers.clear()
        _migrated.clear()
