"""The audit log: every state-changing request, with who made it, what it did and
how it ended, kept in ``tenancy_audit`` and read by cluster admins
(``GET /auth/audit``, ``ketch audit``).

Entries are written by a thread of their own, a batch at a time, so a request never
waits for its audit row; they are flushed when the server stops. A process killed
with ``kill -9`` loses the entries of its last half second at most, never a stored
one.
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from ketch.core.access import Attributes, Identity
from ketch.core.store.db import Database
from ketch.core.timestamps import utcnow
from ketch.tenancy.tables import AuditRow

log = logging.getLogger(__name__)
FLUSH_SECONDS = 0.5
#: entries waiting beyond this are dropped (and the drop logged) rather than growing
MAX_PENDING = 10_000


@dataclass(frozen=True)
class Entry:
    at: datetime
    user: str
    method: str
    path: str
    verb: str
    resource: str
    namespace: str
    name: str
    code: int


class AuditTrail:
    """:class:`ketch.core.access.AuditLog` into the store (see the module)."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self._pending: queue.Queue[AuditRow] = queue.Queue(MAX_PENDING)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def record(
        self, identity: Identity, method: str, path: str, attributes: Attributes | None, code: int
    ) -> None:
        row = AuditRow(
            at=utcnow(),
            user=identity.name[:254],
            method=method[:8],
            path=path[:2048],
            verb=attributes.verb if attributes else "",
            resource=(
                (
                    attributes.resource
                    + (f"/{attributes.subresource}" if attributes.subresource else "")
                )
                if attributes
                else ""
            )[:256],
            namespace=(attributes.namespace or "")[:63] if attributes else "",
            name=(attributes.name or "")[:253] if attributes else "",
            code=code,
        )
        try:
            self._pending.put_nowait(row)
        except queue.Full:
            log.error(
                "the audit log is %d entries behind; dropped %s %s", MAX_PENDING, method, path
            )
        if self._thread is None:
            self.start()

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="ketch-audit", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=5)
        self.flush()

    def _run(self) -> None:
        while not self._stop.wait(FLUSH_SECONDS):
            try:
                self.flush()
            except Exception:  # noqa: BLE001 - the writer keeps going; the next flush retries
                log.exception("could not write the audit log")

    def flush(self) -> int:
        rows: list[AuditRow] = []
        while True:
            try:
                rows.append(self._pending.get_nowait())
            except queue.Empty:
                break
        if rows:
            with self.database.session() as session:
                session.add_all(rows)
        return len(rows)

    def entries(
        self, *, user: str | None = None, namespace: str | None = None, limit: int = 100
    ) -> list[Entry]:
        """The newest entries first (``limit`` of them), of ``user`` / in ``namespace``."""
        self.flush()
        query = select(AuditRow).order_by(AuditRow.id.desc()).limit(max(1, min(limit, 10_000)))
        if user:
            query = query.where(AuditRow.user == user.strip().lower())
        if namespace:
            query = query.where(AuditRow.namespace == namespace)
        with self.database.session(readonly=True) as session:
            return [
                Entry(
                    r.at, r.user, r.method, r.path, r.verb, r.resource, r.namespace, r.name, r.code
                )
                for r in session.scalars(query)
            ]
