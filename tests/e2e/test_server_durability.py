"""Kill -9 the server while ten runs are in flight, start it again: every run
finishes, nothing stored is lost, and tasks that had finished do not run again."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from google.protobuf import json_format
from kfp import dsl

from tests.waiting import wait_for

pytestmark = pytest.mark.slow

RUNS = 10
READY = re.compile(r"listening on (http://\S+)")


@dsl.component
def mark(x: int, marker: str, gate: str) -> int:
    import os
    import time

    with open(f"{marker}.{x}", "a") as f:
        f.write("ran\n")
    while x == 1 and not os.path.exists(gate):  # the second step waits for the gate
        time.sleep(0.05)
    return x + 1


@dsl.pipeline(name="gated")
def gated(marker: str, gate: str) -> int:
    a = mark(x=0, marker=marker, gate=gate)
    b = mark(x=a.output, marker=marker, gate=gate)
    return mark(x=b.output, marker=marker, gate=gate).output


def _ketch() -> list[str]:
    exe = Path(sys.executable).with_name("ketch")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "ketch.cli.main"]


def _start(home: Path) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "KETCH_HOME": str(home)}
    env.pop("KETCH_DATABASE_URL", None)
    proc = subprocess.Popen(
        [*_ketch(), "up", "--port", "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        m = READY.search(line)
        if m:
            return proc, m.group(1)
    proc.kill()
    raise AssertionError("the server did not start")


def _count(marker: Path, x: int) -> int:
    path = Path(f"{marker}.{x}")
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_kill_9_with_ten_runs_in_flight(tmp_path: Path) -> None:
    home, gate = tmp_path / "home", tmp_path / "gate"
    spec = json_format.MessageToDict(gated.pipeline_spec)
    markers = [tmp_path / f"run{i}" for i in range(RUNS)]
    proc, url = _start(home)
    try:
        ids = []
        with httpx.Client(base_url=url, timeout=30) as http:
            for marker in markers:
                body = {
                    "display_name": marker.name,
                    "pipeline_spec": spec,
                    "runtime_config": {"parameters": {"marker": str(marker), "gate": str(gate)}},
                }
                r = http.post("/apis/v2beta1/runs", json=body)
                assert r.status_code == 200, r.text
                ids.append(r.json()["run_id"])
            # every run has finished its first step and is inside the second
            wait_for(
                lambda: all(_count(m, 1) == 1 for m in markers),
                60,
                0.1,
                what="every run is inside its second step",
            )
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    assert all(_count(m, 0) == 1 for m in markers)
    gate.touch()  # from now on the second step finishes

    proc, url = _start(home)
    try:
        with httpx.Client(base_url=url, timeout=30) as http:

            def states() -> list[str]:
                return [http.get(f"/apis/v2beta1/runs/{i}").json()["state"] for i in ids]

            wait_for(
                lambda: all(s in ("SUCCEEDED", "FAILED", "CANCELED") for s in states()),
                120,
                0.1,
                what="every run has finished after the restart",
            )
            assert states() == ["SUCCEEDED"] * RUNS
            listed = http.get("/apis/v2beta1/runs", params={"page_size": 50}).json()
            assert {r["run_id"] for r in listed["runs"]} == set(ids)
            detail = http.get(f"/apis/v2beta1/runs/{ids[0]}").json()
            tasks = detail["run_details"]["task_details"]
            assert len([t for t in tasks if t.get("display_name", "").startswith("mark")]) == 3
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    for marker in markers:
        # finished tasks ran once; the interrupted one ran again; the last once
        assert (_count(marker, 0), _count(marker, 1), _count(marker, 2)) == (1, 2, 1)
