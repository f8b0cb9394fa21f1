"""Compute backends: the only place in Ketch that starts processes."""

from __future__ import annotations

from ketch.core.backend.host import Request
from ketch.core.backend.local import LocalBackend
from ketch.core.backend.resources import parse_cpu, parse_memory
from ketch.core.backend.spec import (
    Abilities,
    Backend,
    Isolation,
    Placement,
    ProcessHandle,
    ProcessSpec,
    ProcessState,
    PythonEntry,
    Resources,
    RunAs,
    command_entry,
)

__all__ = [
    "Abilities",
    "Backend",
    "Isolation",
    "LocalBackend",
    "Placement",
    "ProcessHandle",
    "ProcessSpec",
    "ProcessState",
    "PythonEntry",
    "Request",
    "Resources",
    "RunAs",
    "command_entry",
    "parse_cpu",
    "parse_memory",
]
