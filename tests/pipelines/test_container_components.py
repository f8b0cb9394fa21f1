"""Container components (the command runs on the host) and their placeholders."""

# ruff: noqa: UP045  (kfp reads typing.Optional; it rejects "X | None" annotations)

import json
from datetime import datetime
from pathlib import Path
from typing import Optional

from kfp import dsl
from kfp.dsl import Dataset, Input, Output, OutputPath

import ketch
from tests.pipelines.helpers import local_path

# `sh -c SCRIPT a b c` gives the script $0=a, $1=b, ...: the first argument is the
# output file, the rest are written to it joined by "|".
WRITE_ARGS = 'out="$0"; mkdir -p "$(dirname "$out")"; printf "%s|" "$@" > "$out"'


@dsl.container_component
def write_args(out: OutputPath(str), a: str, b: int):
    return dsl.ContainerSpec(image="alpine:3", command=["sh", "-c", WRITE_ARGS], args=[out, a, b])


@dsl.container_component
def make_file(text: str, data: Output[Dataset]):
    return dsl.ContainerSpec(
        image="alpine:3",
        command=["sh", "-c", 'mkdir -p "$(dirname "$1")" && printf "%s" "$0" > "$1"'],
        args=[text, data.path],
    )


@dsl.container_component
def inspect_artifact(data: Input[Dataset], out: OutputPath(str)):
    return dsl.ContainerSpec(
        image="alpine:3",
        command=[
            "sh",
            "-c",
            'mkdir -p "$(dirname "$0")"; printf "%s\\n%s\\n%s\\n%s" "$(cat "$1")" "$1" "$2" "$3" > "$0"',
        ],
        args=[out, data.path, data.uri, data.metadata],
    )


@dsl.component
def tag_dataset(data: Output[Dataset]):
    with open(data.path, "w") as f:
        f.write("tagged")
    data.metadata["owner"] = "ketch"
    data.metadata["rows"] = 3


def test_container_component_parameters_and_output_file():
    @dsl.pipeline(name="container-params")
    def p(a: str = "hello world", b: int = 7) -> str:
        return write_args(a=a, b=b).output

    run = ketch.run(p)
    assert run.state == "SUCCEEDED", run.error
    # the output parameter file becomes the task's output; "hello world" stayed one argv item
    assert run.outputs == {"Output": "hello world|7|"}
    assert run.tasks["write-args"].type == "container"
    assert run.tasks["write-args"].outputs == {"out": "hello world|7|"}


def test_container_artifact_path_uri_metadata_placeholders():
    @dsl.pipeline(name="container-artifacts")
    def p() -> str:
        made = make_file(text="payload")
        tagged = tag_dataset()
        inspect_artifact(data=made.outputs["data"])
        return inspect_artifact(data=tagged.outputs["data"]).output

    run = ketch.run(p)
    assert run.state == "SUCCEEDED", run.error
    [made] = run.tasks["make-file"].outputs["data"]
    assert local_path(made["uri"]).read_text() == "payload"

    content, path, uri, metadata = run.tasks["inspect-artifact"].outputs["out"].split("\n")
    assert content == "payload"
    assert uri == made["uri"]
    assert Path(path) == local_path(made["uri"])
    assert json.loads(metadata) == made["metadata"]

    content, path, uri, metadata = run.outputs["Output"].split("\n")
    assert content == "tagged"
    assert json.loads(metadata) == {"owner": "ketch", "rows": 3}


@dsl.container_component
def output_placeholders(data: Output[Dataset], out: OutputPath(str)):
    return dsl.ContainerSpec(
        image="alpine:3",
        command=[
            "sh",
            "-c",
            'mkdir -p "$(dirname "$0")" "$(dirname "$1")"; printf x > "$1"; '
            'printf "%s\\n%s\\n%s" "$1" "$2" "$3" > "$0"',
        ],
        args=[out, data.path, data.uri, data.metadata],
    )


