"""Where a container's command is found: Ketch's own environment first, then ``PATH``.

A command's first word without a ``/`` (``python``, ``torchrun``, ``mpirun``, ...)
is looked up in the folder of the interpreter Ketch runs from (its virtual
environment's ``bin``), then on ``PATH`` (the container's own ``PATH`` when its
``env`` sets one, else the server's), so the commands of Kubeflow's manifests and
of the TrainJob runtimes run with the packages Ketch was installed with, whatever
``PATH`` the server was started with. ``python`` and ``python3`` are Ketch's own
interpreter itself (which also lets them start from the warm fork server). A name
found nowhere is left as written: starting it then fails with the usual error in
the replica's log. The processes also get Ketch's ``bin`` at the head of their
``PATH`` (unless their container sets ``PATH``), so what they start in turn
(``mpirun``'s ranks, a script's ``subprocess.run(["python", ...])``) is found the
same way.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path

_PYTHONS = ("python", "python3", f"python{sys.version_info.major}.{sys.version_info.minor}")


def own_bin() -> Path:
    """The folder of the interpreter Ketch runs from (not resolved: a virtual
    environment's ``bin`` holds links to the base interpreter)."""
    return Path(sys.executable).parent


def which(program: str, env: Mapping[str, str] | None = None) -> str | None:
    """The path ``program`` runs from: Ketch's ``bin`` first, then ``PATH``."""
    if not program or "/" in program:
        return None
    if program in _PYTHONS:
        return sys.executable
    candidate = own_bin() / program
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    path = (env or {}).get("PATH") or os.environ.get("PATH", os.defpath)
    return shutil.which(program, path=path)


def resolve(command: list[str], env: Mapping[str, str] | None = None) -> list[str]:
    """``command`` with its program made a path by :func:`which` (unchanged when the
    program is a path already or is found nowhere)."""
    if not command:
        return command
    found = which(command[0], env)
    return [found, *command[1:]] if found else list(command)


def child_env(env: dict[str, str]) -> dict[str, str]:
    """``env`` with ``PATH`` starting at Ketch's ``bin`` (left alone when ``env`` sets
    ``PATH`` itself or the server's ``PATH`` already starts there)."""
    if "PATH" in env:
        return env
    current = os.environ.get("PATH", os.defpath)
    head = str(own_bin())
    if current.split(os.pathsep)[0] == head:
        return env
    return {**env, "PATH": os.pathsep.join([head, current]) if current else head}
