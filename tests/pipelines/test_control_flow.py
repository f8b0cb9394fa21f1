"""Control flow: If/Elif/Else, Condition, ParallelFor, Collected, OneOf."""

import json
from pathlib import Path

import pytest
from kfp import dsl
from kfp.dsl import Dataset, Input, Output

import ketch
from tests.pipelines.components import add, echo, inc, sleep_window
from tests.pipelines.helpers import local_path, state_of


@dsl.component
def pick(value: str) -> str:
    return value


@dsl.component
def make_dataset(text: str, out: Output[Dataset]):
    with open(out.path, "w") as f:
        f.write(text)
    out.metadata["text"] = text


@dsl.component
def read_dataset(data: Input[Dataset]) -> str:
    with open(data.path) as f:
        return f.read()


@dsl.component
def join_datasets(items: Input[list[Dataset]]) -> str:
    parts = []
    for item in items:
        with open(item.path) as f:
            parts.append(f.read())
    return ",".join(sorted(parts))


@dsl.component
def total(values: list) -> int:
    assert all(type(v) is int for v in values), values
    return sum(values)


@dsl.component
def gen_list(n: int) -> list:
    return [i * 10 for i in range(n)]


@dsl.component
def to_text(x: int) -> str:
    return f"item-{x}"


@dsl.pipeline(name="branches")
def branches(choice: str) -> str:
    p = pick(value=choice)
    with dsl.If(p.output == "a"):
        a = echo(msg="branch-a")
    with dsl.Elif(p.output == "b"):
        b = echo(msg="branch-b")
    with dsl.Else():
        c = echo(msg="branch-else")
    return dsl.OneOf(a.output, b.output, c.output)


BRANCH_TASKS = {
    "a": "condition-branches-1/condition-2/echo",
    "b": "condition-branches-1/condition-3/echo-2",
    "z": "condition-branches-1/condition-4/echo-3",
}


@pytest.mark.parametrize(
    "choice,expected", [("a", "branch-a"), ("b", "branch-b"), ("z", "branch-else")]
)
def test_if_elif_else_runs_exactly_one_branch_and_oneof_picks_it(choice, expected):
    run = ketch.run(branches, arguments={"choice": choice})
    assert run.state == "SUCCEEDED", run.error
    assert run.outputs == {"Output": expected}
    for key, path in BRANCH_TASKS.items():
        state = state_of(run, path)
        assert state == ("SUCCEEDED" if key == choice else "SKIPPED"), (path, state)
    ran = [p for p, t in run.tasks.items() if t.name.startswith("echo") and t.state == "SUCCEEDED"]
    assert ran == [BRANCH_TASKS[choice]]
    assert run.tasks["condition-branches-1"].type == "dag"
    assert run.tasks["condition-branches-1"].state == "SUCCEEDED"


def test_condition_on_pipeline_parameter_and_deprecated_condition():
    @dsl.pipeline(name="param-condition")
    def p(n: int, flag: bool):
        with dsl.If(n > 2):
            inc(x=n)
        with dsl.If(flag == True):  # noqa: E712  (a DSL comparison, not Python truthiness)
            add(a=n, b=n)
        with dsl.Condition(n == 0):
            echo(msg="zero")

    paths = ("condition-1/inc", "condition-2/add", "condition-3/echo")
    run = ketch.run(p, arguments={"n": 3, "flag": False})
    assert run.state == "SUCCEEDED", run.error
    assert [state_of(run, path) for path in paths] == ["SUCCEEDED", "SKIPPED", "SKIPPED"]
    assert run.tasks["condition-2"].state == "SKIPPED"

    run = ketch.run(p, arguments={"n": 0, "flag": True})
    assert run.state == "SUCCEEDED", run.error
    assert [state_of(run, path) for path in paths] == ["SKIPPED", "SUCCEEDED", "SUCCEEDED"]
    assert run.tasks["condition-2/add"].outputs == {"Output": 0}


def test_skipped_condition_skips_its_downstream_dag():
    @dsl.pipeline(name="nested-conditions")
    def p(x: int):
        with dsl.If(x > 0):
            t = inc(x=x)
            with dsl.If(t.output > 5):
                echo(msg="big")

    run = ketch.run(p, arguments={"x": -1})
    assert run.state == "SUCCEEDED", run.error
    assert run.tasks["condition-1"].state == "SKIPPED"
    assert state_of(run, "condition-1/inc") == "SKIPPED"
    assert state_of(run, "condition-1/condition-2/echo") == "SKIPPED"

    run = ketch.run(p, arguments={"x": 10})
    containers = {t.name: t.state for t in run.tasks.values() if t.type == "container"}
    assert containers == {"inc": "SUCCEEDED", "echo": "SUCCEEDED"}