def test_output_artifact_uri_and_metadata_placeholders():
    @dsl.pipeline(name="output-placeholders")
    def p():
        output_placeholders()

    run = ketch.run(p)
    assert run.state == "SUCCEEDED", run.error
    task = run.tasks["output-placeholders"]
    [artifact] = task.outputs["data"]
    path, uri, metadata = task.outputs["out"].split("\n")
    assert uri == artifact["uri"]
    assert Path(path) == local_path(artifact["uri"])
    assert local_path(artifact["uri"]).read_text() == "x"
    assert json.loads(metadata) == {}


EXECUTOR_IO_SCRIPT = """
import json, os, sys
executor_input = json.loads(sys.argv[1])
out_file = sys.argv[2]
n = executor_input["inputs"]["parameterValues"]["n"]
art = executor_input["outputs"]["artifacts"]["data"]["artifacts"][0]
os.makedirs(os.path.dirname(out_file), exist_ok=True)
with open(out_file, "w") as f:
    json.dump({
        "parameterValues": {"result": n * 2, "kind": type(n).__name__},
        "artifacts": {"data": {"artifacts": [
            {"name": art["name"], "uri": art["uri"], "metadata": {"n": n}}
        ]}},
    }, f)
"""


@dsl.container_component
def executor_io(n: int, data: Output[Dataset], result: OutputPath(int), kind: OutputPath(str)):
    """Reads ``{{$}}`` and reports its outputs through ``{{$.outputs.output_file}}``."""
    return dsl.ContainerSpec(
        image="python:3.11",
        command=["python3", "-c", EXECUTOR_IO_SCRIPT],
        args=[
            dsl.PIPELINE_TASK_EXECUTOR_INPUT_PLACEHOLDER,
            dsl.PIPELINE_TASK_EXECUTOR_OUTPUT_PATH_PLACEHOLDER,
        ],
    )


def test_executor_input_and_output_file_placeholders():
    @dsl.pipeline(name="executor-io")
    def p(n: int = 21):
        executor_io(n=n)

    run = ketch.run(p)
    assert run.state == "SUCCEEDED", run.error
    task = run.tasks["executor-io"]
    assert task.outputs["result"] == 42
    assert type(task.outputs["result"]) is int
    assert task.outputs["kind"] == "int"  # {{$}} carried an int, not 21.0
    [artifact] = task.outputs["data"]
    assert artifact["metadata"] == {"n": 21}


@dsl.container_component
def context_placeholders(
    out: OutputPath(str),
):
    return dsl.ContainerSpec(
        image="alpine:3",
        command=["sh", "-c", WRITE_ARGS],
        args=[
            out,
            dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
            dsl.PIPELINE_JOB_RESOURCE_NAME_PLACEHOLDER,
            dsl.PIPELINE_JOB_ID_PLACEHOLDER,
            dsl.PIPELINE_TASK_NAME_PLACEHOLDER,
            dsl.PIPELINE_TASK_ID_PLACEHOLDER,
            dsl.PIPELINE_ROOT_PLACEHOLDER,
            dsl.PIPELINE_JOB_CREATE_TIME_UTC_PLACEHOLDER,
        ],
    )


@dsl.component
def context_from_inputs(job_name: str, job_id: str, task_name: str, task_id: str) -> str:
    import json

    return json.dumps([job_name, job_id, task_name, task_id])


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_pipeline_and_task_placeholders_in_command(tmp_path):
    root = tmp_path / "root"

    @dsl.pipeline(name="context-placeholders")
    def p():
        context_placeholders()
        context_placeholders()

    run = ketch.run(p, pipeline_root=str(root))
    assert run.state == "SUCCEEDED", run.error
    values = []
    for path in ("context-placeholders", "context-placeholders-2"):
        text = run.tasks[path].outputs["out"]
        assert "{{$" not in text, text
        job_name, job_resource, job_id, task_name, task_id, pipeline_root, created, _ = text.split(
            "|"
        )
        assert job_name and job_resource
        assert job_id == run.id
        assert task_name == path
        assert task_id
        assert pipeline_root.rstrip("/").endswith(str(root)) or Path(pipeline_root) == root
        assert _parse_time(created).year >= 2024
        values.append((job_name, job_id, task_id, created))
    (name1, id1, tid1, c1), (name2, id2, tid2, c2) = values
    assert name1 == name2 and id1 == id2 and c1 == c2  # the same run
    assert tid1 != tid2  # different tasks


