"""dsl.importer: bringing an existing file into a pipeline as an artifact."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Model

import ketch


@dsl.component
def read_text(data: Input[Dataset]) -> str:
    with open(data.path) as f:
        return f.read()


@dsl.component
def read_metadata(model: Input[Model]) -> dict:
    return dict(model.metadata)


def test_importer_feeds_downstream(tmp_path):
    source = tmp_path / "data.csv"
    source.write_text("a,b\n1,2\n")

    @dsl.pipeline(name="importer")
    def p(uri: str) -> str:
        imported = dsl.importer(artifact_uri=uri, artifact_class=Dataset, reimport=False)
        return read_text(data=imported.output).output

    run = ketch.run(p, arguments={"uri": str(source)})
    assert run.state == "SUCCEEDED", run.error
    assert run.outputs == {"Output": "a,b\n1,2\n"}
    importer = run.tasks["importer"]
    assert importer.type == "importer"
    assert importer.state == "SUCCEEDED"
    [artifact] = importer.outputs["artifact"]
    assert artifact["uri"] == str(source)
    assert "system.Dataset" in str(artifact["type"])
    # the importer does not copy: the consumer read the original file
    [consumed] = run.tasks["read-text"].inputs["data"]
    assert consumed["uri"] == str(source)


def test_importer_metadata_and_constant_uri(tmp_path):
    source = tmp_path / "model.bin"
    source.write_bytes(b"\x00\x01")

    @dsl.pipeline(name="importer-metadata")
    def p(version: str = "v3") -> dict:
        imported = dsl.importer(
            artifact_uri=str(source),
            artifact_class=Model,
            metadata={"framework": "sklearn", "version": version, "layers": 2},
        )
        return read_metadata(model=imported.output).output

    run = ketch.run(p)
    assert run.state == "SUCCEEDED", run.error
    assert run.outputs == {"Output": {"framework": "sklearn", "version": "v3", "layers": 2}}
    [artifact] = run.tasks["importer"].outputs["artifact"]
    assert artifact["metadata"]["framework"] == "sklearn"
    assert artifact["metadata"]["version"] == "v3"
    assert "system.Model" in str(artifact["type"])


@dsl.pipeline(name="importer-reimport")
def import_twice(uri: str) -> str:
    imported = dsl.importer(artifact_uri=uri, artifact_class=Dataset, reimport=False)
    return read_text(data=imported.output).output


@dsl.pipeline(name="importer-always-reimport")
def import_always(uri: str) -> str:
    imported = dsl.importer(artifact_uri=uri, artifact_class=Dataset, reimport=True)
    return read_text(data=imported.output).output


def test_importer_without_reimport_runs_twice(tmp_path):
    source = tmp_path / "data.txt"
    source.write_text("same")
    first = ketch.run(import_twice, arguments={"uri": str(source)}, enable_caching=False)
    second = ketch.run(import_twice, arguments={"uri": str(source)}, enable_caching=False)
    assert first.state == second.state == "SUCCEEDED"
    [a1] = first.tasks["importer"].outputs["artifact"]
    [a2] = second.tasks["importer"].outputs["artifact"]
    assert a1["uri"] == a2["uri"] == str(source)
    assert first.outputs == second.outputs == {"Output": "same"}


def test_importer_with_reimport_runs_twice(tmp_path):
    source = tmp_path / "data.txt"
    source.write_text("again")
    first = ketch.run(import_always, arguments={"uri": str(source)}, enable_caching=False)
    second = ketch.run(import_always, arguments={"uri": str(source)}, enable_caching=False)
    assert first.state == second.state == "SUCCEEDED"
    [a1] = first.tasks["importer"].outputs["artifact"]
    [a2] = second.tasks["importer"].outputs["artifact"]
    assert a1["uri"] == a2["uri"] == str(source)
    assert second.outputs == {"Output": "again"}
