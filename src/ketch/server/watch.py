"""Watching a kind: a change feed that turns store changes into ADDED/MODIFIED/DELETED.

Writes made through this server bump an in-process :class:`ChangeNotifier`, so a
watcher reacts within tens of milliseconds. Writes made by other processes (a
controller in another process, the CLI writing runs, the pipeline engine) are
found by polling: every ``poll_interval`` seconds the watcher reads the
``uid -> resourceVersion`` map of the watched objects (one narrow query) and
fetches only the objects whose version changed.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.concurrency import run_in_threadpool

from ketch.core.kinds import Kind
from ketch.core.sources import Source
from ketch.core.store.selectors import LabelSelector

POLL_ENV = "KETCH_WATCH_POLL_SECONDS"
DEFAULT_POLL_SECONDS = 1.0
HEARTBEAT_SECONDS = 15.0
_TICK = 0.05


def poll_interval() -> float:
    try:
        value = float(os.environ.get(POLL_ENV, DEFAULT_POLL_SECONDS))
    except ValueError:
        return DEFAULT_POLL_SECONDS
    return value if value > 0 else DEFAULT_POLL_SECONDS


class ChangeNotifier:
    """A counter bumped on every write made through this server."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seq = 0

    def notify(self) -> None:
        with self._lock:
            self._seq += 1

    @property
    def seq(self) -> int:
        return self._seq


async def watch(
    source: Source,
    kind: Kind,
    namespace: str | None,
    selector: LabelSelector,
    *,
    notifier: ChangeNotifier,
    stopping: threading.Event,
    send_initial: bool = True,
    timeout: float | None = None,
    interval: float | None = None,
) -> AsyncIterator[dict[str, Any] | None]:
    """Yield ``{"type", "object"}`` events; ``None`` now and then as a heartbeat.

    With ``send_initial`` the objects that exist when the watch starts come first,
    as ADDED events (what Kubernetes does for a watch without a resourceVersion).
    """
    interval = interval or poll_interval()
    known: dict[str, tuple[str, dict[str, Any]]] = {}
    first = True
    last_seq = -1
    last_poll = 0.0
    last_beat = time.monotonic()
    deadline = time.monotonic() + timeout if timeout else None
    while not stopping.is_set():
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            return
        seq = notifier.seq
        if first or seq != last_seq or now - last_poll >= interval:
            last_seq, last_poll = seq, now
            events = await run_in_threadpool(_changes, source, kind, namespace, selector, known)
            if not first or send_initial:
                for event in events:
                    yield event
                    last_beat = time.monotonic()
            first = False
        if time.monotonic() - last_beat >= HEARTBEAT_SECONDS:
            last_beat = time.monotonic()
            yield None
        await asyncio.sleep(_TICK)


def _changes(
    source: Source,
    kind: Kind,
    namespace: str | None,
    selector: LabelSelector,
    known: dict[str, tuple[str, dict[str, Any]]],
) -> list[dict[str, Any]]:
    versions = source.versions(kind, namespace, selector)
    changed = [uid for uid, version in versions.items() if known.get(uid, ("",))[0] != version]
    fetched = source.fetch(kind, changed)
    events: list[dict[str, Any]] = []
    added = sorted(
        fetched.values(),
        key=lambda m: (m["metadata"].get("creationTimestamp") or "", m["metadata"]["name"]),
    )
    for manifest in added:
        uid = manifest["metadata"]["uid"]
        version = str(manifest["metadata"].get("resourceVersion", ""))
        previous = known.get(uid)
        if previous is not None and previous[0] == version:
            continue
        known[uid] = (version, manifest)
        events.append({"type": "MODIFIED" if previous else "ADDED", "object": manifest})
    for uid in [uid for uid in known if uid not in versions]:
        _version, manifest = known.pop(uid)
        events.append({"type": "DELETED", "object": manifest})
    return events


def sse(event: dict[str, Any] | None) -> bytes:
    """One server-sent event carrying ``event`` as JSON (a comment for a heartbeat)."""
    if event is None:
        return b": keep-alive\n\n"
    return f"data: {json.dumps(event, separators=(',', ':'), default=str)}\n\n".encode()
