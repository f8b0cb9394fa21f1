"""Retries (set_retry) and caching across runs."""

from kfp import dsl

import ketch
from tests.pipelines.components import record
from tests.pipelines.helpers import read_lines


@dsl.component
def flaky(counter: str, failures: int) -> int:
    """Fails the first ``failures`` times it runs, counting attempts in a file."""
    import os

    attempts = int(open(counter).read()) if os.path.exists(counter) else 0
    attempts += 1
    with open(counter, "w") as f:
        f.write(str(attempts))
    if attempts <= failures:
        raise RuntimeError(f"attempt {attempts} fails on purpose")
    return attempts


def test_retry_until_success(tmp_path):
    counter = tmp_path / "counter"

    @dsl.pipeline(name="retry-ok")
    def p(counter: str) -> int:
        return (
            flaky(counter=counter, failures=2)
            .set_retry(num_retries=3, backoff_duration="0s")
            .output
        )

    run = ketch.run(p, arguments={"counter": str(counter)})
    assert run.state == "SUCCEEDED", run.error
    assert counter.read_text() == "3"
    assert run.outputs == {"Output": 3}
    task = run.tasks["flaky"]
    assert task.attempts == 3
    assert task.state == "SUCCEEDED"


def test_retries_exhausted_fails(tmp_path):
    counter = tmp_path / "counter"

    @dsl.pipeline(name="retry-exhausted")
    def p(counter: str) -> int:
        return (
            flaky(counter=counter, failures=5)
            .set_retry(num_retries=2, backoff_duration="0s")
            .output
        )

    run = ketch.run(p, arguments={"counter": str(counter)})
    assert run.state == "FAILED"
    assert counter.read_text() == "3"  # the first try and two retries
    task = run.tasks["flaky"]
    assert task.state == "FAILED"
    assert task.attempts == 3
    assert "attempt 3 fails on purpose" in run.error


def test_no_retry_by_default(tmp_path):
    counter = tmp_path / "counter"

    @dsl.pipeline(name="no-retry")
    def p(counter: str) -> int:
        return flaky(counter=counter, failures=1).output

    run = ketch.run(p, arguments={"counter": str(counter)})
    assert run.state == "FAILED"
    assert counter.read_text() == "1"
    assert run.tasks["flaky"].attempts == 1


@dsl.component
def record_again(path: str, label: str) -> str:
    with open(path, "a") as f:
        f.write(label + "\n")
    return label


@dsl.pipeline(name="cached-pipeline")
def cached_pipeline(path: str, label: str = "a") -> str:
    first = record(path=path, label=label)
    return record_again(path=path, label=first.output).output


def test_second_run_is_served_from_cache(tmp_path):
    marker = tmp_path / "ran.txt"
    first = ketch.run(cached_pipeline, arguments={"path": str(marker)})
    assert first.state == "SUCCEEDED", first.error
    assert read_lines(marker) == ["a", "a"]
    assert not any(t.cached for t in first.tasks.values())

    second = ketch.run(cached_pipeline, arguments={"path": str(marker)})
    assert second.state == "SUCCEEDED", second.error
    assert second.id != first.id
    # nothing executed again: the side-effect file is unchanged
    assert read_lines(marker) == ["a", "a"]
    for path in ("record", "record-again"):
        assert second.tasks[path].cached is True
        assert second.tasks[path].state == "SUCCEEDED"
        assert second.tasks[path].outputs == first.tasks[path].outputs
    assert second.outputs == first.outputs == {"Output": "a"}


def test_changed_input_changes_the_cache_key(tmp_path):
    marker = tmp_path / "ran.txt"
    ketch.run(cached_pipeline, arguments={"path": str(marker), "label": "a"})
    run = ketch.run(cached_pipeline, arguments={"path": str(marker), "label": "b"})
    assert run.state == "SUCCEEDED", run.error
    assert run.tasks["record"].cached is False
    assert read_lines(marker) == ["a", "a", "b", "b"]
    # back to the first input: a hit again
    run = ketch.run(cached_pipeline, arguments={"path": str(marker), "label": "a"})
    assert all(t.cached for t in run.tasks.values() if t.type == "container")
    assert read_lines(marker) == ["a", "a", "b", "b"]


def test_downstream_input_change_misses_only_downstream(tmp_path):
    marker = tmp_path / "ran.txt"

    @dsl.pipeline(name="partial-cache")
    def p(path: str, second: str) -> str:
        record(path=path, label="fixed")
        return record(path=path, label=second).output

    ketch.run(p, arguments={"path": str(marker), "second": "x"})
    run = ketch.run(p, arguments={"path": str(marker), "second": "y"})
    assert run.state == "SUCCEEDED", run.error
    assert run.tasks["record"].cached is True
    assert run.tasks["record-2"].cached is False
    assert read_lines(marker).count("fixed") == 1
    assert sorted(read_lines(marker)) == ["fixed", "x", "y"]


