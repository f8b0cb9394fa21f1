"""Python tasks forked from a warm interpreter: same results as ``python -m``, real processes."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from ketch.core.backend import LocalBackend, ProcessSpec, PythonEntry, Resources
from tests.core.procs import alive, kill_quietly, proc_state, wait_until

PY = sys.executable


def servers_of(parent_pid: int) -> list[int]:
    """Live fork servers (and their forks) started for ``parent_pid``."""
    found = []
    needle = f"forkserver.py\0serve\0{parent_pid}\0".encode()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if needle in cmdline and alive(int(entry)):
                found.append(int(entry))
    return found


@pytest.fixture
def modules(tmp_path: Path) -> Path:
    """A folder of task modules; tasks run with it as cwd, so ``-m`` finds them."""
    folder = tmp_path / "mods"
    folder.mkdir()
    sources = {
        "echo_task": """
            import json, os, sys
            print(json.dumps({"argv": sys.argv, "cwd": os.getcwd(), "name": __name__,
                              "env": {k: v for k, v in os.environ.items() if k.startswith("KT_")},
                              "preloaded": "preload_marker" in sys.modules}))
            print("to stderr", file=sys.stderr)
            sys.exit(int(os.environ.get("KT_CODE", "0")))
            """,
        "boom_task": """
            def explode():
                raise ValueError("boom")
            explode()
            """,
        "exit_task": """
            import sys
            kind = sys.argv[1]
            if kind == "none":
                sys.exit()
            if kind == "int":
                sys.exit(7)
            if kind == "str":
                sys.exit("fatal: bad input")
            if kind == "interrupt":
                raise KeyboardInterrupt
            """,
        "finish_task": """
            import atexit, threading, time
            atexit.register(lambda: print("atexit ran"))
            def late():
                time.sleep(0.2)
                print("thread finished")
            threading.Thread(target=late).start()
            print("main done", end="")
            print()
            """,
        "sleep_task": """
            import pathlib, signal, subprocess, sys, time
            if "--ignore-term" in sys.argv:
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
            child = subprocess.Popen(["sleep", "100"])
            pathlib.Path(sys.argv[1]).write_text(str(child.pid))
            time.sleep(100)
            """,
        "spawn_and_exit_task": """
            import subprocess, sys
            print(subprocess.Popen(["sleep", "100"]).pid)
            """,
        "alloc_task": """
            import sys
            x = bytearray(int(sys.argv[1]) * 1024 * 1024)
            """,
        "preload_marker": """
            VALUE = 42
            """,
    }
    for name, source in sources.items():
        (folder / f"{name}.py").write_text(textwrap.dedent(source))
    return folder


def task(
    module: str,
    argv: list[str],
    cwd: Path,
    *,
    python: str = PY,
    preload: tuple[str, ...] = (),
    **kwargs: object,
) -> ProcessSpec:
    return ProcessSpec(
        name=f"task {module}",
        command=[python, "-m", module, *argv],
        cwd=cwd,
        python=PythonEntry(module=module, argv=argv, python=python, preload=preload),
        **kwargs,  # type: ignore[arg-type]
    )


def test_runs_a_module_with_argv_env_and_cwd(backend: LocalBackend, modules: Path) -> None:
    handle = backend.start(
        task("echo_task", ["a", "b c"], modules, env={"KT_X": "1", "KT_CODE": "4"})
    )
    assert handle.forked
    assert handle.wait(30) == 4
    out = json.loads(handle.stdout_path.read_text())
    assert out["argv"] == [str(modules / "echo_task.py"), "a", "b c"]
    assert Path(out["cwd"]).resolve() == modules.resolve()
    assert out["name"] == "__main__"
    assert out["env"] == {"KT_X": "1", "KT_CODE": "4"}
    assert handle.stderr_path.read_text() == "to stderr\n"


def test_same_result_as_a_fresh_interpreter(backend: LocalBackend, modules: Path) -> None:
    spec = task("echo_task", ["x"], modules, env={"KT_Y": "2"})
    forked = backend.start(spec)
    fresh = subprocess.run(
        spec.command, cwd=modules, env={**os.environ, **spec.env}, capture_output=True, text=True
    )
    assert forked.wait(30) == fresh.returncode == 0
    assert forked.forked
    assert forked.stdout_path.read_text() == fresh.stdout
    assert forked.stderr_path.read_text() == fresh.stderr


def test_each_child_gets_exactly_the_requested_environment(
    backend: LocalBackend, modules: Path
) -> None:
    first = backend.start(task("echo_task", [], modules, env={"KT_ONLY_FIRST": "1"}))
    assert first.wait(30) == 0
    second = backend.start(task("echo_task", [], modules, env={"KT_SECOND": "2"}))
    assert second.wait(30) == 0
    assert first.forked and second.forked
    assert json.loads(first.stdout_path.read_text())["env"] == {"KT_ONLY_FIRST": "1"}
    assert json.loads(second.stdout_path.read_text())["env"] == {"KT_SECOND": "2"}


def test_preload_is_imported_in_the_server(backend: LocalBackend, modules: Path) -> None:
    # The server imports preload modules from its own sys.path: give it the folder.
    env = {"PYTHONPATH": str(modules)}
    handle = backend.start(task("echo_task", [], modules, preload=("preload_marker",), env=env))
    assert handle.wait(30) == 0
    assert handle.forked
    assert json.loads(handle.stdout_path.read_text())["preloaded"] is True


def test_uncaught_exception_exits_1_with_a_traceback(backend: LocalBackend, modules: Path) -> None:
    handle = backend.start(task("boom_task", [], modules))
    assert handle.wait(30) == 1
    assert handle.forked
    err = handle.stderr_path.read_text()
    assert err.startswith("Traceback (most recent call last):\n")
    assert 'boom_task.py", line 4, in <module>' in err
    assert 'boom_task.py", line 3, in explode' in err
    assert err.endswith("ValueError: boom\n")
    assert "forkserver" not in err


@pytest.mark.parametrize(
    ("kind", "code", "stderr"),
    [
        ("none", 0, ""),
        ("int", 7, ""),
        ("str", 1, "fatal: bad input\n"),
        ("normal", 0, ""),
        ("interrupt", -signal.SIGINT, "KeyboardInterrupt"),
    ],
)
def test_system_exit_codes_match_the_interpreter(
    backend: LocalBackend, modules: Path, kind: str, code: int, stderr: str
) -> None:
    handle = backend.start(task("exit_task", [kind], modules))
    assert handle.wait(30) == code
    assert handle.forked
    assert stderr in handle.stderr_path.read_text()
    if not stderr:
        assert handle.stderr_path.read_text() == ""


def test_missing_module_exits_1_like_python_m(backend: LocalBackend, modules: Path) -> None:
    handle = backend.start(task("no_such_module_xyz", [], modules))
    assert handle.wait(30) == 1
    assert "No module named no_such_module_xyz" in handle.stderr_path.read_text()


def test_threads_are_joined_atexit_runs_and_output_is_flushed(
    backend: LocalBackend, modules: Path
) -> None:
    handle = backend.start(task("finish_task", [], modules))
    assert handle.wait(30) == 0
    assert handle.stdout_path.read_text() == "main done\nthread finished\natexit ran\n"


def test_concurrent_starts_from_8_threads(backend: LocalBackend, modules: Path) -> None:
    def run(i: int) -> tuple[int, int | None, bool, dict[str, object]]:
        handle = backend.start(
            task("echo_task", [str(i)], modules, env={"KT_I": str(i), "KT_CODE": str(i % 4)})
        )
        code = handle.wait(60)
        return i, code, handle.forked, json.loads(handle.stdout_path.read_text())

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(run, range(40)))
    for i, code, forked, out in results:
        assert forked
        assert code == i % 4
        assert out["argv"][1:] == [str(i)]
        assert out["env"] == {"KT_I": str(i), "KT_CODE": str(i % 4)}


def test_cancel_kills_the_forked_group(
    backend: LocalBackend, modules: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "grandchild.pid"
    handle = backend.start(task("sleep_task", [str(marker)], modules))
    assert handle.forked
    assert wait_until(lambda: marker.exists() and marker.read_text() != "", 30)
    grandchild = int(marker.read_text())
    assert handle.pid is not None and alive(handle.pid) and alive(grandchild)
    try:
        handle.cancel(grace=5)
        assert handle.poll() == -signal.SIGTERM
        assert wait_until(lambda: not alive(grandchild))
    finally:
        kill_quietly([handle.pid, grandchild])


def test_sigterm_ignoring_forked_task_is_killed_after_grace(
    backend: LocalBackend, modules: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "grandchild.pid"
    handle = backend.start(task("sleep_task", [str(marker), "--ignore-term"], modules))
    assert wait_until(lambda: marker.exists() and marker.read_text() != "", 30)
    grandchild = int(marker.read_text())
    try:
        handle.cancel(grace=0.3)
        assert handle.poll() == -signal.SIGKILL
        assert wait_until(lambda: not alive(grandchild))
    finally:
        kill_quietly([handle.pid or 0, grandchild])


def test_leftover_group_members_die_with_the_forked_leader(
    backend: LocalBackend, modules: Path
) -> None:
    handle = backend.start(task("spawn_and_exit_task", [], modules))
    assert handle.wait(30) == 0
    straggler = int(handle.stdout_path.read_text())
    try:
        assert wait_until(lambda: not alive(straggler))
    finally:
        kill_quietly([straggler])


def test_memory_limit_in_a_forked_task(backend: LocalBackend, modules: Path) -> None:
    limits = Resources(memory_limit="512Mi")
    big = backend.start(task("alloc_task", ["1024"], modules, resources=limits))
    small = backend.start(task("alloc_task", ["16"], modules, resources=limits))
    assert big.forked and small.forked
    assert big.wait(30) == 1
    assert "MemoryError" in big.stderr_path.read_text()
    assert small.wait(30) == 0


def test_fallback_when_the_interpreter_is_missing(
    backend: LocalBackend, modules: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spec = ProcessSpec(
        name="fallback",
        command=[PY, "-m", "echo_task", "fb"],
        cwd=modules,
        env={"KT_CODE": "2"},
        python=PythonEntry(module="echo_task", argv=["fb"], python="/nonexistent/bin/python"),
    )
    with caplog.at_level(logging.WARNING, logger="ketch.core.backend"):
        first = backend.start(spec)
        second = backend.start(spec)
    assert not first.forked and not second.forked
    assert first.wait(30) == 2 and second.wait(30) == 2
    assert json.loads(first.stdout_path.read_text())["argv"][1:] == ["fb"]
    warnings = [r for r in caplog.records if "/nonexistent/bin/python" in r.getMessage()]
    assert len(warnings) == 1


def test_fallback_when_a_preload_fails(
    backend: LocalBackend, modules: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="ketch.core.backend"):
        handle = backend.start(task("echo_task", [], modules, preload=("no_such_preload_xyz",)))
    assert not handle.forked
    assert handle.wait(30) == 0
    assert any("no_such_preload_xyz" in r.getMessage() for r in caplog.records)


def test_interpreter_without_ketch(backend: LocalBackend, modules: Path, tmp_path: Path) -> None:
    """The server script runs by path in a virtualenv that cannot import ketch."""
    venv = tmp_path / "venv"
    subprocess.run([PY, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    probe = subprocess.run([python, "-c", "import ketch"], capture_output=True, cwd=tmp_path)
    assert probe.returncode != 0
    handle = backend.start(task("echo_task", ["v"], modules, python=python))
    assert handle.forked
    assert handle.wait(30) == 0
    assert json.loads(handle.stdout_path.read_text())["argv"][1:] == ["v"]


def test_prewarm_and_lru_retirement(modules: Path) -> None:
    backend = LocalBackend(max_warm_interpreters=1)
    try:
        assert backend.prewarm(PY).result(60) is True
        env = {"PYTHONPATH": str(modules)}
        a = backend.start(task("echo_task", [], modules))
        b = backend.start(task("echo_task", [], modules, preload=("preload_marker",), env=env))
        c = backend.start(task("echo_task", [], modules))
        assert all(h.forked for h in (a, b, c))
        assert [h.wait(30) for h in (a, b, c)] == [0, 0, 0]
        assert len(backend._warm.current()) == 1
    finally:
        backend.shutdown()


def test_max_warm_interpreters_zero_runs_the_command(modules: Path) -> None:
    backend = LocalBackend(max_warm_interpreters=0)
    try:
        handle = backend.start(task("echo_task", ["z"], modules))
        assert not handle.forked
        assert handle.wait(30) == 0
    finally:
        backend.shutdown()


def test_shutdown_kills_forked_tasks_and_the_server(modules: Path, tmp_path: Path) -> None:
    backend = LocalBackend()
    marker = tmp_path / "grandchild.pid"
    handle = backend.start(task("sleep_task", [str(marker)], modules))
    assert wait_until(lambda: marker.exists() and marker.read_text() != "", 30)
    grandchild = int(marker.read_text())
    server_pid = backend._warm.current()[0].server_pid
    assert server_pid is not None
    try:
        backend.shutdown(grace=2)
        assert handle.poll() == -signal.SIGTERM
        assert wait_until(lambda: not alive(grandchild) and not alive(server_pid))
    finally:
        kill_quietly([handle.pid or 0, grandchild, server_pid])


PARENT_SCRIPT = """
import json, pathlib, sys, time
from ketch.core.backend import LocalBackend, ProcessSpec, PythonEntry

