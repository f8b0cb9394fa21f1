"""Saying why a task failed: the exception a Python component ended with, a shell's
own error (a command not found on this host), and the tail of the task's log."""

from __future__ import annotations

import os
from pathlib import Path

ERROR_TAIL_LINES = 20
_TRACEBACK = "Traceback (most recent call last):"
_SHELLS = {"sh", "bash", "dash", "zsh", "ksh", "ash"}
_SHELL_CODES = {
    2: "shell error",
    126: "shell error: a command could not be run on this host",
    127: "shell error: a command was not found on this host",
}


def shell_error(command: list[str], code: int | None, log_tail: str) -> str | None:
    """For ``sh -c``/``bash -c`` commands that end with a shell's own error code (2,
    126, 127), the shell's message (``sh: 1: frobnicate: not found``)."""
    if not command or os.path.basename(command[0]) not in _SHELLS or code not in _SHELL_CODES:
        return None
    shell = os.path.basename(command[0])
    said = [
        line.strip()
        for line in log_tail.splitlines()
        if line.startswith(f"{shell}: ") or line.startswith(f"/bin/{shell}: ")
    ]
    label = _SHELL_CODES[code]
    if not said:
        return None if code == 2 else f"{label} ({shell})"
    return f"{label} ({shell}): {said[-1]}"


def exception_line(log_tail: str) -> str | None:
    """The exception a Python process ended with (``ValueError: bad input``), read
    from the end of its log; ``None`` when the log does not end in a traceback."""
    lines = log_tail.splitlines()
    starts = [i for i, line in enumerate(lines) if line.strip() == _TRACEBACK]
    if not starts:
        return None
    raised: str | None = None
    for line in lines[starts[-1] + 1 :]:
        if line and not line[0].isspace():
            raised = line.strip()  # the last unindented line after the frames
            break
    return raised


def from_traceback(log_tail: str) -> str:
    """The log tail from its last traceback on (executor log lines before it left out)."""
    at = log_tail.rfind(_TRACEBACK)
    return log_tail[at:] if at >= 0 else log_tail


def log_tail(path: Path, lines: int = ERROR_TAIL_LINES) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 65536))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
