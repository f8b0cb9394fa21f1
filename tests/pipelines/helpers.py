"""Helpers shared by the pipeline tests (not fixtures: see conftest.py)."""

import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src"


def cli_command() -> list[str]:
    """The `ketch` console script when installed, else ``python -m ketch.cli.main``."""
    script = Path(sys.executable).with_name("ketch")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "ketch.cli.main"]


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), env.get("PYTHONPATH", "")) if p)
    env.setdefault("PYTHONWARNINGS", "ignore::FutureWarning")
    env["NO_COLOR"] = "1"
    env["COLUMNS"] = "200"
    return env


def parse_json_output(stdout: str) -> dict:
    """``--output json`` prints exactly one JSON object on stdout."""
    text = stdout.strip()
    assert text, "no output on stdout"
    obj = json.loads(text)
    assert isinstance(obj, dict)
    return obj


def read_lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def local_path(uri: str) -> Path:
    """The local file behind an artifact URI of a local pipeline root."""
    return Path(uri[len("file://") :] if uri.startswith("file://") else uri)


def state_of(run, path: str) -> str:
    """A task's state; a task inside a skipped sub-DAG may be absent: it is skipped too."""
    if path in run.tasks:
        return run.tasks[path].state
    parent = path
    while "/" in parent:
        parent = parent.rsplit("/", 1)[0]
        if parent in run.tasks:
            state = run.tasks[parent].state
            assert state == "SKIPPED", f"{path} is missing but its parent {parent} is {state}"
            return state
    raise KeyError(path)
