"""Every KFP artifact type, logging helpers, lists of artifacts and pythonic returns."""

import json
from pathlib import Path

from kfp import dsl
from kfp.dsl import (
    HTML,
    Artifact,
    ClassificationMetrics,
    Dataset,
    Input,
    Markdown,
    Metrics,
    Model,
    Output,
    SlicedClassificationMetrics,
)

import ketch
from tests.pipelines.helpers import local_path


@dsl.component
def make_all(
    artifact: Output[Artifact],
    dataset: Output[Dataset],
    model: Output[Model],
    html: Output[HTML],
    markdown: Output[Markdown],
):
    for out, text in [
        (artifact, "artifact"),
        (dataset, "a,b\n1,2\n"),
        (model, "model-bytes"),
        (html, "<h1>report</h1>"),
        (markdown, "# report"),
    ]:
        with open(out.path, "w") as f:
            f.write(text)
        out.metadata["kind"] = type(out).__name__


@dsl.component
def check_all(
    artifact: Input[Artifact],
    dataset: Input[Dataset],
    model: Input[Model],
    html: Input[HTML],
    markdown: Input[Markdown],
) -> list:
    from kfp.dsl import HTML, Artifact, Dataset, Markdown, Model

    seen = []
    for obj, cls in [
        (artifact, Artifact),
        (dataset, Dataset),
        (model, Model),
        (html, HTML),
        (markdown, Markdown),
    ]:
        assert type(obj) is cls, (type(obj), cls)
        with open(obj.path) as f:
            seen.append([obj.metadata["kind"], f.read()])
    return seen


def test_each_artifact_type_round_trips():
    @dsl.pipeline(name="artifact-types")
    def p() -> list:
        m = make_all()
        return check_all(
            artifact=m.outputs["artifact"],
            dataset=m.outputs["dataset"],
            model=m.outputs["model"],
            html=m.outputs["html"],
            markdown=m.outputs["markdown"],
        ).output

    run = ketch.run(p)
    assert run.state == "SUCCEEDED", run.error
    assert run.outputs == {
        "Output": [
            ["Artifact", "artifact"],
            ["Dataset", "a,b\n1,2\n"],
            ["Model", "model-bytes"],
            ["HTML", "<h1>report</h1>"],
            ["Markdown", "# report"],
        ]
    }
    outs = run.tasks["make-all"].outputs
    expected_types = {
        "artifact": "system.Artifact",
        "dataset": "system.Dataset",
        "model": "system.Model",
        "html": "system.HTML",
        "markdown": "system.Markdown",
    }
    for name, schema in expected_types.items():
        [art] = outs[name]
        assert schema in str(art["type"]), (name, art["type"])


@dsl.component
def evaluate(
    metrics: Output[Metrics],
    classification: Output[ClassificationMetrics],
    sliced: Output[SlicedClassificationMetrics],
):
    metrics.log_metric("accuracy", 0.9)
    metrics.log_metric("f1", 0.8)
    metrics.log_metric("samples", 100)
    classification.log_confusion_matrix(["cat", "dog"], [[8, 2], [1, 9]])
    classification.log_roc_curve(
        fpr=[0.0, 0.5, 1.0], tpr=[0.0, 0.8, 1.0], threshold=[1.0, 0.5, 0.0]
    )
    if not hasattr(sliced, "_sliced_metrics"):
        sliced._sliced_metrics = {}  # kfp's executor skips SlicedClassificationMetrics.__init__
    # (kfp's sliced ROC helpers call methods ClassificationMetrics lacks; use the matrix ones)
    sliced.set_confusion_matrix_categories("cats", ["yes", "no"])
    sliced.log_confusion_matrix_row("cats", "yes", [3, 1])
    sliced.set_confusion_matrix_categories("dogs", ["yes", "no"])
    sliced.log_confusion_matrix_cell("dogs", "no", "no", 4)


def test_metrics_and_classification_metrics():
    @dsl.pipeline(name="metrics")
    def p():
        evaluate()

    run = ketch.run(p)
    assert run.state == "SUCCEEDED", run.error
    outs = run.tasks["evaluate"].outputs
    [metrics] = outs["metrics"]
    assert "system.Metrics" in str(metrics["type"])
    assert metrics["metadata"] == {"accuracy": 0.9, "f1": 0.8, "samples": 100}

    [classification] = outs["classification"]
    assert "system.ClassificationMetrics" in str(classification["type"])
    matrix = classification["metadata"]["confusionMatrix"]
    assert [c["displayName"] for c in matrix["annotationSpecs"]] == ["cat", "dog"]
    assert [row["row"] for row in matrix["rows"]] == [[8, 2], [1, 9]]
    roc = classification["metadata"]["confidenceMetrics"]
    assert [r["falsePositiveRate"] for r in roc] == [0.0, 0.5, 1.0]
    assert [r["recall"] for r in roc] == [0.0, 0.8, 1.0]
    assert [r["confidenceThreshold"] for r in roc] == [1.0, 0.5, 0.0]

    [sliced] = outs["sliced"]
    assert "system.SlicedClassificationMetrics" in str(sliced["type"])
    assert sliced["metadata"], "sliced metrics metadata is empty"
    assert "cats" in json.dumps(sliced["metadata"]) and "dogs" in json.dumps(sliced["metadata"])


