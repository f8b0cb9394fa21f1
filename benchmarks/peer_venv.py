"""Virtual environments for the peers a benchmark runs against (never Ketch dependencies).

Each peer gets its own venv under ``benchmarks/.cache`` (which git ignores), made on
first use and reused afterwards; a marker file lists the packages it was made with,
so changing the list makes a fresh one.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

CACHE = Path(__file__).resolve().parent / ".cache"


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def peer_python(name: str, packages: list[str]) -> Path:
    """The interpreter of the venv ``benchmarks/.cache/<name>``, installing ``packages`` once."""
    venv = CACHE / name
    python = venv / "bin" / "python"
    marker = venv / ".installed"
    wanted = "\n".join(packages)
    if marker.exists() and python.exists() and marker.read_text() in (wanted, ""):
        return python  # an empty marker: made before markers listed packages
    CACHE.mkdir(parents=True, exist_ok=True)
    (CACHE / ".gitignore").write_text("*\n")
    if venv.exists():
        shutil.rmtree(venv)
    log(f"creating {venv} and installing {' '.join(packages)} ...")
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *packages],
        check=True,
    )
    marker.write_text(wanted)
    return python
