"""Per-requirement-set virtual environments for ``packages_to_install``.

One environment per (requirements, pip options, Python) set, kept under
``KETCH_HOME/venvs`` and reused by every later task and run. The environment
sees the packages of the interpreter running Ketch (through a ``.pth`` file),
so pip only installs what is missing, and what it installs shadows the parent's
versions.
"""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import sys
import sysconfig
from pathlib import Path

from ketch.core.backend import Backend, ProcessSpec
from ketch.core.errors import KetchError

_READY = ".ketch-ready"


def environment_key(requirements: list[str], pip_options: list[str]) -> str:
    """A short stable name for a requirement set (and pip options) on this Python."""
    text = "\n".join(sorted(requirements)) + "\n--\n" + " ".join(pip_options) + f"\n{sys.version}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class EnvironmentError_(KetchError):
    """Installing a component's packages failed."""


class Environments:
    def __init__(self, root: Path, backend: Backend):
        self.root = root
        self.backend = backend

    def ready(self, requirements: list[str], pip_options: list[str]) -> bool:
        """Whether the environment with ``requirements`` is made already (then
        :meth:`python_for` answers at once)."""
        return (self.root / environment_key(requirements, pip_options) / _READY).exists()

    def python_for(self, requirements: list[str], pip_options: list[str], log_path: Path) -> str:
        """The interpreter of an environment with ``requirements`` installed (created if needed)."""
        key = environment_key(requirements, pip_options)
        env_dir = self.root / key
        python = env_dir / "bin" / "python"
        if self.ready(requirements, pip_options):
            return str(python)
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / f"{key}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if (env_dir / _READY).exists():
                return str(python)
            shutil.rmtree(env_dir, ignore_errors=True)
            self._run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], log_path, key)
            site = Path(
                sysconfig.get_path("purelib", vars={"base": str(env_dir), "platbase": str(env_dir)})
            )
            site.mkdir(parents=True, exist_ok=True)
            parents = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
            (site / "_ketch_parent.pth").write_text("\n".join(sorted(parents)) + "\n")
            self._run(
                [
                    str(python),
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    "--no-warn-script-location",
                    *pip_options,
                    *requirements,
                ],
                log_path,
                key,
            )
            (env_dir / _READY).write_text("\n".join(requirements) + "\n")
        return str(python)

    def _run(self, command: list[str], log_path: Path, key: str) -> None:
        spec = ProcessSpec(
            name=f"environment {key}",
            command=command,
            env={"PIP_DISABLE_PIP_VERSION_CHECK": "1"},
            stdout_path=log_path,
            stderr_path=log_path,
        )
        code = self.backend.start(spec).wait()
        if code != 0:
            raise EnvironmentError_(
                f"installing packages failed (exit {code}): {' '.join(command[3:])}",
                hint=f"see {log_path}",
            )
