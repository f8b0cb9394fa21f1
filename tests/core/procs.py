"""Helpers for tests that watch real processes through /proc."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

from tests.waiting import poll


def proc_state(pid: int) -> str | None:
    """The /proc state letter of ``pid`` (None: no such process)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2 :].split()[0]


def alive(pid: int) -> bool:
    return proc_state(pid) not in (None, "Z", "X")


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    return bool(poll(condition, timeout, 0.02))


def kill_quietly(pids: list[int]) -> None:
    for pid in pids:
        for kill in (os.killpg, os.kill):
            try:
                kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
