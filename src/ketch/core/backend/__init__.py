"""Compute backends: the only place in Ketch that starts processes."""

from ketch.core.backend.spec import (
    Backend,
    ProcessHandle,
    ProcessSpec,
    ProcessState,
    PythonEntry,
    Resources,
)

__all__ = ["Backend", "ProcessHandle", "ProcessSpec", "ProcessState", "PythonEntry", "Resources"]