def test_parallel_for_over_raw_list_of_strings():
    @dsl.pipeline(name="loop-raw")
    def p() -> list:
        with dsl.ParallelFor(["x", "y", "z"]) as item:
            e = echo(msg=item)
        return dsl.Collected(e.output)

    run = ketch.run(p)
    assert run.state == "SUCCEEDED", run.error
    assert sorted(run.outputs["Output"]) == ["x", "y", "z"]
    assert run.tasks["for-loop-2"].type == "loop"
    assert run.tasks["for-loop-2"].state == "SUCCEEDED"
    for i, value in enumerate(["x", "y", "z"]):
        assert run.tasks[f"for-loop-2[{i}]"].type == "iteration"
        assert run.tasks[f"for-loop-2[{i}]/echo"].outputs == {"Output": value}


def test_parallel_for_over_pipeline_parameter_and_empty_list():
    @dsl.pipeline(name="loop-param")
    def p(items: list) -> int:
        with dsl.ParallelFor(items) as x:
            t = inc(x=x)
        return total(values=dsl.Collected(t.output)).output

    run = ketch.run(p, arguments={"items": [1, 2, 3]})
    assert run.state == "SUCCEEDED", run.error
    assert run.outputs == {"Output": 9}
    assert {run.tasks[f"for-loop-1[{i}]/inc"].outputs["Output"] for i in range(3)} == {2, 3, 4}

    run = ketch.run(p, arguments={"items": []})
    assert run.state == "SUCCEEDED", run.error
    assert run.outputs == {"Output": 0}
    assert not any(path.startswith("for-loop-1[") for path in run.tasks)


def test_parallel_for_over_task_output():
    @dsl.pipeline(name="loop-output")
    def p(n: int = 3) -> list:
        g = gen_list(n=n)
        with dsl.ParallelFor(g.output) as x:
            t = to_text(x=x)
        return dsl.Collected(t.output)

    run = ketch.run(p)
    assert run.state == "SUCCEEDED", run.error
    assert sorted(run.outputs["Output"]) == ["item-0", "item-10", "item-20"]
    assert run.tasks["for-loop-1[2]/to-text"].inputs == {"x": 20}


@dsl.pipeline(name="make-three")
def make_three() -> list[Dataset]:
    with dsl.ParallelFor(["a", "b", "c"]) as text:
        m = make_dataset(text=text)
    return dsl.Collected(m.outputs["out"])


def test_parallel_for_over_artifact_list():
    @dsl.pipeline(name="loop-artifacts")
    def p() -> list:
        made = make_three()
        with dsl.ParallelFor(made.output) as data:
            r = read_dataset(data=data)
        return dsl.Collected(r.output)

    run = ketch.run(p)
    assert run.state == "SUCCEEDED", run.error
    assert sorted(run.outputs["Output"]) == ["a", "b", "c"]
    assert run.tasks["make-three"].type == "dag"
    assert len([p for p in run.tasks if p.startswith("make-three/for-loop-2[")]) >= 3
    texts = []
    for i in range(3):
        task = run.tasks[f"for-loop-1[{i}]/read-dataset"]
        [artifact] = task.inputs["data"]
        assert "system.Dataset" in str(artifact["type"])
        texts.append(local_path(artifact["uri"]).read_text())
        assert task.outputs == {"Output": texts[-1]}
    assert sorted(texts) == ["a", "b", "c"]


def test_collected_artifacts_in_list_input():
    @dsl.pipeline(name="collect-artifacts")
    def p() -> str:
        with dsl.ParallelFor(["p", "q", "r"]) as text:
            m = make_dataset(text=text)
        return join_datasets(items=dsl.Collected(m.outputs["out"])).output

    run = ketch.run(p)
    assert run.state == "SUCCEEDED", run.error
    assert run.outputs == {"Output": "p,q,r"}
    items = run.tasks["join-datasets"].inputs["items"]
    assert len(items) == 3
    assert sorted(a["metadata"]["text"] for a in items) == ["p", "q", "r"]


