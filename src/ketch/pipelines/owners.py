"""Who executes an in-flight run, and whether that process is still there.

Every PENDING/RUNNING/CANCELING run records its owner: the process executing it,
as ``<kind>:<host>:<pid>:<start>[:<token>]`` — ``kind`` is ``server`` (a ``ketch up``, whose
runs the next server resumes) or ``process`` (a ``ketch run``, whose runs end
with it), ``start`` the process's start time (so a reused pid is not taken for
the owner), ``token`` which run service of a server process. A process only ever
executes the runs it owns; a server takes over a run only when its owner is gone,
with one conditional update, so two servers starting together never both resume it.
Runs whose owner is on another host are left alone: their owner cannot be checked
from here. A run service that stops hands its in-flight runs back (:func:`release`):
they then name no process, and the next server, in this process too, resumes them.

Reads (``ketch runs``, the API) call :func:`reap` (through a :class:`Reaper`, which
spaces the checks out): the runs of a ``ketch run`` that died (``kill -9``) end
FAILED, with their unfinished tasks, and say why.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update

from ketch.core.conditions import RunState
from ketch.core.store.db import Database, retry_locked
from ketch.core.timestamps import utcnow
from ketch.pipelines.manifests import journal_run
from ketch.pipelines.tables import PipelineRunRow, PipelineTaskRow

SERVER = "server"
PROCESS = "process"
ACTIVE_STATES: tuple[str, ...] = (
    RunState.PENDING.value,
    RunState.RUNNING.value,
    RunState.CANCELING.value,
)
_ACTIVE_TASK_STATES: tuple[str, ...] = (RunState.PENDING.value, RunState.RUNNING.value)
# The owner of server runs that no process executes: stored before owners had a
# process, or handed back by a run service that stopped. Any server resumes them.
LEGACY_SERVER = "server"


@dataclass(frozen=True)
class Owner:
    kind: str
    host: str
    pid: int
    start: str  # the process's start time as the OS counts it; "" if unknown
    # which run service in the process (a process may stop one and start another)
    token: str = ""

    def __str__(self) -> str:
        text = f"{self.kind}:{self.host}:{self.pid}:{self.start}"
        return f"{text}:{self.token}" if self.token else text

    def with_token(self) -> Owner:
        """This owner as one run service of its process (until :func:`release`)."""
        return Owner(self.kind, self.host, self.pid, self.start, uuid.uuid4().hex[:8])

    def describe(self) -> str:
        what = "ketch server" if self.kind == SERVER else "ketch run process"
        return f"the {what} running it (pid {self.pid} on {self.host})"


def _host() -> str:
    return socket.gethostname()[:64].replace(":", "_")


def process_start(pid: int) -> str:
    """When ``pid`` started (clock ticks since boot, from /proc); "" if unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode("ascii", "replace")
    except OSError:
        return ""
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else ""


def current(kind: str) -> Owner:
    """This process as the owner of runs of ``kind`` (``server`` or ``process``)."""
    pid = os.getpid()
    return Owner(kind, _host(), pid, process_start(pid))