@dsl.component
def read_metrics(metrics: Input[Metrics], classification: Input[ClassificationMetrics]) -> float:
    rows = classification.metadata["confusionMatrix"]["rows"]
    assert rows[0]["row"] == [8, 2]
    return metrics.metadata["accuracy"]


def test_metrics_reach_downstream_tasks():
    @dsl.pipeline(name="metrics-downstream")
    def p() -> float:
        e = evaluate()
        return read_metrics(
            metrics=e.outputs["metrics"], classification=e.outputs["classification"]
        ).output

    run = ketch.run(p)
    assert run.state == "SUCCEEDED", run.error
    assert run.outputs == {"Output": 0.9}


@dsl.component
def one_model(seed: int, model: Output[Model]):
    with open(model.path, "w") as f:
        f.write(f"model-{seed}")
    model.metadata["seed"] = seed


@dsl.component
def pick_best(models: Input[list[Model]]) -> str:
    from kfp.dsl import Model

    assert all(type(m) is Model for m in models)
    assert all(type(m.metadata["seed"]) is int for m in models)
    best = max(models, key=lambda m: m.metadata["seed"])
    with open(best.path) as f:
        return f.read()


def test_list_of_artifacts_via_collected():
    @dsl.pipeline(name="list-of-artifacts")
    def p() -> str:
        with dsl.ParallelFor([3, 1, 2]) as seed:
            m = one_model(seed=seed)
        return pick_best(models=dsl.Collected(m.outputs["model"])).output

    run = ketch.run(p)
    assert run.state == "SUCCEEDED", run.error
    assert run.outputs == {"Output": "model-3"}
    models = run.tasks["pick-best"].inputs["models"]
    assert sorted(m["metadata"]["seed"] for m in models) == [1, 2, 3]


@dsl.component
def pythonic_dataset(text: str) -> Dataset:
    import os

    from kfp import dsl
    from kfp.dsl import Dataset

    dataset = Dataset(uri=dsl.get_uri(), metadata={"source": "pythonic"})
    os.makedirs(os.path.dirname(dataset.path), exist_ok=True)
    with open(dataset.path, "w") as f:
        f.write(text)
    return dataset


@dsl.component
def pythonic_reader(data: Dataset) -> str:
    with open(data.path) as f:
        return f"{f.read()}/{data.metadata['source']}"


def test_pythonic_artifact_return_and_input():
    @dsl.pipeline(name="pythonic-artifacts")
    def p(text: str = "made") -> str:
        d = pythonic_dataset(text=text)
        return pythonic_reader(data=d.output).output

    run = ketch.run(p)
    assert run.state == "SUCCEEDED", run.error
    assert run.outputs == {"Output": "made/pythonic"}
    [art] = run.tasks["pythonic-dataset"].outputs["Output"]
    assert art["metadata"] == {"source": "pythonic"}
    assert local_path(art["uri"]).read_text() == "made"


@dsl.component
def custom_path_writer(text: str, scratch: str, out: Output[Dataset]):
    import os

    out.custom_path = os.path.join(scratch, "custom-output.txt")
    os.makedirs(scratch, exist_ok=True)
    with open(out.custom_path, "w") as f:
        f.write(text)


@dsl.component
def plain_reader(data: Input[Dataset]) -> str:
    with open(data.path) as f:
        return f.read()


def test_custom_output_path_is_uploaded(tmp_path):
    """kfp 2.17: an output artifact may be written to ``custom_path``; the backend stores it."""
    scratch = tmp_path / "scratch"

    @dsl.pipeline(name="custom-path")
    def p(scratch: str) -> str:
        w = custom_path_writer(text="from custom path", scratch=scratch)
        return plain_reader(data=w.outputs["out"]).output

    run = ketch.run(p, arguments={"scratch": str(scratch)})
    assert run.state == "SUCCEEDED", run.error
    assert run.outputs == {"Output": "from custom path"}
    [art] = run.tasks["custom-path-writer"].outputs["out"]
    assert local_path(art["uri"]).read_text() == "from custom path"
    assert Path(art["uri"]) != scratch / "custom-output.txt"
