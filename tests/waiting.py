"""Waiting in tests: poll a check until it holds, never a fixed sleep.

- :func:`poll` returns the check's first truthy value, or its last value when the
  time is up (for tests that assert on that value themselves);
- :func:`wait_for` returns the first truthy value and fails the test, saying what
  was awaited, when the time is up.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def poll(check: Callable[[], T], timeout: float = 60.0, interval: float = 0.05) -> T:
    """``check()`` once it is truthy, else its last value after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def wait_for(
    check: Callable[[], T], timeout: float = 60.0, interval: float = 0.05, what: str = ""
) -> T:
    """``check()`` once it is truthy; ``AssertionError`` after ``timeout`` seconds."""
    value = poll(check, timeout, interval)
    if not value:
        raise AssertionError(f"{what or 'the condition'} did not hold within {timeout:g}s")
    return value