def parse(text: str | None) -> Owner | None:
    """An owner as stored; ``None`` for one that names no process (legacy ``server``)."""
    if not text:
        return None
    parts = text.split(":")
    if len(parts) < 3 or parts[0] not in (SERVER, PROCESS):
        return None
    try:
        pid = int(parts[2])
    except ValueError:
        return None
    return Owner(
        parts[0],
        parts[1],
        pid,
        parts[3] if len(parts) > 3 else "",
        parts[4] if len(parts) > 4 else "",
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_gone(owner: Owner | None) -> bool:
    """True when the owner's process is known to have ended (on this host)."""
    if owner is None:
        return True
    if owner.host != _host():
        return False  # cannot be checked from here: assume it still runs
    if owner.pid == os.getpid() and owner.start == process_start(owner.pid):
        # this very process; a run service here that stopped released its runs
        return False
    if owner.pid == os.getpid():
        return True  # same pid, another process (started at another time)
    if not _alive(owner.pid):
        return True
    return bool(owner.start) and process_start(owner.pid) not in ("", owner.start)


def is_mine(text: str | None) -> bool:
    """True when ``text`` names this process."""
    owner = parse(text)
    return (
        owner is not None
        and owner.host == _host()
        and owner.pid == os.getpid()
        and owner.start == process_start(owner.pid)
    )


def _owned_by(previous: str | None) -> Any:
    """The condition that a run's owner is still ``previous``."""
    return PipelineRunRow.owner.is_(None) if previous is None else PipelineRunRow.owner == previous


def claim(database: Database, run_id: str, previous: str | None, new: Owner) -> bool:
    """Make ``new`` the owner of ``run_id`` if its owner is still ``previous``
    (one conditional update: of two processes claiming a run, one wins)."""

    def write() -> bool:
        with database.session() as s:
            where = _owned_by(previous)
            result = s.execute(
                update(PipelineRunRow)
                .where(PipelineRunRow.id == run_id, where, PipelineRunRow.state.in_(ACTIVE_STATES))
                .values(owner=str(new))
            )
            return bool(getattr(result, "rowcount", 0))

    return bool(retry_locked(write))


def release(database: Database, owner: Owner) -> int:
    """Hand the in-flight runs of ``owner`` (a run service that stopped) back: they
    name no process any more, so the next server resumes them. Returns how many."""

    def write() -> int:
        with database.session() as s:
            result = s.execute(
                update(PipelineRunRow)
                .where(PipelineRunRow.owner == str(owner), PipelineRunRow.state.in_(ACTIVE_STATES))
                .values(owner=LEGACY_SERVER)
            )
            return int(getattr(result, "rowcount", 0) or 0)

    return int(retry_locked(write))


def fail_run(
    database: Database,
    run_id: str,
    previous: str | None,
    reason: str,
    *,
    state: str = "FAILED",
) -> bool:
    """End an orphaned run (FAILED, or CANCELED for one being canceled) with ``reason``,
    with its unfinished tasks — only if its owner is still ``previous`` and it has not
    ended meanwhile."""
    now = utcnow()
    from_states = (RunState.CANCELING.value,) if state == RunState.CANCELED else ACTIVE_STATES

    def write() -> bool:
        with database.session() as s:
            where = _owned_by(previous)
            result = s.execute(
                update(PipelineRunRow)
                .where(PipelineRunRow.id == run_id, where, PipelineRunRow.state.in_(from_states))
                .values(state=state, error=reason, finished_at=now)
            )
            if not getattr(result, "rowcount", 0):
                return False
            s.execute(
                update(PipelineTaskRow)
                .where(
                    PipelineTaskRow.run_id == run_id, PipelineTaskRow.state.in_(_ACTIVE_TASK_STATES)
                )
                .values(state=state, error=reason, finished_at=now)
            )
            journal_run(s, run_id)  # its state: the next revision
            return True

    return bool(retry_locked(write))


def orphan_reason(owner: Owner) -> str:
    return f"{owner.describe()} stopped before the run finished (owner process died)"


def reap(database: Database) -> int:
    """End the in-flight runs of ``ketch run`` processes that are gone (FAILED, with
    the reason). Server runs are left for the next server to resume. Returns how
    many runs were ended."""
    return len(reap_runs(database))


class Reaper:
    """:func:`reap` for the reads of one store, at most once per ``min_interval``
    seconds (a read of a run first ends the runs of processes that died)."""

    def __init__(self, database: Database, min_interval: float = 1.0) -> None:
        self.database = database
        self.min_interval = min_interval
        self._lock = threading.Lock()
        self._last: float | None = None

    def reap(self) -> list[str]:
        """The ids of the runs it ended (none when it looked less than
        ``min_interval`` ago)."""
        with self._lock:
            now = time.monotonic()
            if self._last is not None and now - self._last < self.min_interval:
                return []
            self._last = now
        return reap_runs(self.database)


def reap_runs(database: Database) -> list[str]:
    """:func:`reap`, returning the ids of the runs it ended."""
    with database.session(readonly=True) as s:
        rows = s.execute(
            select(PipelineRunRow.id, PipelineRunRow.owner, PipelineRunRow.state).where(
                PipelineRunRow.state.in_(ACTIVE_STATES),
                PipelineRunRow.owner.like(f"{PROCESS}:{_host()}:%"),
            )
        ).all()
    ended: list[str] = []
    for run_id, text, state in rows:
        owner = parse(text)
        if owner is None or not is_gone(owner):
            continue
        if state == RunState.CANCELING:
            done = fail_run(
                database, run_id, text, f"canceled; {orphan_reason(owner)}", state="CANCELED"
            )
        else:
            done = fail_run(database, run_id, text, orphan_reason(owner))
        if done:
            ended.append(run_id)
    return ended
