"""One control plane per store: the lock ``ketch up`` holds for as long as it runs.

Two servers on one store would both resume the same in-flight work and run it
twice. The lock is one the operating system or the database drops by itself when
its holder dies, so a restart after ``kill -9`` is never held up:

- SQLite: an exclusive ``flock`` on ``<database file>.lock``; the holder writes its
  PID, host and start time into the file for the next one to name.
- PostgreSQL: a session-level advisory lock held on a connection of its own, whose
  ``application_name`` names the holder; PostgreSQL releases it when that connection
  drops.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import time
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from ketch.core.errors import Conflict

# A fixed key for pg_try_advisory_lock: "ketch" and "control plane" in two 32-bit halves.
_ADVISORY_KEY = (0x6B657463, 0x63706C6E)


def holder_text() -> str:
    return f"pid {os.getpid()} on host {socket.gethostname()} since {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}"


class ControlPlaneLock:
    """Held from :meth:`acquire` until :meth:`release` (or the process's death)."""

    def __init__(self, database_url: str) -> None:
        self.url = make_url(database_url)
        self._fd: int | None = None
        self._connection: Any = None

    @property
    def backend(self) -> str:
        return self.url.get_backend_name()

    def acquire(self) -> ControlPlaneLock:
        """Take the lock, or raise ``Conflict`` naming who holds it."""
        if self.backend == "sqlite":
            self._acquire_file()
        elif self.backend == "postgresql":
            self._acquire_advisory()
        return self

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
        if self._connection is not None:
            with contextlib.suppress(Exception):
                self._connection.close()
            self._connection = None

    def __enter__(self) -> ControlPlaneLock:
        return self.acquire()

    def __exit__(self, *_exc: object) -> None:
        self.release()

    # -- SQLite: a file lock beside the database -------------------------------------

    def lock_path(self) -> Path | None:
        database = self.url.database
        if self.backend != "sqlite" or not database or database == ":memory:":
            return None
        return Path(database).expanduser().resolve().with_name(Path(database).name + ".lock")

    def _acquire_file(self) -> None:
        path = self.lock_path()
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _read_all(fd).strip() or "another process"
            os.close(fd)
            raise Conflict(
                f"another Ketch server already runs on this store ({path.with_suffix('')}): "
                f"{holder}",
                hint="stop it first, or give this one another --home or KETCH_DATABASE_URL",
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{holder_text()}\n".encode(), 0)
        self._fd = fd

    # -- PostgreSQL: an advisory lock on a connection of its own -----------------------

    def _acquire_advisory(self) -> None:
        import psycopg

        url = self.url.set(drivername="postgresql")
        dsn = url.render_as_string(hide_password=False)
        name = f"ketch up {holder_text()}"[:63]
        connection = psycopg.connect(dsn, autocommit=True, application_name=name)
        try:
            taken = connection.execute(
                "SELECT pg_try_advisory_lock(%s, %s)", _ADVISORY_KEY
            ).fetchone()
            if taken and taken[0]:
                self._connection = connection
                return
            row = connection.execute(
                "SELECT a.application_name, a.client_addr FROM pg_locks l "
                "JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE l.locktype = 'advisory' AND l.classid = %s AND l.objid = %s "
                "AND l.granted AND l.database = (SELECT oid FROM pg_database "
                "WHERE datname = current_database())",
                (_ADVISORY_KEY[0], _ADVISORY_KEY[1]),
            ).fetchone()
        except BaseException:
            connection.close()
            raise
        connection.close()
        who = (row[0] or "another process") if row else "another process"
        where = f" (from {row[1]})" if row and row[1] else ""
        raise Conflict(
            f"another Ketch server already runs on this database: {who}{where}",
            hint="stop it first, or point this one at another KETCH_DATABASE_URL",
        )


def _read_all(fd: int) -> str:
    try:
        return os.pread(fd, 4096, 0).decode("utf-8", "replace")
    except OSError:
        return ""
