"""Pipelines used as components inside other pipelines."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Dataset, Input, Output

import ketch
from tests.pipelines.components import add, inc


@dsl.pipeline(name="inner")
def inner(x: int) -> int:
    a = inc(x=x)
    return inc(x=a.output).output


@dsl.pipeline(name="middle")
def middle(x: int) -> int:
    sub = inner(x=x)
    return add(a=sub.output, b=100).output


def test_pipeline_as_component_with_output():
    @dsl.pipeline(name="outer")
    def outer(x: int = 1) -> int:
        sub = inner(x=x)
        return add(a=sub.output, b=10).output

    run = ketch.run(outer)
    assert run.state == "SUCCEEDED", run.error
    assert run.outputs == {"Output": 13}
    assert run.tasks["inner"].type == "dag"
    assert run.tasks["inner"].state == "SUCCEEDED"
    assert run.tasks["inner"].outputs == {"Output": 3}
    assert run.tasks["inner/inc"].inputs == {"x": 1}
    assert run.tasks["inner/inc-2"].outputs == {"Output": 3}


def test_two_levels_of_nesting():
    @dsl.pipeline(name="outermost")
    def outermost(x: int = 0) -> int:
        return middle(x=x).output

    run = ketch.run(outermost)
    assert run.state == "SUCCEEDED", run.error
    assert run.outputs == {"Output": 102}
    assert run.tasks["middle/inner/inc-2"].outputs == {"Output": 2}
    assert run.tasks["middle/add"].outputs == {"Output": 102}


def test_same_sub_pipeline_used_twice():
    @dsl.pipeline(name="twice")
    def twice(x: int = 5) -> int:
        a = inner(x=x)
        b = inner(x=a.output)
        return b.output

    run = ketch.run(twice)
    assert run.state == "SUCCEEDED", run.error
    assert run.outputs == {"Output": 9}
    assert run.tasks["inner"].outputs == {"Output": 7}
    assert run.tasks["inner-2"].outputs == {"Output": 9}


@dsl.component
def write(text: str, out: Output[Dataset]):
    with open(out.path, "w") as f:
        f.write(text)


@dsl.component
def read(data: Input[Dataset]) -> str:
    with open(data.path) as f:
        return f.read()


@dsl.pipeline(name="artifact-inner")
def artifact_inner(text: str) -> NamedTuple("Outputs", [("data", Dataset), ("echoed", str)]):  # noqa: UP014
    w = write(text=text)
    n = read(data=w.outputs["out"])
    outputs = NamedTuple("Outputs", [("data", Dataset), ("echoed", str)])  # noqa: UP014
    return outputs(data=w.outputs["out"], echoed=n.output)


@dsl.pipeline(name="sub-with-artifact")
def sub_artifact(text: str) -> Dataset:
    return write(text=text).outputs["out"]


def test_sub_pipeline_artifact_output():
    @dsl.pipeline(name="outer-artifact")
    def outer(text: str = "nested!") -> str:
        sub = sub_artifact(text=text)
        return read(data=sub.output).output

    run = ketch.run(outer)
    assert run.state == "SUCCEEDED", run.error
    assert run.outputs == {"Output": "nested!"}
    [artifact] = run.tasks["sub-with-artifact"].outputs["Output"]
    assert "system.Dataset" in str(artifact["type"])


def test_sub_pipeline_inside_condition_and_loop():
    @dsl.pipeline(name="sub-in-control-flow")
    def p(run_it: bool = True) -> list:
        with dsl.If(run_it == True):  # noqa: E712
            with dsl.ParallelFor([1, 2]) as x:
                s = inner(x=x)
        return dsl.Collected(s.output)

    run = ketch.run(p)
    assert run.state == "SUCCEEDED", run.error
    assert sorted(run.outputs["Output"]) == [3, 4]
    inners = [t for t in run.tasks.values() if t.name == "inner"]
    assert len(inners) == 2 and all(t.type == "dag" for t in inners)


def test_sub_pipeline_with_named_outputs():
    @dsl.pipeline(name="outer-named")
    def outer() -> str:
        sub = artifact_inner(text="abc")
        again = read(data=sub.outputs["data"])
        return add_suffix(a=sub.outputs["echoed"], b=again.output).output

    run = ketch.run(outer)
    assert run.state == "SUCCEEDED", run.error
    assert run.outputs == {"Output": "abc+abc"}
    outputs = run.tasks["artifact-inner"].outputs
    assert outputs["echoed"] == "abc"
    assert "system.Dataset" in str(outputs["data"][0]["type"])


@dsl.component
def add_suffix(a: str, b: str) -> str:
    return f"{a}+{b}"
