"""Reading Ketch's log files on a client's behalf, for every log route (the server's
``.../log`` of any kind, a capability's own).

A path read back from the store is never trusted: a log is read only when, with
symlinks and ``..`` resolved, it lies inside the folders Ketch writes logs into
(:func:`log_roots`); it is opened without following a last symlink and only when it
is a regular file.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from starlette.concurrency import run_in_threadpool

from ketch.core import config

log = logging.getLogger(__name__)

CHUNK = 64 * 1024
#: seconds between looks at a followed log (and at whether its work has ended)
POLL = 0.2
REFUSED = b"(this log is not served: its path lies outside Ketch's log folders)\n"


def log_roots() -> tuple[Path, ...]:
    """The folders Ketch writes logs into: the only places a log is read from."""
    home = config.ketch_home()
    return (config.logs_dir(home).resolve(), (home / "runs").resolve())


def confined(path: str) -> Path | None:
    """``path`` with symlinks and ``..`` resolved, if it lies inside :func:`log_roots`;
    ``None`` for anything else."""
    candidate = Path(path)
    if not candidate.is_absolute():
        candidate = config.ketch_home() / candidate
    real = Path(os.path.realpath(candidate))
    if any(real.is_relative_to(root) for root in log_roots()):
        return real
    log.warning("refused to serve log %r: it is outside Ketch's log folders", path)
    return None


def read_chunk(path: Path, offset: int) -> bytes:
    """Up to :data:`CHUNK` bytes of the regular file ``path`` from ``offset``; none
    when it is missing, not a regular file, a symlink or unreadable."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return b""
    except OSError:  # a symlink swapped in after the check, a folder, no permission
        return b""
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            return b""
        handle.seek(offset)
        return handle.read(CHUNK)


async def tail(
    stored: str,
    *,
    follow: bool,
    finished: Callable[[], Awaitable[bool]],
    stopping: threading.Event,
) -> AsyncIterator[bytes]:
    """The bytes of the log stored as ``stored``; with ``follow``, new bytes too until
    ``finished()``. A path outside Ketch's log folders yields a notice, never its bytes."""
    path = confined(stored)
    if path is None:
        yield REFUSED
        return
    offset = 0
    while True:
        chunk = await run_in_threadpool(read_chunk, path, offset)
        if chunk:
            offset += len(chunk)
            yield chunk
            continue
        if not follow or stopping.is_set():
            return
        if await finished():
            while chunk := await run_in_threadpool(read_chunk, path, offset):
                offset += len(chunk)
                yield chunk
            return
        await asyncio.sleep(POLL)
