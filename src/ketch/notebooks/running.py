"""What runs for a notebook, in this process: its server's process, where it listens and
the token only Ketch knows; and the table the proxy reads to reach it.

The table (:class:`Upstreams`) is one per store's :class:`~ketch.core.store.db.Database`
(:func:`upstreams_of`), as the access implementation and the quota ledger are: the
controller, made with the store, writes it; the proxy's routes, served by the app of
that store, read it. Tokens live here only: never in a manifest, a status, a pod, a
command line or a log.
"""

from __future__ import annotations

import secrets
import threading
import time
import weakref
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ketch.core.backend import ProcessHandle
from ketch.core.timestamps import utcnow

Key = tuple[str, str]


def new_token() -> str:
    return secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Upstream:
    """Where the proxy sends a notebook's requests, and how."""

    host: str
    port: int
    token: str = field(repr=False)
    #: the public path prefix, ``/notebook/<ns>/<name>/``
    prefix: str
    #: the server serves from ``/`` (code-server, RStudio): the prefix is taken off
    strip_prefix: bool = False
    #: headers the proxy sets on every request (RStudio's root path)
    headers: tuple[tuple[str, str], ...] = ()

    def auth_headers(self) -> list[tuple[str, str]]:
        """What the proxy adds to each request: the token, where the server reads one."""
        found = list(self.headers)
        if not self.strip_prefix:
            found.append(("authorization", f"token {self.token}"))
        return found


@dataclass
class NotebookServer:
    """One notebook's running server process."""

    key: Key
    uid: str
    handle: ProcessHandle
    upstream: Upstream
    log: Path
    offset: int
    started: float = field(default_factory=time.monotonic)
    started_wall: datetime = field(default_factory=utcnow)
    ready: bool = False


class Upstreams:
    """The notebooks the proxy may reach, by ``(namespace, name)``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._found: dict[Key, Upstream] = {}

    def set(self, key: Key, upstream: Upstream) -> None:
        with self._lock:
            self._found[key] = upstream

    def drop(self, key: Key) -> None:
        with self._lock:
            self._found.pop(key, None)

    def get(self, namespace: str, name: str) -> Upstream | None:
        with self._lock:
            return self._found.get((namespace, name))

    def in_namespace(self, namespace: str) -> list[Key]:
        with self._lock:
            return [key for key in self._found if key[0] == namespace]


_TABLES: weakref.WeakKeyDictionary[Any, Upstreams] = weakref.WeakKeyDictionary()
_TABLES_LOCK = threading.Lock()


def upstreams_of(database: object) -> Upstreams:
    """The notebooks of the control plane over ``database`` (one table per Database)."""
    with _TABLES_LOCK:
        found = _TABLES.get(database)
        if found is None:
            found = _TABLES[database] = Upstreams()
        return found
