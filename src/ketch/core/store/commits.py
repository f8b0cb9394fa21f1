"""Telling this process that a write journaled something, as soon as it commits.

Every write to an object the store journals (a resource, a pod, an event, a
PipelineRun) records itself in the change journal in its own transaction
(:func:`ketch.core.store.resources.journal`), which marks the session
(:func:`mark_journaled`). A :class:`~ketch.core.store.db.Database` owns one
:class:`Commits` and hooks it to the sessions it makes: when a marked session's
transaction commits (in whichever thread: a controller's, a service's, a request's),
:class:`Commits` calls its listeners with the highest revision the transaction took.
The API server's watches listen, so a write made anywhere in the server process
reaches them at once; writes made by other processes (a CLI, a task launcher, a
second server on the same store) are not seen here, and are found by reading the
store's revision now and then (:mod:`ketch.server.watch`).

A transaction that journaled nothing (a read, a write of tables without a journal)
and one rolled back call nothing. A savepoint rolled back inside a transaction that
commits leaves its mark: the listeners are called once too often, never too few.
Listeners run in the committing thread, after the commit: they must be quick
(waking a waiter, scheduling a callback) and must not write to the store.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)

#: Where a session keeps the highest revision its transaction journaled.
JOURNALED_KEY = "ketch_journaled_revision"

Listener = Callable[[int], None]


def mark_journaled(session: Session, revision: int) -> None:
    """Note that ``session``'s transaction journaled a change at ``revision``."""
    info = session.info
    info[JOURNALED_KEY] = max(revision, int(info.get(JOURNALED_KEY, 0)))


class Commits:
    """The commits of journaled writes made through one ``Database`` in this process:
    their count, the highest revision they took, and who is told of each."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._listeners: list[Listener] = []
        self._count = 0
        self._revision = 0
        self._pid = os.getpid()

    @property
    def count(self) -> int:
        """How many transactions that journaled something have committed."""
        return self._count

    @property
    def revision(self) -> int:
        """The highest revision a committed transaction of this process journaled."""
        return self._revision

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(revision)`` after every commit of a transaction that
        journaled something (``revision``: the highest it took); the function returned
        stops that."""
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    def attach(self, maker: sessionmaker[Session]) -> None:
        """Follow the transactions of the sessions ``maker`` makes."""
        event.listen(maker, "after_commit", self._after_commit)
        event.listen(maker, "after_rollback", self._after_rollback)

    def committed(self, revision: int) -> None:
        """Tell the listeners that a transaction journaling up to ``revision`` committed."""
        if os.getpid() != self._pid:
            return  # a forked child: the listeners (an event loop's waiters) are the parent's
        with self._lock:
            self._count += 1
            self._revision = max(self._revision, revision)
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(revision)
            except Exception:  # noqa: BLE001 - one listener's failure must not stop the others
                log.exception("a commit listener failed")

    def _after_commit(self, session: Session) -> None:
        revision = session.info.pop(JOURNALED_KEY, None)
        if revision is not None:
            self.committed(int(revision))

    @staticmethod
    def _after_rollback(session: Session) -> None:
        session.info.pop(JOURNALED_KEY, None)
