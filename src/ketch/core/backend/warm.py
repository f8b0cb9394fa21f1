"""The warm interpreters (fork servers) one owner keeps: the local backend for this
machine, a Ray process runner for its node.

One per key (interpreter, preload, start-up environment: see
:func:`~ketch.core.backend.local.startup_signature`), at most ``limit`` at a time:
taking a new one retires the least recently used (a retired server ends once the
processes it forked have). One that died :data:`MAX_DEATHS` times, or could not
start, is not tried again: its processes start as new ones.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable

from ketch.core.backend.forkclient import ForkServerClient

#: deaths of one key's warm interpreter before it is not started again
MAX_DEATHS = 3


class WarmInterpreters:
    """The fork servers of one owner, by key; made by the owner, launched here."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._servers: OrderedDict[Hashable, ForkServerClient] = OrderedDict()
        self._retired: list[ForkServerClient] = []
        self._failed: dict[Hashable, str] = {}
        self._deaths: dict[Hashable, int] = {}
        self._closed = False

    def take(
        self, key: Hashable, make: Callable[[], ForkServerClient]
    ) -> tuple[ForkServerClient | None, str | None]:
        """The interpreter of ``key`` (launched, not necessarily ready yet), made with
        ``make`` when there is none; ``(None, why)`` when it cannot be had: ``why`` is
        set once, when it has just died too often."""
        launch = False
        with self._lock:
            if self._closed or key in self._failed:
                return None, None
            client = self._servers.get(key)
            if client is not None and client.dead:
                del self._servers[key]
                self._deaths[key] = self._deaths.get(key, 0) + 1
                client = None
                if self._deaths[key] >= MAX_DEATHS:
                    self._failed[key] = "it died too often"
                    return None, "it died too often"
            if client is None:
                self._retired = [c for c in self._retired if not c.dead]
                while self._servers and len(self._servers) >= self.limit:
                    _, old = self._servers.popitem(last=False)
                    old.retire()
                    self._retired.append(old)
                client = make()
                self._servers[key] = client
                launch = True
            else:
                self._servers.move_to_end(key)
        if launch:
            client.launch()
        return client, None

    def failed(self, key: Hashable, client: ForkServerClient) -> None:
        """``client`` could not start: it goes, and ``key`` is not tried again."""
        with self._lock:
            if self._servers.get(key) is client:
                del self._servers[key]
            self._failed[key] = client.error or "unknown"
        client.close()

    def current(self) -> list[ForkServerClient]:
        """The interpreters kept now (not the retired ones), least recently used first."""
        with self._lock:
            return list(self._servers.values())

    def close(self) -> None:
        """Stop every interpreter, retired ones too; nothing is taken afterwards."""
        with self._lock:
            self._closed = True
            servers = [*self._servers.values(), *self._retired]
            self._servers.clear()
            self._retired.clear()
        for server in servers:
            server.close()
