"""Parameters: pipeline arguments, defaults, task-to-task passing, pipeline outputs."""

from pathlib import Path
from typing import NamedTuple

from kfp import compiler, dsl
from kfp.dsl import OutputPath

import ketch
from tests.pipelines.components import add, echo, inc


@dsl.pipeline(name="chain")
def chain(n: int = 1) -> int:
    a = inc(x=n)
    b = inc(x=a.output)
    return add(a=a.output, b=b.output).output


def test_argument_flows_through_a_chain():
    run = ketch.run(chain, arguments={"n": 3})
    assert run.state == "SUCCEEDED", run.error
    assert run.error is None
    assert run.outputs == {"Output": 9}
    assert type(run.outputs["Output"]) is int
    assert set(run.tasks) == {"inc", "inc-2", "add"}
    assert run.tasks["inc"].inputs == {"x": 3}
    assert run.tasks["inc"].outputs == {"Output": 4}
    assert run.tasks["inc-2"].inputs == {"x": 4}
    assert run.tasks["add"].inputs == {"a": 4, "b": 5}


def test_default_is_used_when_argument_missing():
    run = ketch.run(chain)
    assert run.state == "SUCCEEDED", run.error
    assert run.outputs["Output"] == 2 + 3


def test_task_info_fields():
    run = ketch.run(chain, arguments={"n": 0})
    assert isinstance(run.id, str) and run.id
    info = run.tasks["inc"]
    assert info.path == "inc"
    assert info.name == "inc"
    assert info.type == "container"
    assert info.state == "SUCCEEDED"
    assert info.cached is False
    assert info.attempts == 1
    assert info.error is None
    assert info.started_at is not None and info.finished_at is not None
    assert info.started_at <= info.finished_at
    # a task that consumes inc's output cannot start before inc finished
    assert run.tasks["inc-2"].started_at >= info.finished_at


def test_each_run_has_its_own_id():
    first = ketch.run(chain, arguments={"n": 1})
    second = ketch.run(chain, arguments={"n": 1}, enable_caching=False)
    assert first.id != second.id


def test_task_log_captures_stdout():
    @dsl.pipeline(name="logging")
    def logging_pipeline(msg: str) -> str:
        return echo(msg=msg).output

    run = ketch.run(logging_pipeline, arguments={"msg": "hello from the echo task"})
    assert run.state == "SUCCEEDED", run.error
    assert run.outputs == {"Output": "hello from the echo task"}
    log_path = run.tasks["echo"].log_path
    assert log_path and Path(log_path).is_file()
    assert "hello from the echo task" in Path(log_path).read_text()


@dsl.component
def stats(values: list) -> NamedTuple("Stats", [("total", int), ("mean", float), ("label", str)]):  # noqa: UP014
    return (sum(values), sum(values) / len(values), f"{len(values)} values")


def test_named_tuple_outputs_and_pipeline_outputs():
    class Out(NamedTuple):
        total: int
        mean: float
        doubled: int

    @dsl.pipeline(name="named-outputs")
    def named(values: list) -> Out:
        s = stats(values=values)
        d = add(a=s.outputs["total"], b=s.outputs["total"])
        return Out(total=s.outputs["total"], mean=s.outputs["mean"], doubled=d.output)

    run = ketch.run(named, arguments={"values": [1, 2, 3, 4]})
    assert run.state == "SUCCEEDED", run.error
    assert run.outputs == {"total": 10, "mean": 2.5, "doubled": 20}
    assert type(run.outputs["total"]) is int
    assert type(run.outputs["mean"]) is float
    assert run.tasks["stats"].outputs == {"total": 10, "mean": 2.5, "label": "4 values"}


@dsl.component
def write_greeting(name: str, greeting: OutputPath(str), count: OutputPath(int)):
    with open(greeting, "w") as f:
        f.write(f"hello {name}")
    with open(count, "w") as f:
        f.write(str(len(name)))


def test_output_path_parameters():
    @dsl.pipeline(name="output-path")
    def p(name: str = "ketch") -> int:
        g = write_greeting(name=name)
        echo(msg=g.outputs["greeting"])
        return inc(x=g.outputs["count"]).output

    run = ketch.run(p)
    assert run.state == "SUCCEEDED", run.error
    assert run.tasks["write-greeting"].outputs == {"greeting": "hello ketch", "count": 5}
    assert run.tasks["echo"].outputs == {"Output": "hello ketch"}
    assert run.outputs == {"Output": 6}


def test_constant_arguments_and_reused_component():
    @dsl.pipeline(name="constants")
    def p() -> int:
        a = add(a=40, b=2)
        return add(a=a.output, b=-2).output

    run = ketch.run(p)
    assert run.state == "SUCCEEDED", run.error
    assert run.tasks["add"].inputs == {"a": 40, "b": 2}
    assert run.tasks["add-2"].inputs == {"a": 42, "b": -2}
    assert run.outputs == {"Output": 40}


def test_runs_compiled_yaml_and_json(tmp_path):
    yaml_path = tmp_path / "chain.yaml"
    json_path = tmp_path / "chain.json"
    compiler.Compiler().compile(chain, str(yaml_path))
    compiler.Compiler().compile(chain, str(json_path))
    assert json_path.read_text().lstrip().startswith("{")
    for path in (yaml_path, json_path):
        run = ketch.run(str(path), arguments={"n": 10})
        assert run.state == "SUCCEEDED", run.error
        assert run.outputs == {"Output": 23}
    # a pathlib.Path works as well as a str
    assert ketch.run(yaml_path, arguments={"n": 0}).outputs == {"Output": 3}


PY_SOURCE = """
from kfp import dsl


@dsl.component
def double(x: int) -> int:
    return 2 * x


@dsl.component
def triple(x: int) -> int:
    return 3 * x


@dsl.pipeline(name="doubler")
def doubler(x: int = 1) -> int:
    return double(x=x).output


@dsl.pipeline(name="tripler")
def tripler(x: int = 1) -> int:
    return triple(x=x).output
"""


def test_runs_python_file_with_pipeline_name(tmp_path):
    path = tmp_path / "two_pipelines.py"
    path.write_text(PY_SOURCE)
    run = ketch.run(str(path), arguments={"x": 5}, pipeline_name="tripler")
    assert run.state == "SUCCEEDED", run.error
    assert run.outputs == {"Output": 15}
    assert set(run.tasks) == {"triple"}
    run = ketch.run(str(path), arguments={"x": 5}, pipeline_name="doubler")
    assert run.outputs == {"Output": 10}


def test_python_file_with_one_pipeline_needs_no_name(tmp_path):
    path = tmp_path / "one_pipeline.py"
    path.write_text(PY_SOURCE.split('@dsl.pipeline(name="tripler")')[0])
    run = ketch.run(str(path), arguments={"x": 4})
    assert run.state == "SUCCEEDED", run.error
    assert run.outputs == {"Output": 8}
