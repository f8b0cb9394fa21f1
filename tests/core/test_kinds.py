"""Kinds: names, printer columns and categories, and their JSON form (what the CLI
reads from the server's kind list)."""

from __future__ import annotations

import pytest

from ketch.capabilities import CAPABILITIES
from ketch.core.capability import kinds_of
from ketch.core.errors import NotFound
from ketch.core.kinds import AGE, Column, Kind, registry_of


def test_a_kind_without_columns_shows_age_as_kubernetes_does() -> None:
    kind = Kind("Widget", "example.dev", ("v1",), "widgets")
    assert kind.columns == (AGE,)
    assert kind.columns[0].to_json() == {
        "name": "Age",
        "type": "date",
        "jsonPath": ".metadata.creationTimestamp",
    }


def test_columns_end_with_age_once() -> None:
    state = Column("State", ".status.conditions[-1:].type")
    kind = Kind("Widget", "example.dev", ("v1",), "widgets", columns=(state,))
    assert [c.name for c in kind.columns] == ["State", "Age"]
    again = Kind("Widget", "example.dev", ("v1",), "widgets", columns=kind.columns)
    assert again.columns == kind.columns


def test_json_round_trip_keeps_columns_and_categories() -> None:
    kind = Kind(
        "Widget",
        "example.dev",
        ("v1", "v1beta1"),
        "widgets",
        short_names=("wd",),
        columns=(Column("Wide", ".spec.x", "integer", "a wide one", priority=1),),
        categories=("all", "examples"),
    )
    assert Kind.from_json(kind.to_json()) == kind


def test_every_served_kind_has_kubeflows_columns() -> None:
    kinds = kinds_of(CAPABILITIES)
    columns = {k.kind: [c.name for c in k.columns] for k in kinds}
    for job in ("PyTorchJob", "TFJob", "XGBoostJob", "MPIJob", "JAXJob", "PaddleJob", "MXJob"):
        assert columns[job] == ["State", "Age"]
        assert kinds.lookup(job).categories == ("all", "kubeflow")
    assert columns["Experiment"] == ["Type", "Status", "Age"]
    assert columns["Suggestion"] == ["Type", "Status", "Requested", "Assigned", "Age"]
    assert columns["InferenceService"][:2] == ["URL", "Ready"]
    assert columns["TrainJob"] == ["State", "Age"]
    assert kinds.lookup("isvc").kind == "InferenceService"
    assert not kinds.lookup("clustertrainingruntimes").namespaced


def test_unknown_names_suggest_close_ones() -> None:
    kinds = registry_of([Kind("PyTorchJob", "kubeflow.org", ("v1",), "pytorchjobs")])
    with pytest.raises(NotFound, match="did you mean PyTorchJob"):
        kinds.lookup("pytorchjob2")
