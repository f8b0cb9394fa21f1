"""The local backend with real processes: exit codes, logs, env, cwd, limits, cancel, orphans."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ketch import capabilities
from ketch.core.backend import (
    LocalBackend,
    ProcessSpec,
    ProcessState,
    Resources,
    cgroups,
    parse_cpu,
    parse_memory,
)
from ketch.core.errors import BackendError, InvalidSpec
from tests.core.procs import alive, kill_quietly, proc_state, wait_until

PY = sys.executable


def group_pids(pgid: int) -> list[int]:
    """Live processes whose process group is ``pgid``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            found.append(int(entry))
    return found


def py(code: str, **kwargs: object) -> ProcessSpec:
    return ProcessSpec(name="test", command=[PY, "-c", textwrap.dedent(code)], **kwargs)  # type: ignore[arg-type]


# -- quantities -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "cores"),
    [("500m", 0.5), ("2", 2.0), ("1.5", 1.5), ("0.25", 0.25), (3, 3.0), (0.5, 0.5), ("1e3m", 1.0)],
)
def test_parse_cpu(text: str | float, cores: float) -> None:
    assert parse_cpu(text) == pytest.approx(cores)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("1Gi", 2**30),
        ("512Mi", 512 * 2**20),
        ("512M", 512_000_000),
        ("1G", 10**9),
        ("128974848", 128974848),
        ("1.5Gi", 3 * 2**29),
        ("64Ki", 65536),
        (1024, 1024),
    ],
)
def test_parse_memory(text: str | int, size: int) -> None:
    assert parse_memory(text) == size


@pytest.mark.parametrize("garbage", ["", "abc", "1 Gi", "1GB", "-1", "1.2.3", "Gi", "nan"])
def test_bad_quantities_raise_invalid_spec_naming_the_value(garbage: str) -> None:
    with pytest.raises(InvalidSpec, match=repr(garbage).replace(".", r"\.")):
        parse_memory(garbage)
    with pytest.raises(InvalidSpec):
        parse_cpu(garbage)


def test_bad_quantity_in_a_spec_fails_the_start(backend: LocalBackend) -> None:
    spec = py("pass", resources=Resources(memory_limit="lots"))
    with pytest.raises(InvalidSpec, match="lots"):
        backend.start(spec)


# -- exit codes, logs, env, cwd ----------------------------------------------------


@pytest.mark.parametrize("code", [0, 3])
def test_exit_codes(backend: LocalBackend, code: int) -> None:
    handle = backend.start(py(f"import sys; sys.exit({code})"))
    assert handle.wait(30) == code
    assert handle.poll() == code
    assert handle.state is ProcessState.EXITED
    assert not handle.forked


def test_killed_by_signal_gives_negative_code(backend: LocalBackend) -> None:
    handle = backend.start(py("import os, signal; os.kill(os.getpid(), signal.SIGKILL)"))
    assert handle.wait(30) == -signal.SIGKILL


def test_poll_is_none_while_running(backend: LocalBackend) -> None:
    handle = backend.start(py("import time; time.sleep(30)"))
    assert handle.poll() is None
    assert handle.wait(0.05) is None
    assert handle.state is ProcessState.RUNNING
    handle.cancel(grace=5)
    assert handle.poll() == -signal.SIGTERM


def test_stdout_and_stderr_go_to_the_spec_files(backend: LocalBackend, tmp_path: Path) -> None:
    out, err = tmp_path / "a" / "b" / "out.log", tmp_path / "c" / "err.log"
    spec = py(
        "import sys; print('to stdout'); print('to stderr', file=sys.stderr)",
        stdout_path=out,
        stderr_path=err,
    )
    handle = backend.start(spec)
    assert handle.wait(30) == 0
    assert handle.stdout_path == out and handle.stderr_path == err
    assert out.read_text() == "to stdout\n"
    assert err.read_text() == "to stderr\n"


def test_one_file_for_both_streams(backend: LocalBackend, tmp_path: Path) -> None:
    log = tmp_path / "both.log"
    spec = py(
        "import sys; print('o', flush=True); print('e', file=sys.stderr, flush=True)",
        stdout_path=log,
        stderr_path=log,
    )
    assert backend.start(spec).wait(30) == 0
    assert log.read_text() == "o\ne\n"


