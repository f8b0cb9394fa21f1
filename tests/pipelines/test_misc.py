"""Task settings: environment variables, after(), resources and memory limits, parallelism."""

import json

from kfp import dsl

import ketch
from tests.pipelines.components import record, sleep_window
from tests.pipelines.helpers import read_lines


@dsl.component
def read_env(names: list) -> dict:
    import os

    return {name: os.environ.get(name) for name in names}


def test_set_env_variable():
    @dsl.pipeline(name="env-vars")
    def p() -> dict:
        t = read_env(names=["KETCH_TEST_A", "KETCH_TEST_B", "KETCH_TEST_UNSET"])
        t.set_env_variable(name="KETCH_TEST_A", value="alpha")
        t.set_env_variable(name="KETCH_TEST_B", value="with spaces = and symbols")
        return t.output

    run = ketch.run(p)
    assert run.state == "SUCCEEDED", run.error
    assert run.outputs == {
        "Output": {
            "KETCH_TEST_A": "alpha",
            "KETCH_TEST_B": "with spaces = and symbols",
            "KETCH_TEST_UNSET": None,
        }
    }


def test_env_variable_is_per_task():
    @dsl.pipeline(name="env-per-task")
    def p():
        read_env(names=["KETCH_TEST_A"]).set_env_variable(name="KETCH_TEST_A", value="one")
        read_env(names=["KETCH_TEST_A"])

    run = ketch.run(p)
    assert run.state == "SUCCEEDED", run.error
    assert run.tasks["read-env"].outputs == {"Output": {"KETCH_TEST_A": "one"}}
    assert run.tasks["read-env-2"].outputs == {"Output": {"KETCH_TEST_A": None}}


def test_after_orders_tasks_without_data_dependency(tmp_path):
    marker = tmp_path / "order.txt"

    @dsl.pipeline(name="after")
    def p(path: str):
        first = record(path=path, label="first")
        second = record(path=path, label="second").after(first)
        record(path=path, label="third").after(second)

    run = ketch.run(p, arguments={"path": str(marker)}, max_parallelism=4)
    assert run.state == "SUCCEEDED", run.error
    assert read_lines(marker) == ["first", "second", "third"]
    assert run.tasks["record-2"].started_at >= run.tasks["record"].finished_at
    assert run.tasks["record-3"].started_at >= run.tasks["record-2"].finished_at


@dsl.component
def allocate(megabytes: int) -> int:
    block = b"\x01" * (megabytes * 1024 * 1024)  # touches every page
    return len(block) // (1024 * 1024)


def test_resources_are_recorded_and_small_task_runs_within_them():
    @dsl.pipeline(name="resources")
    def p() -> int:
        t = allocate(megabytes=16)
        t.set_cpu_request("500m").set_cpu_limit("2")
        t.set_memory_request("256M").set_memory_limit("1G")
        return t.output

    run = ketch.run(p)
    assert run.state == "SUCCEEDED", run.error
    assert run.outputs == {"Output": 16}
    task = run.tasks["allocate"]
    resources = getattr(task, "resources", None)
    assert resources, "TaskInfo does not record the task's resource requests/limits"
    text = json.dumps(resources, default=lambda o: getattr(o, "__dict__", str(o)))
    for value in ("500m", "256M", "1G"):
        assert value in text or value.lower() in text.lower(), (value, text)


def test_memory_limit_is_enforced():
    @dsl.pipeline(name="memory-limit")
    def p() -> int:
        return allocate(megabytes=3072).set_memory_limit("1G").output

    run = ketch.run(p)
    assert run.state == "FAILED"
    task = run.tasks["allocate"]
    assert task.state == "FAILED"
    assert "allocate" in run.error
    assert "MemoryError" in run.error or "memory" in run.error.lower()


def _windows(path) -> dict[str, dict]:
    return {w["label"]: w for w in map(json.loads, read_lines(path))}


def test_independent_tasks_run_in_parallel(tmp_path):
    windows = tmp_path / "windows.jsonl"

    @dsl.pipeline(name="parallel")
    def p(path: str):
        sleep_window(path=path, label="a", seconds=1.0)
        sleep_window(path=path, label="b", seconds=1.0)

    run = ketch.run(p, arguments={"path": str(windows)}, max_parallelism=2)
    assert run.state == "SUCCEEDED", run.error
    w = _windows(windows)
    assert set(w) == {"a", "b"}
    # the two sleeps overlapped in time
    assert max(w["a"]["start"], w["b"]["start"]) < min(w["a"]["end"], w["b"]["end"])


def test_max_parallelism_one_serializes(tmp_path):
    windows = tmp_path / "windows.jsonl"

    @dsl.pipeline(name="serial")
    def p(path: str):
        sleep_window(path=path, label="a", seconds=0.3)
        sleep_window(path=path, label="b", seconds=0.3)

    run = ketch.run(p, arguments={"path": str(windows)}, max_parallelism=1)
    assert run.state == "SUCCEEDED", run.error
    w = _windows(windows)
    first, second = sorted(w.values(), key=lambda x: x["start"])
    assert first["end"] <= second["start"]


def test_pipeline_root_holds_artifacts(tmp_path):
    root = tmp_path / "my-root"

    @dsl.component
    def make(out: dsl.Output[dsl.Artifact]):
        with open(out.path, "w") as f:
            f.write("in the root")

    @dsl.pipeline(name="custom-root")
    def p():
        make()

    run = ketch.run(p, pipeline_root=str(root))
    assert run.state == "SUCCEEDED", run.error
    [artifact] = run.tasks["make"].outputs["out"]
    assert str(root) in artifact["uri"]
    files = [f for f in root.rglob("*") if f.is_file()]
    assert any(f.read_text() == "in the root" for f in files if f.stat().st_size < 100)


def test_default_pipeline_root_is_under_ketch_home(ketch_home):
    @dsl.component
    def make(out: dsl.Output[dsl.Artifact]):
        with open(out.path, "w") as f:
            f.write("home")

    @dsl.pipeline(name="default-root")
    def p():
        make()

    run = ketch.run(p)
    assert run.state == "SUCCEEDED", run.error
    [artifact] = run.tasks["make"].outputs["out"]
    assert str(ketch_home) in artifact["uri"]


def test_a_pipeline_root_without_its_package_names_the_extra(ketch_home):
    import importlib.util

    import pytest

    from ketch.core.errors import InvalidSpec

    if importlib.util.find_spec("gcsfs") is not None:
        pytest.skip("gcsfs is installed here: nothing is missing")

    @dsl.component
    def noop():
        pass

    @dsl.pipeline(name="remote-root")
    def p():
        noop()

    with pytest.raises(InvalidSpec) as raised:
        ketch.run(p, pipeline_root="gs://bucket/runs")
    assert "gs://bucket/runs needs gcsfs" in str(raised.value)
    assert "pip install 'ketch[gcs]'" in str(raised.value)
    assert raised.value.field == "pipeline_root"
