"""The event loop Ketch's serving code runs on: uvloop's where it is installed."""

from __future__ import annotations

import asyncio


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A new event loop: uvloop's, else asyncio's."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a serving dependency
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()
