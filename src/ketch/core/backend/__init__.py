"""Compute backends: the only place in Ketch that starts processes."""

from __future__ import annotations

import threading

from ketch.core.backend.host import Request
from ketch.core.backend.local import LocalBackend
from ketch.core.backend.resources import parse_cpu, parse_memory
from ketch.core.backend.spec import (
    Abilities,
    Backend,
    ProcessHandle,
    ProcessSpec,
    ProcessState,
    PythonEntry,
    Resources,
    command_entry,
)

__all__ = [
    "Abilities",
    "Backend",
    "LocalBackend",
    "ProcessHandle",
    "ProcessSpec",
    "ProcessState",
    "PythonEntry",
    "Request",
    "Resources",
    "command_entry",
    "default_backend",
    "parse_cpu",
    "parse_memory",
]

_default: LocalBackend | None = None
_default_lock = threading.Lock()


def default_backend() -> LocalBackend:
    """The process-wide local backend, created on first use and shut down at exit."""
    global _default
    with _default_lock:
        if _default is None or _default._closed:
            _default = LocalBackend()
        return _default
