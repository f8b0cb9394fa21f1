"""Ctrl-C on `ketch run` cancels the run and stops its processes."""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.pipelines.helpers import cli_command, cli_env

SLEEPER = """
from kfp import dsl


@dsl.component
def sleeper(pid_file: str):
    import os
    import time

    with open(pid_file + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.replace(pid_file + ".tmp", pid_file)
    time.sleep(120)


@dsl.component
def never(x: int) -> int:
    return x


@dsl.pipeline(name="sleepy")
def sleepy(pid_file: str):
    s = sleeper(pid_file=pid_file)
    never(x=1).after(s)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status  # a zombie has exited


@pytest.mark.slow
def test_sigint_cancels_the_run(tmp_path):
    source = tmp_path / "sleepy.py"
    source.write_text(SLEEPER)
    pid_file = tmp_path / "sleeper.pid"
    proc = subprocess.Popen(
        [*cli_command(), "run", str(source), "--param", f"pid_file={pid_file}", "--output", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=cli_env(),
        cwd=tmp_path,
    )
    sleeper_pid = None
    try:
        deadline = time.monotonic() + 120
        while not pid_file.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the sleeping task never started"
            time.sleep(0.1)
        sleeper_pid = int(pid_file.read_text())
        assert _alive(sleeper_pid)

        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()

    assert proc.returncode != 0
    assert "Traceback" not in stderr, stderr
    try:
        result = json.loads(stdout)
    except ValueError:
        result = None
    if result is not None:
        assert result["state"] == "CANCELED"
        assert result["tasks"]["sleeper"]["state"] == "CANCELED"
        assert result["tasks"]["never"]["state"] != "SUCCEEDED"
    else:
        assert "cancel" in (stdout + stderr).lower(), (stdout, stderr)

    # the task's process is gone too
    deadline = time.monotonic() + 10
    while sleeper_pid is not None and _alive(sleeper_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if sleeper_pid is not None and _alive(sleeper_pid):
        os.kill(sleeper_pid, signal.SIGKILL)
        pytest.fail("the sleeping task survived the cancel")
