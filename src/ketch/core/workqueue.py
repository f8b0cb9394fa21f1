"""A work queue for reconcile loops, with the guarantees controllers rely on:

- a key waiting in the queue is queued once, however often it is added;
- a key is handed to one worker at a time; added again while being processed, it
  is queued again when that worker calls :meth:`WorkQueue.done`;
- :meth:`WorkQueue.add_after` delays a key (the earliest pending time wins), and
  adding it now cancels the delay.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import deque
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class WorkQueue(Generic[K]):
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._queue: deque[K] = deque()
        self._queued: set[K] = set()
        self._processing: set[K] = set()
        self._dirty: set[K] = set()  # added while processing
        self._waiting: dict[K, float] = {}  # key -> monotonic time it is due
        self._heap: list[tuple[float, int, K]] = []
        self._seq = itertools.count()
        self._shutdown = False

    def add(self, key: K) -> None:
        """Queue ``key`` now (no-op if it is already queued)."""
        with self._cond:
            if self._shutdown:
                return
            self._waiting.pop(key, None)
            self._add_locked(key)

    def add_after(self, key: K, delay: float) -> None:
        """Queue ``key`` after ``delay`` seconds (at once when ``delay <= 0``)."""
        if delay <= 0:
            self.add(key)
            return
        with self._cond:
            if self._shutdown:
                return
            due = time.monotonic() + delay
            current = self._waiting.get(key)
            if current is not None and current <= due:
                return
            self._waiting[key] = due
            heapq.heappush(self._heap, (due, next(self._seq), key))
            self._cond.notify_all()

    def get(self, timeout: float | None = None) -> K | None:
        """The next key to process; ``None`` on shutdown or when ``timeout`` passes."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                if self._shutdown:
                    return None
                self._promote_due_locked()
                if self._queue:
                    key = self._queue.popleft()
                    self._queued.discard(key)
                    self._processing.add(key)
                    return key
                now = time.monotonic()
                wait = None if deadline is None else deadline - now
                if wait is not None and wait <= 0:
                    return None
                if self._heap:
                    until_due = self._heap[0][0] - now
                    wait = until_due if wait is None else min(wait, until_due)
                self._cond.wait(wait)

    def done(self, key: K) -> None:
        """Mark ``key`` processed; if it was added meanwhile, queue it again."""
        with self._cond:
            self._processing.discard(key)
            if key in self._dirty:
                self._dirty.discard(key)
                if not self._shutdown:
                    self._add_locked(key)

    def shutdown(self) -> None:
        """Wake every waiting :meth:`get` (which then returns ``None``); drop queued keys."""
        with self._cond:
            self._shutdown = True
            self._queue.clear()
            self._queued.clear()
            self._heap.clear()
            self._waiting.clear()
            self._cond.notify_all()

    @property
    def is_shutdown(self) -> bool:
        return self._shutdown

    def __len__(self) -> int:
        """Keys ready now (not counting delayed or in-process ones)."""
        with self._cond:
            return len(self._queue)

    def idle(self, *, include_delayed: bool = True) -> bool:
        """Nothing queued and nothing being processed; with ``include_delayed``, also
        nothing waiting for a delay to pass."""
        with self._cond:
            busy = bool(self._queue or self._processing or self._dirty)
            return not busy and not (include_delayed and self._waiting)

    def delayed(self) -> int:
        """Keys waiting for a delay to pass."""
        with self._cond:
            return len(self._waiting)

    def _add_locked(self, key: K) -> None:
        if key in self._processing:
            self._dirty.add(key)
            return
        if key in self._queued:
            return
        self._queued.add(key)
        self._queue.append(key)
        self._cond.notify()

    def _promote_due_locked(self) -> None:
        now = time.monotonic()
        while self._heap and self._heap[0][0] <= now:
            due, _, key = heapq.heappop(self._heap)
            if self._waiting.get(key) != due:
                continue  # superseded by an earlier delay or an immediate add
            del self._waiting[key]
            self._add_locked(key)
