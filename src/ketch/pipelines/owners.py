"""Who executes an in-flight run, and whether that process is still there.

Every PENDING/RUNNING/CANCELING run records its owner: the process executing it,
as ``<kind>:<host>:<pid>:<start>[:<token>]`` — ``kind`` is ``server`` (a ``ketch up``, whose
runs the next server resumes) or ``process`` (a ``ketch run``, whose runs end
with it), ``start`` the process's start time (so a reused pid is not taken for
the owner), ``token`` which run service of a server process. A process only ever executes the runs it owns; a server takes over
a run only when its owner is gone, with one conditional update, so two servers
starting together never both resume it. Runs whose owner is on another host are
left alone: their owner cannot be checked from here.

Reads (``ketch runs``, the API) call :func:`reap`: the runs of a ``ketch run``
that died (``kill -9``) end FAILED, with their unfinished tasks, and say why.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import select, update

from ketch.core.store.db import retry_locked, session_scope
from ketch.pipelines.tables import PipelineRunRow, PipelineTaskRow

SERVER = "server"
PROCESS = "process"
ACTIVE_STATES = ("PENDING", "RUNNING", "CANCELING")
_ACTIVE_TASK_STATES = ("PENDING", "RUNNING")
LEGACY_SERVER = "server"  # owner of server runs stored before owners had a process
_live_tokens: set[str] = set()
_tokens_lock = threading.Lock()


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
        """This owner as one run service of its process, live until :func:`release`."""
        owner = Owner(self.kind, self.host, self.pid, self.start, uuid.uuid4().hex[:8])
        with _tokens_lock:
            _live_tokens.add(owner.token)
        return owner

    def release(self) -> None:
        """The run service stopped: a later one in this process may take its runs over."""
        with _tokens_lock:
            _live_tokens.discard(self.token)

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


@lru_cache(maxsize=2)
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
    if owner.pid == os.getpid() and owner.start == current(owner.kind).start:
        if not owner.token:
            return False  # this very process
        with _tokens_lock:
            return owner.token not in _live_tokens  # a run service here that stopped
    if owner.pid == os.getpid():
        return True  # same pid, another process (started at another time)
    if not _alive(owner.pid):
        return True
    return bool(owner.start) and process_start(owner.pid) not in ("", owner.start)


def is_mine(text: str | None) -> bool:
    """True when ``text`` names this process (and, for a run service, a live one)."""
    owner = parse(text)
    return (
        owner is not None
        and owner.host == _host()
        and owner.pid == os.getpid()
        and owner.start == current(owner.kind).start
        and not is_gone(owner)
    )


def _owned_by(previous: str | None) -> Any:
    """The condition that a run's owner is still ``previous``."""
    return PipelineRunRow.owner.is_(None) if previous is None else PipelineRunRow.owner == previous


def claim(url: str | None, run_id: str, previous: str | None, new: Owner) -> bool:
    """Make ``new`` the owner of ``run_id`` if its owner is still ``previous``
    (one conditional update: of two processes claiming a run, one wins)."""

    def write() -> bool:
        with session_scope(url) as s:
            where = _owned_by(previous)
            result = s.execute(
                update(PipelineRunRow)
                .where(PipelineRunRow.id == run_id, where, PipelineRunRow.state.in_(ACTIVE_STATES))
                .values(owner=str(new))
            )
            return bool(getattr(result, "rowcount", 0))

    return bool(retry_locked(write))


def fail_run(
    url: str | None, run_id: str, previous: str | None, reason: str, *, state: str = "FAILED"
) -> bool:
    """End an orphaned run (FAILED, or CANCELED for one being canceled) with ``reason``,
    with its unfinished tasks — only if its owner is still ``previous`` and it has not
    ended meanwhile."""
    now = datetime.now(UTC)
    from_states = ("CANCELING",) if state == "CANCELED" else ACTIVE_STATES

    def write() -> bool:
        with session_scope(url) as s:
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
            return True

    return bool(retry_locked(write))


def orphan_reason(owner: Owner) -> str:
    return f"{owner.describe()} stopped before the run finished (owner process died)"


_last_reap: dict[str | None, float] = {}
_reap_lock = threading.Lock()


def reap(url: str | None = None, *, min_interval: float = 0.0) -> int:
    """End the in-flight runs of ``ketch run`` processes that are gone (FAILED, with
    the reason). Server runs are left for the next server to resume. Returns how
    many runs were ended. ``min_interval`` skips the check when one ran that recently."""
    return len(reap_runs(url, min_interval=min_interval))


def reap_runs(url: str | None = None, *, min_interval: float = 0.0) -> list[str]:
    """:func:`reap`, returning the ids of the runs it ended."""
    if min_interval > 0:
        with _reap_lock:
            last = _last_reap.get(url, 0.0)
            if time.monotonic() - last < min_interval:
                return []
            _last_reap[url] = time.monotonic()
    with session_scope(url, readonly=True) as s:
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
        if state == "CANCELING":
            done = fail_run(
                url, run_id, text, f"canceled; {orphan_reason(owner)}", state="CANCELED"
            )
        else:
            done = fail_run(url, run_id, text, orphan_reason(owner))
        if done:
            ended.append(run_id)
    return ended
