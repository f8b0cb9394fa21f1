"""Run a training function's script on a node: ``python -m ketch.trainer.function_runner``.

The command a :class:`~ketch.trainer.client.CustomTrainer` TrainJob runs on every
node::

    python -m ketch.trainer.function_runner [--package REQ]... [--pip-option OPT]...
        [--launcher torchrun|python] SCRIPT

``SCRIPT`` is the function's source followed by its call. It is written once to
``KETCH_HOME/functions/<hash>.py`` (so every node and every retry run the same
file), the packages are installed into a cached environment shared with pipeline
components (``KETCH_HOME/venvs``), and the process then becomes that
environment's interpreter running the script under ``torchrun`` (which reads the
node's ``PET_*`` variables the trainer sets) or plain ``python``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement

from ketch.core import config

LAUNCHERS = ("torchrun", "python")


def script_path(script: str, home: Path | None = None) -> Path:
    """Where ``script`` is kept: named for its content, written atomically once."""
    digest = hashlib.sha256(script.encode()).hexdigest()[:16]
    folder = (home or config.ketch_home()) / "functions"
    path = folder / f"train-{digest}.py"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        partial = folder / f".{path.name}.{os.getpid()}"
        partial.write_text(script)
        partial.replace(path)
    return path


def local_workspace(script: str, workspace: str | None) -> str:
    """``script`` with Trainer's ``/workspace`` paths (``/workspace/dataset``, …)
    pointing at the job's local workspace, as the TrainJob's command already does."""
    if not workspace:
        return script
    return re.sub(r"(?<![\w/.])/workspace(?=/|\b|$)", workspace.rstrip("/"), script)


def satisfied(requirement: str) -> bool:
    """Whether this interpreter already has what ``requirement`` asks for."""
    try:
        wanted = Requirement(requirement)
    except InvalidRequirement:
        return False  # a path or URL: install it
    if wanted.marker is not None and not wanted.marker.evaluate():
        return True  # not needed on this Python
    try:
        installed = metadata.version(wanted.name)
    except metadata.PackageNotFoundError:
        return False
    return not wanted.specifier or wanted.specifier.contains(installed, prereleases=True)


def interpreter(packages: list[str], pip_options: list[str]) -> str:
    """This interpreter when it has ``packages``, else a cached environment's with them."""
    if all(satisfied(p) for p in packages):
        return sys.executable
    from ketch.core.backend import LocalBackend
    from ketch.core.environments import Environments
    from ketch.core.errors import KetchError

    home = config.ketch_home()
    log_path = config.logs_dir(home) / "venvs" / f"install-{os.getpid()}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    print(
        f"ketch: an environment with {' '.join(packages)} (installed once, then reused)", flush=True
    )
    try:
        with LocalBackend() as backend:  # shut down before this process becomes the trainer
            return Environments(home / "venvs", backend).python_for(packages, pip_options, log_path)
    except (KetchError, OSError, ValueError) as exc:
        if log_path.exists():
            sys.stderr.write(log_path.read_text(errors="replace"))
        raise SystemExit(f"ketch: installing {' '.join(packages)} failed: {exc}") from None
    finally:
        if log_path.exists() and not log_path.stat().st_size:
            log_path.unlink()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ketch.trainer.function_runner")
    parser.add_argument("--package", action="append", default=[], help="a requirement to install")
    parser.add_argument("--pip-option", action="append", default=[], help="e.g. --index-url=URL")
    parser.add_argument("--launcher", choices=LAUNCHERS, default="torchrun")
    parser.add_argument("script", help="the function's source and its call")
    args = parser.parse_args(argv)
    python = interpreter(args.package, args.pip_option)
    path = script_path(local_workspace(args.script, os.environ.get("KETCH_WORKSPACE_DIR")))
    command = [python, "-u", str(path)]
    if args.launcher == "torchrun":
        command = [python, "-u", "-m", "torch.distributed.run", str(path)]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(python, command)  # this process becomes the node's trainer


if __name__ == "__main__":
    main()
