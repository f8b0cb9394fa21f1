"""``python`` command lines run in the fork server: the same argv, output and exit codes."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from ketch.core.backend import LocalBackend, ProcessSpec, command_entry
from ketch.core.backend.pyrun import split

PY = sys.executable
SHOW = "import json, sys; print(json.dumps({'argv': sys.argv, 'main': __name__})); sys.exit(int(sys.argv[-1]))"


def _run(
    backend: LocalBackend, command: list[str], tmp_path: Path, **env: str
) -> tuple[int, str, bool]:
    """(exit code, output, whether the fork server ran it) of ``command``."""
    log = tmp_path / f"out-{time.monotonic_ns()}.log"
    entry = command_entry(command, PY)
    spec = ProcessSpec(
        name="pyrun test",
        command=command,
        env=dict(env),
        cwd=tmp_path,
        stdout_path=log,
        stderr_path=log,
        python=entry,
    )
    handle = backend.start(spec)
    code = handle.wait(60)
    return code, log.read_text(), type(handle).__name__ == "ForkedHandle"


def test_split_accepts_what_it_can_run() -> None:
    assert split(["-u", "-c", "pass", "a"]) == ({"-u"}, "-c", "pass", ["a"])
    assert split(["-m", "mod", "x"]) == (set(), "-m", "mod", ["x"])
    assert split(["train.py", "--lr", "1"]) == (set(), "script", "train.py", ["--lr", "1"])
    assert split(["-X", "dev", "-c", "pass"]) is None
    assert split(["-c"]) is None
    assert command_entry(["/usr/bin/env", "python"], PY) is None
    assert command_entry([PY, "-W", "error", "x.py"], PY) is None


@pytest.mark.parametrize("code", [0, 3])
def test_dash_c_matches_the_interpreter(backend: LocalBackend, tmp_path: Path, code: int) -> None:
    command = [PY, "-u", "-c", SHOW, "a b", str(code)]
    forked = _run(backend, command, tmp_path)
    assert forked[2], "expected the fork server to run it"
    import subprocess

    real = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)
    assert forked[0] == real.returncode == code
    assert (
        json.loads(forked[1])
        == json.loads(real.stdout)
        == {"argv": ["-c", "a b", str(code)], "main": "__main__"}
    )


def test_script_and_module(backend: LocalBackend, tmp_path: Path) -> None:
    (tmp_path / "helper.py").write_text("VALUE = 7\n")
    script = tmp_path / "train.py"
    script.write_text("import sys, helper\nprint(helper.VALUE, sys.argv[1:])\n")
    code, out, forked = _run(backend, [PY, str(script), "--lr", "0.1"], tmp_path)
    assert (code, out.strip(), forked) == (0, "7 ['--lr', '0.1']", True)
    code, out, forked = _run(backend, [PY, "-m", "helper"], tmp_path)
    assert (code, forked) == (0, True) and "Traceback" not in out


def test_unbuffered_output_arrives_before_exit(backend: LocalBackend, tmp_path: Path) -> None:
    program = "import time\nprint('first')\ntime.sleep(30)\n"
    log = tmp_path / "slow.log"
    spec = ProcessSpec(
        name="pyrun slow",
        command=[PY, "-c", program],
        env={"PYTHONUNBUFFERED": "1"},
        stdout_path=log,
        stderr_path=log,
        python=command_entry([PY, "-c", program], PY),
    )
    handle = backend.start(spec)
    try:
        deadline = time.monotonic() + 30
        while "first" not in (log.read_text() if log.exists() else ""):
            assert time.monotonic() < deadline, "output stayed buffered"
            time.sleep(0.05)
    finally:
        handle.cancel()
        handle.wait(30)


def test_uncaught_exception_exits_1_with_traceback(backend: LocalBackend, tmp_path: Path) -> None:
    code, out, _ = _run(backend, [PY, "-c", "raise ValueError('boom')"], tmp_path)
    assert code == 1
    assert "ValueError: boom" in out
