"""Finding the line of a field the API names in the YAML a user edited."""

from __future__ import annotations

import pytest

from ketch.ui.yamledit import YamlProblem, errors_of, line_of, parse, path_steps

DOCUMENT = """\
apiVersion: kubeflow.org/v1
kind: PyTorchJob
metadata:
  name: job
  labels:
    app.kubernetes.io/name: trainer
spec:
  pytorchReplicaSpecs:
    Master:
      replicas: -1
      template:
        spec:
          containers:
          - name: pytorch
            image: ''
"""


def test_path_steps_read_kubernetes_field_paths() -> None:
    assert path_steps("spec.containers[0].image") == ["spec", "containers", 0, "image"]
    assert path_steps("metadata.labels[app.kubernetes.io/name]") == [
        "metadata",
        "labels",
        "app.kubernetes.io/name",
    ]


@pytest.mark.parametrize(
    ("field", "line"),
    [
        ("spec.pytorchReplicaSpecs.Master.replicas", 10),
        ("spec.pytorchReplicaSpecs.Master.template.spec.containers[0].image", 15),
        ("spec.pytorchReplicaSpecs.Master.template.spec.containers[0]", 14),
        ("metadata.labels[app.kubernetes.io/name]", 6),
        # a field that is not there: its parent's line
        ("spec.pytorchReplicaSpecs.Worker.replicas", 8),
        ("spec.pytorchReplicaSpecs.Master.template.spec.containers[3].image", 13),
        ("status.conditions", 0),
    ],
)
def test_line_of_a_field(field: str, line: int) -> None:
    assert line_of(DOCUMENT, field) == line


def test_parse_says_where_the_yaml_breaks() -> None:
    with pytest.raises(YamlProblem) as refused:
        parse("spec:\n  a: [1, 2\n")
    assert refused.value.errors[0].line >= 2 and "does not parse" in refused.value.errors[0].message
    with pytest.raises(YamlProblem, match="one object"):
        parse("- 1\n- 2\n")


def test_errors_of_a_refusal_name_each_field_or_the_message() -> None:
    causes = [{"field": "spec.pytorchReplicaSpecs.Master.replicas", "message": "must be >= 0"}]
    found = errors_of(DOCUMENT, 422, "invalid", causes)
    assert [(e.field, e.line, e.message) for e in found] == [
        ("spec.pytorchReplicaSpecs.Master.replicas", 10, "must be >= 0")
    ]
    assert [(e.field, e.line) for e in errors_of(DOCUMENT, 409, "conflict", [])] == [("", 0)]