modules, marker = sys.argv[1], pathlib.Path(sys.argv[2])
backend = LocalBackend()
handle = backend.start(ProcessSpec(
    name="long", command=[sys.executable, "-m", "sleep_task", str(marker)], cwd=pathlib.Path(modules),
    python=PythonEntry(module="sleep_task", argv=[str(marker)], python=sys.executable)))
deadline = time.monotonic() + 30
while not (marker.exists() and marker.read_text()) and time.monotonic() < deadline:
    time.sleep(0.02)
server = backend._warm.current()[0]
print(json.dumps({"forked": handle.forked, "child": handle.pid, "grandchild": int(marker.read_text()),
                  "server": server.server_pid, "guard": backend._guard.pid}), flush=True)
time.sleep(100)
"""


def test_killing_the_parent_leaves_no_orphans(modules: Path, tmp_path: Path) -> None:
    script = tmp_path / "parent.py"
    script.write_text(PARENT_SCRIPT)
    parent = subprocess.Popen(
        [PY, str(script), str(modules), str(tmp_path / "gc.pid")],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    pids: list[int] = []
    try:
        assert parent.stdout is not None
        info = json.loads(parent.stdout.readline())
        assert info["forked"] is True
        pids = [info["child"], info["grandchild"], info["server"], info["guard"]]
        assert all(alive(pid) for pid in pids)
        parent.kill()
        parent.wait(10)
        assert wait_until(lambda: not any(alive(pid) for pid in pids), 15), [
            (pid, proc_state(pid)) for pid in pids
        ]
        # Nothing forked from the server (its spare child included) is left either.
        assert wait_until(lambda: not servers_of(parent.pid), 15), servers_of(parent.pid)
    finally:
        kill_quietly([parent.pid, *pids, *servers_of(parent.pid)])
        parent.wait(10)
        if parent.stdout is not None:
            parent.stdout.close()


def test_warmup_runs_once_in_the_server_and_leaves_no_trace(
    backend: LocalBackend, modules: Path, tmp_path: Path
) -> None:
    (modules / "warm_task.py").write_text(
        textwrap.dedent(
            """
            import logging, sys
            logging.basicConfig(stream=sys.stdout, level=logging.INFO)
            with open(sys.argv[1], "a") as f:
                f.write("ran\\n")
            logging.info("task says %s", sys.argv[2])
            print("printed", sys.argv[2])
            """
        )
    )
    counter = tmp_path / "count"
    entry = PythonEntry(
        module="warm_task",
        argv=[str(counter), "real"],
        python=PY,
        preload=("preload_marker",),
        warmup=(str(counter), "warm-up"),
    )
    env = {"PYTHONPATH": str(modules)}
    out = tmp_path / "out.log"
    spec = ProcessSpec(
        name="warm",
        command=[PY, "-m", "warm_task", str(counter), "real"],
        cwd=modules,
        env=env,
        stdout_path=out,
        stderr_path=out,
        python=entry,
    )
    for _ in range(2):
        assert backend.start(spec).wait(30) == 0
    # one line from the warm-up in the server, one per task
    assert counter.read_text().splitlines() == ["ran"] * 3
    text = out.read_text()
    # the warm-up printed nothing where tasks write, and each task's logging works
    assert "warm-up" not in text
    assert text.count("printed real") == 2
    assert text.count("task says real") == 2