def test_nested_loops():
    @dsl.pipeline(name="nested-loops")
    def p() -> int:
        with dsl.ParallelFor([1, 2]) as a:
            with dsl.ParallelFor([10, 20, 30]) as b:
                s = add(a=a, b=b)
        return total(values=dsl.Collected(s.output)).output

    run = ketch.run(p)
    assert run.state == "SUCCEEDED", run.error
    assert run.outputs == {"Output": (1 + 2) * 3 + 2 * (10 + 20 + 30)}
    adds = {p: t for p, t in run.tasks.items() if t.name == "add"}
    assert len(adds) == 6
    # iterations nest in paths: outer[i]/inner[j]/add
    assert all(p.count("[") == 2 and p.endswith("/add") for p in adds)
    assert {(t.inputs["a"], t.inputs["b"]) for t in adds.values()} == {
        (a, b) for a in (1, 2) for b in (10, 20, 30)
    }


def test_condition_inside_loop():
    @dsl.component
    def is_big(x: int) -> bool:
        return x > 2

    @dsl.pipeline(name="condition-in-loop")
    def p():
        with dsl.ParallelFor([1, 2, 3, 4]) as x:
            check = is_big(x=x)
            with dsl.If(check.output == True):  # noqa: E712
                inc(x=x)

    run = ketch.run(p)
    assert run.state == "SUCCEEDED", run.error
    states = [state_of(run, f"for-loop-2[{i}]/condition-3/inc") for i in range(4)]
    assert states == ["SKIPPED", "SKIPPED", "SUCCEEDED", "SUCCEEDED"]
    ran = sorted(
        t.inputs["x"] for t in run.tasks.values() if t.name == "inc" and t.state == "SUCCEEDED"
    )
    assert ran == [3, 4]


def _windows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _max_overlap(windows: list[dict]) -> int:
    events = sorted(
        [(w["start"], 1) for w in windows] + [(w["end"], -1) for w in windows],
        key=lambda e: (e[0], e[1]),
    )
    running = peak = 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    return peak


def test_parallelism_limit_serializes_iterations(tmp_path):
    windows = tmp_path / "windows.jsonl"

    @dsl.pipeline(name="loop-parallelism")
    def p(path: str):
        with dsl.ParallelFor(["a", "b", "c"], parallelism=1) as label:
            sleep_window(path=path, label=label, seconds=0.3)

    run = ketch.run(p, arguments={"path": str(windows)}, max_parallelism=4)
    assert run.state == "SUCCEEDED", run.error
    ws = _windows(windows)
    assert sorted(w["label"] for w in ws) == ["a", "b", "c"]
    assert _max_overlap(ws) == 1


@pytest.mark.slow
def test_parallelism_limit_two(tmp_path):
    windows = tmp_path / "windows.jsonl"

    @dsl.pipeline(name="loop-parallelism-2")
    def p(path: str):
        with dsl.ParallelFor(["a", "b", "c", "d"], parallelism=2) as label:
            sleep_window(path=path, label=label, seconds=0.5)

    run = ketch.run(p, arguments={"path": str(windows)}, max_parallelism=4)
    assert run.state == "SUCCEEDED", run.error
    ws = _windows(windows)
    assert len(ws) == 4
    assert _max_overlap(ws) <= 2


def test_oneof_with_artifacts():
    @dsl.pipeline(name="oneof-artifacts")
    def p(use_first: bool) -> Dataset:
        with dsl.If(use_first == True):  # noqa: E712
            a = make_dataset(text="first")
        with dsl.Else():
            b = make_dataset(text="second")
        chosen = dsl.OneOf(a.outputs["out"], b.outputs["out"])
        read_dataset(data=chosen)
        return chosen

    for flag, text in [(True, "first"), (False, "second")]:
        run = ketch.run(p, arguments={"use_first": flag})
        assert run.state == "SUCCEEDED", run.error
        assert run.tasks["read-dataset"].outputs == {"Output": text}
        out = run.outputs["Output"]
        assert isinstance(out, Dataset)
        assert out.metadata.get("text") == text
        assert local_path(out.uri).read_text() == text


def test_oneof_parameter_consumed_by_task():
    @dsl.pipeline(name="oneof-param")
    def p(x: int) -> str:
        with dsl.If(x >= 0):
            pos = pick(value="non-negative")
        with dsl.Else():
            neg = pick(value="negative")
        return echo(msg=dsl.OneOf(pos.output, neg.output)).output

    assert ketch.run(p, arguments={"x": 5}).outputs == {"Output": "non-negative"}
    assert ketch.run(p, arguments={"x": -5}).outputs == {"Output": "negative"}
