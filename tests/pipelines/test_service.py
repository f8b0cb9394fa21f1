"""RunService: background runs that survive a kill -9 of their process, cancel and retry."""

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from google.protobuf import json_format
from kfp import dsl

from ketch.pipelines.service import RunService
from tests.waiting import wait_for


@dsl.component
def step(x: int, marker: str, sleep_at: int) -> int:
    import time

    with open(f"{marker}.{x}", "a") as f:
        f.write("ran\n")
    if x == sleep_at:
        time.sleep(30)
    return x + 1


@dsl.pipeline(name="three-steps")
def three(marker: str, sleep_at: int = -1) -> int:
    a = step(x=0, marker=marker, sleep_at=sleep_at)
    b = step(x=a.output, marker=marker, sleep_at=sleep_at)
    return step(x=b.output, marker=marker, sleep_at=sleep_at).output


SPEC = json_format.MessageToDict(three.pipeline_spec)

SUBMIT = textwrap.dedent(
    """
    import json, sys, time
    from ketch.capabilities import backend
    from ketch.core.store.db import Database
    from ketch.pipelines.service import RunService
    svc = RunService(Database(), backend=backend())
    svc.start()
    run_id = svc.submit(json.loads(sys.argv[1]), parameters=json.loads(sys.argv[2]))
    print(run_id, flush=True)
    time.sleep(120)
    """
)


def _runs(marker: Path, x: int) -> int:
    path = Path(f"{marker}.{x}")
    return len(path.read_text().splitlines()) if path.exists() else 0


@pytest.mark.slow
def test_killed_process_resumes_without_rerunning_finished_tasks(
    tmp_path: Path, make_service: Callable[..., RunService]
) -> None:
    import json

    marker = tmp_path / "marker"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            SUBMIT,
            json.dumps(SPEC),
            json.dumps({"marker": str(marker), "sleep_at": 1}),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ},
    )
    try:
        run_id = proc.stdout.readline().strip()
        wait_for(lambda: _runs(marker, 1) == 1, 30, what="step 2 is running (and sleeping)")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    # the sleeping task died with its process (the backend's orphan guard)
    service = make_service()
    try:
        # The resumed run starts the interrupted step again (it sleeps again, so the
        # test cancels it once it has seen what resume did).
        assert run_id in service.start()
        wait_for(lambda: _runs(marker, 1) == 2, 30, what="step 2 started again on resume")
        assert _runs(marker, 0) == 1  # step 1 had finished: not executed again
        service.cancel(run_id)
        assert service.wait(run_id, 30) == "CANCELED"
        assert _runs(marker, 2) == 0
    finally:
        service.stop()


def test_submit_wait_cancel_and_retry(
    tmp_path: Path, make_service: Callable[..., RunService]
) -> None:
    marker = tmp_path / "m"
    service = make_service()
    service.start()
    try:
        run_id = service.submit(SPEC, parameters={"marker": str(marker)})
        assert service.wait(run_id, 60) == "SUCCEEDED"
        assert [_runs(marker, x) for x in (0, 1, 2)] == [1, 1, 1]

        slow = service.submit(SPEC, parameters={"marker": str(tmp_path / "s"), "sleep_at": 1})
        wait_for(lambda: _runs(tmp_path / "s", 1) == 1, 30, what="step 2 of the slow run started")
        service.cancel(slow)
        assert service.wait(slow, 30) == "CANCELED"

        # retry re-runs what did not succeed; the first step is reused
        service.retry(slow)
        wait_for(lambda: _runs(tmp_path / "s", 1) == 2, 30, what="step 2 started again on retry")
        assert _runs(tmp_path / "s", 0) == 1
        service.cancel(slow)
        assert service.wait(slow, 30) == "CANCELED"
    finally:
        service.stop()


def test_bad_submissions_are_rejected_before_anything_is_stored(
    tmp_path: Path, make_service: Callable[..., RunService]
) -> None:
    from ketch.core.errors import InvalidSpec

    service = make_service()
    service.start()
    try:
        with pytest.raises(InvalidSpec, match="marker"):
            service.submit(SPEC, parameters={})
        with pytest.raises(InvalidSpec, match="sleep_at"):
            service.submit(SPEC, parameters={"marker": "x", "sleep_at": "soon"})
        with pytest.raises(InvalidSpec):
            service.submit({"root": {"dag": {"tasks": {"a": {"componentRef": {"name": "nope"}}}}}})
    finally:
        service.stop()
