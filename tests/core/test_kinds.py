"""Kinds: names, printer columns and categories, and their JSON form (what the CLI
reads from the server's kind list)."""

from __future__ import annotations

import pytest

from ketch.capabilities import CAPABILITIES
from ketch.core.capability import kinds_of
from ketch.core.errors import InvalidSpec, NotFound
from ketch.core.kinds import (
    AGE,
    READ_VERBS,
    VERBS,
    Column,
    Kind,
    collection_path,
    object_path,
    registry_of,
)


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


def test_core_group_paths() -> None:
    secret = Kind("Secret", "", ("v1",), "secrets")
    namespace = Kind("Namespace", "", ("v1",), "namespaces", namespaced=False)
    assert collection_path(secret, "team-a") == "/api/v1/namespaces/team-a/secrets"
    assert collection_path(secret, None) == "/api/v1/secrets"
    assert object_path(secret, "team-a", "s") == "/api/v1/namespaces/team-a/secrets/s"
    # a cluster-scoped core kind is addressed without a namespace, whatever is passed
    assert object_path(namespace, "default", "team-a") == "/api/v1/namespaces/team-a"
    assert collection_path(namespace, None) == "/api/v1/namespaces"
    job = Kind("PyTorchJob", "kubeflow.org", ("v1",), "pytorchjobs")
    assert collection_path(job, "a") == "/apis/kubeflow.org/v1/namespaces/a/pytorchjobs"


def test_a_kind_name_in_two_groups() -> None:
    core = Kind("Event", "", ("v1",), "events", short_names=("ev",))
    events = Kind("Event", "events.k8s.io", ("v1",), "events")
    registry = registry_of([core, events])
    assert len(registry) == 2 and list(registry) == [core, events]
    assert registry.lookup("events") is core and registry.lookup("ev") is core  # first wins
    assert registry.for_path("", "v1", "events") is core
    assert registry.for_path("events.k8s.io", "v1", "events") is events
    assert registry.for_manifest("v1", "Event") is core
    assert registry.for_manifest("events.k8s.io/v1", "Event") is events
    with pytest.raises(InvalidSpec, match="not served at apiVersion"):
        registry.for_manifest("events.k8s.io/v2", "Event")
    with pytest.raises(NotFound, match="core group"):
        registry.for_path("", "v1", "gizmos")
    with pytest.raises(ValueError, match="already names kind Event"):
        registry.register(Kind("Other", "x.dev", ("v1",), "others", short_names=("ev",)))


def test_verbs_and_subresources_round_trip() -> None:
    kind = Kind("Event", "", ("v1",), "events", verbs=READ_VERBS, subresources=())
    back = Kind.from_json(kind.to_json())
    assert back.verbs == ("get", "list", "watch") and back.subresources == ()
    assert Kind.from_json(Kind("W", "x.dev", ("v1",), "ws").to_json()).verbs == VERBS
    assert Kind("W", "x.dev", ("v1",), "ws").subresources == ("status",)
