"""One owner per in-flight run: a process executes only the runs it owns, a server
takes over a run only when its owner is gone, and a ``ketch run`` killed with
SIGKILL leaves a run that the next reader sees FAILED with the reason."""

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format
from kfp import compiler, dsl
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from ketch.core.store import db
from ketch.pipelines.service import RunService
from tests.pipelines.helpers import cli_command, cli_env


@dsl.component
def step(x: int, marker: str, sleep_at: int) -> int:
    import time

    with open(f"{marker}.{x}", "a") as f:
        f.write("ran\n")
    if x == sleep_at:
        time.sleep(60)
    return x + 1


@dsl.pipeline(name="owned-steps")
def steps(marker: str, sleep_at: int = -1) -> int:
    a = step(x=0, marker=marker, sleep_at=sleep_at)
    b = step(x=a.output, marker=marker, sleep_at=sleep_at)
    return step(x=b.output, marker=marker, sleep_at=sleep_at).output


SPEC = json_format.MessageToDict(steps.pipeline_spec)

# A server-like process: a RunService that submits one run and keeps running.
SERVE = textwrap.dedent(
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


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Where runs are stored: KETCH_HOME's SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield "sqlite"
        return
    admin_url = os.environ.get("KETCH_TEST_POSTGRES_URL")
    if not admin_url:
        pytest.skip("KETCH_TEST_POSTGRES_URL is not set (scripts/ci-postgres.sh starts a server)")
    admin_url = db.normalize_url(admin_url)
    name = f"ketch_test_{uuid.uuid4().hex[:16]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    monkeypatch.setenv("KETCH_DATABASE_URL", url)
    try:
        yield "postgresql"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _count(marker: Path, x: int) -> int:
    path = Path(f"{marker}.{x}")
    return len(path.read_text().splitlines()) if path.exists() else 0


def _wait_for(predicate: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


def _ketch(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = cli_env()
    env.pop("KETCH_URL", None)  # no server: `ketch runs` reads the local store
    return subprocess.run(
        [*cli_command(), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def _get(run_id: str) -> dict[str, Any]:
    got = _ketch("runs", "get", run_id, "-o", "json")
    assert got.returncode == 0, got.stderr
    return json.loads(got.stdout)


def _start_serving(marker: Path, sleep_at: int) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            SERVE,
            json.dumps(SPEC),
            json.dumps({"marker": str(marker), "sleep_at": sleep_at}),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=cli_env(),
        start_new_session=True,
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def _start_ketch_run(
    package: Path, marker: Path, sleep_at: int
) -> tuple[subprocess.Popen[str], str]:
    env = cli_env()
    proc = subprocess.Popen(
        [
            *cli_command(),
            "run",
            str(package),
            "-p",
            f"marker={marker}",
            "-p",
            f"sleep_at={sleep_at}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    assert proc.stderr is not None
    for line in proc.stderr:
        found = re.search(r"run ([0-9a-f-]{36}) started", line)
        if found:
            return proc, found.group(1)
    raise AssertionError(f"ketch run did not start a run: {proc.wait(30)}")


def _kill_group(proc: subprocess.Popen[str]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(30)


@pytest.fixture
def package(tmp_path: Path) -> Path:
    path = tmp_path / "steps.yaml"
    compiler.Compiler().compile(steps, str(path))
    return path


@pytest.mark.slow
def test_a_second_service_resumes_only_runs_whose_owner_is_gone(
    tmp_path: Path, store: str, make_service: Callable[..., RunService]
) -> None:
    marker = tmp_path / "marker"
    proc, run_id = _start_serving(marker, sleep_at=1)
    try:
        _wait_for(lambda: _count(marker, 1) == 1)  # step 2 runs (and sleeps)
        started = _get(run_id)["status"]["startTime"]
        other = make_service()
        try:
            # the first service is alive: the run is its own, not resumed here
            assert run_id not in other.start()
            time.sleep(1.0)
            assert (_count(marker, 0), _count(marker, 1)) == (1, 1)
            assert _get(run_id)["status"]["state"] == "RUNNING"
        finally:
            other.stop()
        _kill_group(proc)
        # its owner is gone: the next service takes the run over and resumes it
        heir = make_service()
        try:
            assert run_id in heir.start()
            _wait_for(lambda: _count(marker, 1) == 2)  # the interrupted step runs again
            assert _count(marker, 0) == 1  # the finished step does not
            assert _get(run_id)["status"]["startTime"] == started  # resuming keeps the start
            assert heir.cancel(run_id) is True
            assert heir.wait(run_id, 30) == "CANCELED"
            assert heir.cancel(run_id) is False  # finished: nothing to cancel
        finally:
            heir.stop()
    finally:
        _kill_group(proc)


@pytest.mark.slow
def test_ketch_run_leaves_runs_of_other_processes_alone(
    tmp_path: Path, package: Path, store: str
) -> None:
    marker = tmp_path / "marker"
    proc, run_id = _start_serving(marker, sleep_at=1)
    try:
        _wait_for(lambda: _count(marker, 1) == 1)
        quick = tmp_path / "quick"
        done = _ketch("run", str(package), "-p", f"marker={quick}", "-o", "json")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["state"] == "SUCCEEDED"
        # the other process's run is untouched and its tasks ran once
        assert _get(run_id)["status"]["state"] == "RUNNING"
        assert (_count(marker, 0), _count(marker, 1)) == (1, 1)
    finally:
        _kill_group(proc)


@pytest.mark.slow
def test_killed_ketch_run_is_failed_for_the_next_reader(
    tmp_path: Path, package: Path, store: str
) -> None:
    marker = tmp_path / "marker"
    proc, run_id = _start_ketch_run(package, marker, sleep_at=1)
    try:
        _wait_for(lambda: _count(marker, 1) == 1)
        # the second step's task is recorded as it starts (under load, after its
        # process wrote the marker): kill the owner once it is
        _wait_for(lambda: "step-2" in {t["path"] for t in _get(run_id)["status"]["tasks"]})
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        _kill_group(proc)
    run = _get(run_id)
    assert run["status"]["state"] == "FAILED"
    assert "owner process died" in run["status"]["error"]
    tasks = {t["path"]: t for t in run["status"]["tasks"]}
    assert tasks["step"]["state"] == "SUCCEEDED"
    assert tasks["step-2"]["state"] == "FAILED"
    assert "owner process died" in tasks["step-2"]["error"]
    listed = _ketch("runs", "list")
    assert listed.returncode == 0, listed.stderr
    assert re.search(rf"{run_id}\s+\S+\s+FAILED", listed.stdout), listed.stdout


@pytest.mark.slow
def test_cancel_reaches_the_ketch_run_that_owns_the_run(
    tmp_path: Path, package: Path, store: str, make_service: Callable[..., RunService]
) -> None:
    marker = tmp_path / "marker"
    proc, run_id = _start_ketch_run(package, marker, sleep_at=0)
    try:
        _wait_for(lambda: _count(marker, 0) == 1)
        # another process asks for the cancel through the store
        service = make_service()
        assert service.cancel(run_id) is True
        assert proc.wait(60) == 130  # the owner stopped its run
        assert _get(run_id)["status"]["state"] == "CANCELED"
        assert _count(marker, 1) == 0
    finally:
        _kill_group(proc)


@pytest.mark.slow
def test_a_stopped_service_hands_its_runs_to_the_next_one_in_the_same_process(
    tmp_path: Path, make_service: Callable[..., RunService]
) -> None:
    marker = tmp_path / "marker"
    first = make_service()
    first.start()
    try:
        run_id = first.submit(SPEC, parameters={"marker": str(marker), "sleep_at": 1})
        _wait_for(lambda: _count(marker, 1) == 1)
        live = make_service()
        assert run_id not in live.start()  # its owner still runs it
        live.stop()
    finally:
        first.stop(timeout=30)  # the run stays RUNNING, to be resumed
    second = make_service()
    try:
        assert run_id in second.start()
        _wait_for(lambda: _count(marker, 1) == 2)
        assert _count(marker, 0) == 1
        second.cancel(run_id)
        assert second.wait(run_id, 30) == "CANCELED"
    finally:
        second.stop()


@pytest.mark.slow
def test_server_notices_a_killed_ketch_run_without_being_asked(
    tmp_path: Path, package: Path, make_service: Callable[..., RunService]
) -> None:
    """Watchers and the dashboard learn that a ketch run died: the run service
    ends the run and tells its listeners, no read needed."""
    import threading

    marker = tmp_path / "marker"
    service = make_service()
    ended = threading.Event()
    seen: list[str] = []
    service.start()
    try:
        proc, run_id = _start_ketch_run(package, marker, sleep_at=0)
        service.listeners.append(lambda rid: (seen.append(rid), ended.set()))
        try:
            _wait_for(lambda: _count(marker, 0) == 1)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(30)
        finally:
            _kill_group(proc)
        assert ended.wait(30), "the run service did not notice"
        assert run_id in seen
        assert service.wait(run_id, 0) == "FAILED"
    finally:
        service.stop()


@pytest.mark.slow
def test_the_sole_server_resumes_runs_left_under_another_host_name(
    tmp_path: Path, store: str, make_service: Callable[..., RunService]
) -> None:
    """A laptop's host name changes between sessions: the server holding the store's
    lock resumes runs a server left in flight under the old name; a service that does
    not hold it leaves them alone (their owner cannot be checked from here)."""
    from ketch.core import config

    marker = tmp_path / "marker"
    proc, run_id = _start_serving(marker, sleep_at=1)
    try:
        _wait_for(lambda: _count(marker, 1) == 1)
    finally:
        _kill_group(proc)
    engine = create_engine(db.normalize_url(config.database_url()))
    try:
        with engine.begin() as connection:
            owner = connection.execute(
                text("SELECT owner FROM pipeline_runs WHERE id = :id"), {"id": run_id}
            ).scalar_one()
            moved = ":".join([owner.split(":")[0], "old-laptop-name", *owner.split(":")[2:]])
            connection.execute(
                text("UPDATE pipeline_runs SET owner = :owner WHERE id = :id"),
                {"owner": moved, "id": run_id},
            )
    finally:
        engine.dispose()
    bystander = make_service()
    try:
        assert run_id not in bystander.start()
    finally:
        bystander.stop()
    sole = make_service(sole_server=True)
    try:
        assert run_id in sole.start()
        _wait_for(lambda: _count(marker, 1) == 2)  # the interrupted step runs again
        assert sole.cancel(run_id) is True
        assert sole.wait(run_id, 30) == "CANCELED"
    finally:
        sole.stop()