def test_logs_default_to_backend_owned_files() -> None:
    backend = LocalBackend()
    try:
        handle = backend.start(py("import sys; print('hi'); print('ho', file=sys.stderr)"))
        assert handle.wait(30) == 0
        assert handle.stdout_path.read_text() == "hi\n"
        assert handle.stderr_path.read_text() == "ho\n"
        folder = handle.stdout_path.parent
    finally:
        backend.shutdown()
    assert not folder.exists()


def test_env_is_added_to_the_parent_environment_and_cwd_applied(
    backend: LocalBackend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KETCH_TEST_FROM_PARENT", "parent")
    spec = py(
        """
        import json, os
        print(json.dumps([os.getcwd(), os.environ.get("KETCH_TEST_FROM_PARENT"),
                          os.environ.get("KETCH_TEST_FROM_SPEC")]))
        """,
        env={"KETCH_TEST_FROM_SPEC": "spec"},
        cwd=tmp_path,
    )
    handle = backend.start(spec)
    assert handle.wait(30) == 0
    cwd, from_parent, from_spec = json.loads(handle.stdout_path.read_text())
    assert Path(cwd).resolve() == tmp_path.resolve()
    assert (from_parent, from_spec) == ("parent", "spec")


# -- start failures ------------------------------------------------------------------


def test_missing_executable_raises_backend_error(backend: LocalBackend) -> None:
    spec = ProcessSpec(name="ghost", command=["ketch-no-such-program-xyz", "--flag"])
    with pytest.raises(BackendError) as info:
        backend.start(spec)
    message = str(info.value)
    assert "ketch-no-such-program-xyz" in message and "not found" in message
    assert backend.running() == []


def test_bad_cwd_raises_backend_error(backend: LocalBackend, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(BackendError, match="working directory") as info:
        backend.start(py("pass", cwd=missing))
    assert str(missing) in str(info.value)


def test_empty_command_is_invalid(backend: LocalBackend) -> None:
    with pytest.raises(InvalidSpec):
        backend.start(ProcessSpec(name="empty", command=[]))


def test_start_after_shutdown_raises() -> None:
    backend = LocalBackend()
    backend.shutdown()
    with pytest.raises(BackendError, match="shut down"):
        backend.start(py("pass"))


# -- cancel and process groups ------------------------------------------------------------


def test_cancel_kills_the_whole_process_group(backend: LocalBackend) -> None:
    handle = backend.start(ProcessSpec(name="tree", command=["sh", "-c", "sleep 100 & sleep 100"]))
    assert handle.pid is not None
    assert wait_until(lambda: len(group_pids(handle.pid or 0)) >= 2)
    members = group_pids(handle.pid)
    try:
        handle.cancel(grace=5)
        assert handle.poll() is not None and handle.poll() < 0  # type: ignore[operator]
        assert wait_until(lambda: not any(alive(pid) for pid in members))
        assert group_pids(handle.pid) == []
    finally:
        kill_quietly(members)


def test_sigterm_ignoring_process_is_killed_after_grace(
    backend: LocalBackend, tmp_path: Path
) -> None:
    ready = tmp_path / "ready"
    spec = py(
        f"""
        import signal, time, pathlib
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        pathlib.Path({str(ready)!r}).touch()
        time.sleep(100)
        """
    )
    handle = backend.start(spec)
    assert wait_until(ready.exists, 30)
    handle.cancel(grace=0.3)
    assert handle.poll() == -signal.SIGKILL
    assert handle.cancelled


def test_cancel_of_a_finished_process_is_a_no_op(backend: LocalBackend) -> None:
    handle = backend.start(py("pass"))
    assert handle.wait(30) == 0
    handle.cancel()
    assert handle.poll() == 0


def test_leftover_group_members_die_with_the_leader(backend: LocalBackend, tmp_path: Path) -> None:
    handle = backend.start(
        ProcessSpec(
            name="leaves-a-child",
            command=["sh", "-c", "sleep 100 & echo $!"],
            stdout_path=tmp_path / "out",
        )
    )
    assert handle.wait(30) == 0
    straggler = int((tmp_path / "out").read_text())
    try:
        assert wait_until(lambda: not alive(straggler))
    finally:
        kill_quietly([straggler])


def test_shutdown_cancels_running_processes(tmp_path: Path) -> None:
    backend = LocalBackend()
    handles = [backend.start(py("import time; time.sleep(100)")) for _ in range(3)]
    pids = [h.pid for h in handles if h.pid is not None]
    try:
        assert len(backend.running()) == 3
        backend.shutdown(grace=2)
        assert all(h.poll() == -signal.SIGTERM for h in handles)
        assert not any(alive(pid) for pid in pids)
    finally:
        kill_quietly(pids)


# -- limits ----------------------------------------------------------------------------------


def test_memory_limit_is_enforced(backend: LocalBackend) -> None:
    limits = Resources(memory_limit="256Mi", cpu_limit="500m")
    big = backend.start(py("x = bytearray(1024 * 1024 * 1024)", resources=limits))
    small = backend.start(py("x = bytearray(16 * 1024 * 1024)", resources=limits))
    assert big.wait(30) != 0
    assert "MemoryError" in big.stderr_path.read_text()
    assert small.wait(30) == 0
    assert big.memory_limit == 256 * 2**20
    assert big.cpu_limit == 0.5


def test_no_memory_limit_when_none_is_given(backend: LocalBackend) -> None:
    handle = backend.start(
        py(
            "import resource; print(resource.getrlimit(resource.RLIMIT_AS)[0] == "
            "resource.RLIM_INFINITY)"
        )
    )
    assert handle.wait(30) == 0
    assert handle.stdout_path.read_text().strip() == "True"


# -- concurrency and the process-wide backend ------------------------------------------------------


def test_concurrent_starts(backend: LocalBackend) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def run(i: int) -> tuple[int, int | None, str]:
        handle = backend.start(py(f"import sys; print({i}); sys.exit({i % 5})"))
        code = handle.wait(60)
        return i, code, handle.stdout_path.read_text()

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(run, range(24)))
    for i, code, out in results:
        assert code == i % 5
        assert out == f"{i}\n"


def test_the_composition_roots_backend_is_one_per_process() -> None:
    first = capabilities.backend()
    assert capabilities.backend() is first
    handle = first.start(py("pass"))
    assert handle.wait(30) == 0


def test_a_shut_down_backend_says_so() -> None:
    backend = LocalBackend(max_warm_interpreters=0)
    assert not backend.closed
    backend.shutdown()
    assert backend.closed


# -- no orphans when the parent dies ------------------------------------------------------------

PARENT_SCRIPT = """
import json, sys, time
from pathlib import Path
from ketch.core.backend import LocalBackend, ProcessSpec

backend = LocalBackend()
handle = backend.start(ProcessSpec(name="tree", command=["sh", "-c", "sleep 100 & sleep 100"]))
deadline = time.monotonic() + 20
def members():
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2:].split()[2]) == handle.pid:
                found.append(int(entry.name))
    return found
while len(members()) < 2 and time.monotonic() < deadline:
    time.sleep(0.02)
print(json.dumps({"members": members(), "guard": backend._guard.pid}), flush=True)
time.sleep(100)
"""


def test_killing_the_parent_leaves_no_orphans(tmp_path: Path) -> None:
    script = tmp_path / "parent.py"
    script.write_text(PARENT_SCRIPT)
    parent = subprocess.Popen(
        [PY, str(script)], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    pids: list[int] = []
    try:
        assert parent.stdout is not None
        info = json.loads(parent.stdout.readline())
        pids = [*info["members"], info["guard"]]
        assert len(info["members"]) >= 2 and all(alive(pid) for pid in pids)
        parent.kill()
        parent.wait(10)
        assert wait_until(lambda: not any(alive(pid) for pid in pids), 15), [
            (pid, proc_state(pid)) for pid in pids
        ]
    finally:
        kill_quietly([parent.pid, *pids])
        parent.wait(10)
        if parent.stdout is not None:
            parent.stdout.close()


@pytest.mark.skipif(not cgroups.available(), reason="no writable cgroup CPU controller here")
def test_cpu_limit_is_enforced_with_a_cfs_quota(backend: LocalBackend, tmp_path: Path) -> None:
    burn = textwrap.dedent(
        """
        import time
        start = time.monotonic()
        while time.monotonic() - start < 1.0:
            pass
        print(time.process_time() / (time.monotonic() - start))
        """
    )
    out = tmp_path / "out"
    spec = ProcessSpec(
        name="burn",
        command=[sys.executable, "-c", burn],
        stdout_path=out,
        stderr_path=out,
        resources=Resources(cpu_limit="200m"),
    )
    handle = backend.start(spec)
    assert handle.wait(30) == 0
    assert handle.cpu_enforced
    share = float(out.read_text().split()[-1])
    # a busy loop under a 0.2-core quota gets about a fifth of the wall time
    assert share < 0.5, share
