"""Artifacts passed between tasks: paths, URIs, metadata, InputPath/OutputPath, outputs."""

from pathlib import Path

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, InputPath, Model, Output, OutputPath

import ketch
from tests.pipelines.helpers import local_path


@dsl.component
def produce(text: str, data: Output[Dataset]):
    with open(data.path, "w") as f:
        f.write(text)
    data.metadata["length"] = len(text)
    data.metadata["tags"] = ["a", "b"]


@dsl.component
def consume(data: Input[Dataset]) -> str:
    with open(data.path) as f:
        content = f.read()
    return f"{content}:{data.metadata['length']}:{','.join(data.metadata['tags'])}"


@dsl.component
def upper_file(src: InputPath("Dataset"), dst: OutputPath("Dataset")):
    with open(src) as f:
        text = f.read()
    with open(dst, "w") as f:
        f.write(text.upper())


@dsl.component
def write_dir(out: Output[Artifact]):
    import os

    os.makedirs(out.path, exist_ok=True)
    for name in ("one.txt", "two.txt"):
        with open(os.path.join(out.path, name), "w") as f:
            f.write(name)


@dsl.component
def list_dir(data: Input[Artifact]) -> list:
    import os

    return sorted(os.listdir(data.path))


def test_artifact_passes_with_metadata():
    @dsl.pipeline(name="artifact-pass")
    def p(text: str = "hello") -> str:
        made = produce(text=text)
        return consume(data=made.outputs["data"]).output

    run = ketch.run(p)
    assert run.state == "SUCCEEDED", run.error
    assert run.outputs == {"Output": "hello:5:a,b"}
    [out] = run.tasks["produce"].outputs["data"]
    assert set(out) >= {"uri", "name", "type", "metadata"}
    assert out["metadata"] == {"length": 5, "tags": ["a", "b"]}
    assert type(out["metadata"]["length"]) is int
    assert "system.Dataset" in str(out["type"])
    assert local_path(out["uri"]).read_text() == "hello"
    [inp] = run.tasks["consume"].inputs["data"]
    assert inp["uri"] == out["uri"]
    assert inp["metadata"] == out["metadata"]


def test_input_path_and_output_path():
    @dsl.pipeline(name="paths")
    def p() -> str:
        made = produce(text="shout")
        up = upper_file(src=made.outputs["data"])
        return consume_plain(data=up.outputs["dst"]).output

    run = ketch.run(p)
    assert run.state == "SUCCEEDED", run.error
    assert run.outputs == {"Output": "SHOUT"}
    [dst] = run.tasks["upper-file"].outputs["dst"]
    assert local_path(dst["uri"]).read_text() == "SHOUT"


@dsl.component
def consume_plain(data: Input[Dataset]) -> str:
    with open(data.path) as f:
        return f.read()


def test_directory_artifact():
    @dsl.pipeline(name="dir-artifact")
    def p() -> list:
        return list_dir(data=write_dir().outputs["out"]).output

    run = ketch.run(p)
    assert run.state == "SUCCEEDED", run.error
    assert run.outputs == {"Output": ["one.txt", "two.txt"]}


def test_output_uris_are_unique_per_task_and_run():
    @dsl.pipeline(name="unique-uris")
    def p():
        produce(text="x")
        produce(text="y")

    first = ketch.run(p, enable_caching=False)
    second = ketch.run(p, enable_caching=False)
    uris = [
        r.tasks[t].outputs["data"][0]["uri"]
        for r in (first, second)
        for t in ("produce", "produce-2")
    ]
    assert len(set(uris)) == 4
    assert local_path(first.tasks["produce"].outputs["data"][0]["uri"]).read_text() == "x"
    assert local_path(second.tasks["produce-2"].outputs["data"][0]["uri"]).read_text() == "y"


def test_pipeline_artifact_outputs_are_kfp_objects():
    @dsl.pipeline(name="artifact-outputs")
    def p() -> Dataset:
        return produce(text="out").outputs["data"]

    run = ketch.run(p)
    assert run.state == "SUCCEEDED", run.error
    out = run.outputs["Output"]
    assert isinstance(out, Dataset)
    assert out.metadata == {"length": 3, "tags": ["a", "b"]}
    assert Path(out.path).read_text() == "out"


@dsl.component
def train(model: Output[Model]):
    with open(model.path, "w") as f:
        f.write("weights")
    model.framework = "handmade"


def test_model_framework_metadata():
    @dsl.pipeline(name="model")
    def p() -> Model:
        return train().outputs["model"]

    run = ketch.run(p)
    assert run.state == "SUCCEEDED", run.error
    model = run.outputs["Output"]
    assert isinstance(model, Model)
    assert model.framework == "handmade"
    assert model.metadata == {"framework": "handmade"}