def test_placeholders_as_task_arguments():
    @dsl.pipeline(name="placeholder-arguments")
    def p() -> str:
        return context_from_inputs(
            job_name=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
            job_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
            task_name=dsl.PIPELINE_TASK_NAME_PLACEHOLDER,
            task_id=dsl.PIPELINE_TASK_ID_PLACEHOLDER,
        ).output

    run = ketch.run(p)
    assert run.state == "SUCCEEDED", run.error
    job_name, job_id, task_name, task_id = json.loads(run.outputs["Output"])
    assert job_name and "{{" not in job_name
    assert job_id == run.id
    assert task_name == "context-from-inputs"
    assert task_id and "{{" not in task_id


@dsl.container_component
def concat_and_if_present(
    name: str,
    out: OutputPath(str),
    suffix: Optional[str] = None,
):
    return dsl.ContainerSpec(
        image="alpine:3",
        command=["sh", "-c", WRITE_ARGS],
        args=[
            out,
            dsl.ConcatPlaceholder(["hello-", name, "!"]),
            dsl.IfPresentPlaceholder(
                input_name="suffix",
                then=["--suffix", dsl.ConcatPlaceholder(["<", suffix, ">"])],
                else_=["--no-suffix"],
            ),
        ],
    )


def test_concat_and_if_present_placeholders_both_branches():
    @dsl.pipeline(name="if-present")
    def p(with_suffix: bool = True):
        with dsl.If(with_suffix == True):  # noqa: E712
            concat_and_if_present(name="ketch", suffix="s1")
        with dsl.Else():
            concat_and_if_present(name="ketch")

    run = ketch.run(p, arguments={"with_suffix": True})
    assert run.state == "SUCCEEDED", run.error
    [task] = [t for t in run.tasks.values() if t.type == "container" and t.state == "SUCCEEDED"]
    assert task.outputs["out"] == "hello-ketch!|--suffix|<s1>|"

    run = ketch.run(p, arguments={"with_suffix": False})
    assert run.state == "SUCCEEDED", run.error
    [task] = [t for t in run.tasks.values() if t.type == "container" and t.state == "SUCCEEDED"]
    assert task.outputs["out"] == "hello-ketch!|--no-suffix|"


def test_failing_container_component():
    @dsl.container_component
    def exit_three():
        return dsl.ContainerSpec(
            image="alpine:3", command=["sh", "-c", "echo broken-container >&2; exit 3"]
        )

    @dsl.pipeline(name="container-fails")
    def p():
        exit_three()

    run = ketch.run(p)
    assert run.state == "FAILED"
    assert run.tasks["exit-three"].state == "FAILED"
    assert "exit-three" in run.error
    assert "broken-container" in run.error


TARGET_IMAGE_MODULE = """
from kfp import dsl


@dsl.component(base_image="python:3.11", target_image="registry.invalid/ketch-test/shout:1")
def shout(msg: str) -> str:
    return msg.upper() + "!"


@dsl.pipeline(name="target-image")
def target_image_pipeline(msg: str = "hi") -> str:
    return shout(msg=msg).output
"""


def test_target_image_component_runs_on_host(tmp_path):
    module = tmp_path / "shout_component.py"
    module.write_text(TARGET_IMAGE_MODULE)
    run = ketch.run(str(module), arguments={"msg": "ketch"})
    assert run.state == "SUCCEEDED", run.error
    assert run.outputs == {"Output": "KETCH!"}