def test_task_with_caching_disabled_always_runs(tmp_path):
    marker = tmp_path / "ran.txt"

    @dsl.pipeline(name="no-cache-task")
    def p(path: str):
        record(path=path, label="cacheable")
        record(path=path, label="uncached").set_caching_options(False)

    ketch.run(p, arguments={"path": str(marker)})
    run = ketch.run(p, arguments={"path": str(marker)})
    assert run.state == "SUCCEEDED", run.error
    assert run.tasks["record"].cached is True
    assert run.tasks["record-2"].cached is False
    assert sorted(read_lines(marker)) == ["cacheable", "uncached", "uncached"]


def test_enable_caching_false_overrides_for_one_run(tmp_path):
    marker = tmp_path / "ran.txt"
    ketch.run(cached_pipeline, arguments={"path": str(marker)})
    run = ketch.run(cached_pipeline, arguments={"path": str(marker)}, enable_caching=False)
    assert run.state == "SUCCEEDED", run.error
    assert not any(t.cached for t in run.tasks.values())
    assert read_lines(marker) == ["a"] * 4
    # the cache itself is still there for later runs
    run = ketch.run(cached_pipeline, arguments={"path": str(marker)})
    assert all(t.cached for t in run.tasks.values() if t.type == "container")
    assert read_lines(marker) == ["a"] * 4


def test_enable_caching_true_forces_cache_on(tmp_path):
    marker = tmp_path / "ran.txt"

    @dsl.pipeline(name="forced-cache")
    def p(path: str):
        record(path=path, label="x").set_caching_options(False)

    ketch.run(p, arguments={"path": str(marker)}, enable_caching=True)
    run = ketch.run(p, arguments={"path": str(marker)}, enable_caching=True)
    assert run.tasks["record"].cached is True
    assert read_lines(marker) == ["x"]


def test_failed_task_is_not_cached(tmp_path):
    counter = tmp_path / "counter"

    @dsl.pipeline(name="fail-then-pass")
    def p(counter: str) -> int:
        return flaky(counter=counter, failures=1).output

    assert ketch.run(p, arguments={"counter": str(counter)}).state == "FAILED"
    run = ketch.run(p, arguments={"counter": str(counter)})
    assert run.state == "SUCCEEDED", run.error
    assert run.tasks["flaky"].cached is False
    assert run.outputs == {"Output": 2}


@dsl.component
def write_dataset(text: str, out: dsl.Output[dsl.Dataset]):
    with open(out.path, "w") as f:
        f.write(text)


@dsl.component
def read_dataset(data: dsl.Input[dsl.Dataset], path: str) -> str:
    with open(path, "a") as f:
        f.write("read\n")
    with open(data.path) as f:
        return f.read()


def test_cached_artifacts_are_reused(tmp_path):
    marker = tmp_path / "ran.txt"

    @dsl.pipeline(name="cached-artifacts")
    def p(path: str, text: str) -> str:
        w = write_dataset(text=text)
        return read_dataset(data=w.outputs["out"], path=path).output

    first = ketch.run(p, arguments={"path": str(marker), "text": "v1"})
    second = ketch.run(p, arguments={"path": str(marker), "text": "v1"})
    assert second.state == "SUCCEEDED", second.error
    assert second.tasks["write-dataset"].cached and second.tasks["read-dataset"].cached
    assert (
        second.tasks["write-dataset"].outputs["out"][0]["uri"]
        == (first.tasks["write-dataset"].outputs["out"][0]["uri"])
    )
    assert read_lines(marker) == ["read"]
    assert second.outputs == {"Output": "v1"}


@dsl.pipeline(name="namespaced-cache")
def namespaced_cache(path: str, text: str) -> str:
    w = write_dataset(text=text)
    return read_dataset(data=w.outputs["out"], path=path).output


def test_the_cache_is_kept_apart_per_namespace(tmp_path, make_service):
    """A cached task of one namespace (a profile's) is never a hit in another, so a run
    never gets another profile's artifact paths; within a namespace it still is."""
    from google.protobuf import json_format

    from ketch.pipelines.runs import PipelineRunSource

    spec = json_format.MessageToDict(namespaced_cache.pipeline_spec)
    marker = tmp_path / "ran.txt"
    service = make_service()
    service.start()
    try:
        tasks = PipelineRunSource(service.database).tasks

        def run_in(namespace):
            run_id = service.submit(
                spec, parameters={"path": str(marker), "text": "v1"}, namespace=namespace
            )
            assert service.wait(run_id, 120) == "SUCCEEDED"
            return {t.name: t for t in tasks(run_id)}

        first = run_in("team-a")
        other = run_in("team-b")
        again = run_in("team-a")
    finally:
        service.stop()

    def uri(task):
        return task.outputs["artifacts"]["out"][0]["uri"]

    assert not first["write-dataset"].cached and not first["read-dataset"].cached
    # the same task in another namespace runs again, writing an artifact of its own
    assert not other["write-dataset"].cached and not other["read-dataset"].cached
    assert uri(other["write-dataset"]) != uri(first["write-dataset"])
    assert other["write-dataset"].cache_key != first["write-dataset"].cache_key
    # in the same namespace it is still a hit, with that namespace's artifact
    assert again["write-dataset"].cached and again["read-dataset"].cached
    assert uri(again["write-dataset"]) == uri(first["write-dataset"])
    assert read_lines(marker) == ["read", "read"]
