"""How a controller follows the processes it started through the compute backend.

A controller is woken when one of its processes ends where the backend calls back
on exits (:attr:`~ketch.core.backend.Abilities.exit_callbacks`), and then looks
again only every :data:`EXIT_POLL` seconds as a safety net; on other backends it
polls every :data:`POLL` seconds. Processes are stopped together (SIGTERM, SIGKILL
after :data:`STOP_GRACE`). An object's logs live in a folder of its own
(:func:`object_dir`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from pathlib import Path

from ketch.core import config
from ketch.core.backend import Backend, ProcessHandle
from ketch.core.controller import Controller, Key

POLL = 0.2  # how often running processes are looked at when the backend cannot report exits
EXIT_POLL = 5.0  # a safety net when every process's exit wakes the controller
WAIT_FOR_RESOURCES = 0.5  # how often work waiting for admission asks again
STOP_GRACE = 3.0


def object_dir(kind: str, key: Key, uid: str | None) -> Path:
    """``KETCH_HOME/logs/training/<namespace>/<kind>/<name>/<uid>``: one object's logs
    (published in ``status.logPaths``) and files, never shared with an earlier object
    of the same name."""
    namespace, name = key
    folder = config.logs_dir() / "training" / namespace / kind.lower() / name
    return folder / uid if uid else folder


def wake_on_exit(controller: Controller, key: Key, handle: ProcessHandle, backend: Backend) -> None:
    """Reconcile ``key`` as soon as ``handle``'s process ends, instead of at the next
    poll, where ``backend`` calls back on exits."""
    if backend.abilities.exit_callbacks:
        handle.add_exit_callback(lambda _handle: controller.enqueue(key))


def poll_interval(backend: Backend, running: bool) -> float:
    """How long a controller may wait before looking at its processes again:
    :data:`EXIT_POLL` when their exits wake it (or nothing runs), else :data:`POLL`."""
    return EXIT_POLL if backend.abilities.exit_callbacks or not running else POLL


def stop(handles: Iterable[ProcessHandle | None]) -> None:
    """Stop the processes of ``handles`` that still run, together (SIGTERM, SIGKILL
    after :data:`STOP_GRACE`)."""
    alive = [h for h in handles if h is not None and h.poll() is None]
    threads = [threading.Thread(target=h.cancel, args=(STOP_GRACE,), daemon=True) for h in alive]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(STOP_GRACE + 15)
