"""The resource envelope: Kubernetes field names, name rules, conditions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ketch.core.errors import InvalidSpec
from ketch.core.resource import (
    Condition,
    Resource,
    format_time,
    get_condition,
    set_condition,
    validate_name,
    validate_namespace,
)

MANIFEST: dict[str, Any] = {
    "apiVersion": "kubeflow.org/v1",
    "kind": "PyTorchJob",
    "metadata": {
        "name": "mnist.v2",
        "namespace": "team-a",
        "labels": {"app": "mnist"},
        "annotations": {"note": "x"},
    },
    "spec": {"pytorchReplicaSpecs": {"Master": {"replicas": 1}}},
}


def test_manifest_round_trips_with_kubernetes_field_names() -> None:
    resource = Resource.from_manifest(MANIFEST)
    assert resource.key == ("team-a", "mnist.v2")
    assert resource.metadata.labels == {"app": "mnist"}
    out = resource.to_manifest()
    assert out == {**MANIFEST, "status": {}}
    assert "resourceVersion" not in out["metadata"]  # unset fields are left out


def test_namespace_defaults_to_default() -> None:
    resource = Resource.from_manifest({**MANIFEST, "metadata": {"name": "x"}})
    assert resource.metadata.namespace == "default"


def test_unknown_metadata_fields_are_kept() -> None:
    manifest = {**MANIFEST, "metadata": {**MANIFEST["metadata"], "finalizers": ["a/b"]}}
    assert Resource.from_manifest(manifest).to_manifest()["metadata"]["finalizers"] == ["a/b"]


def test_timestamps_serialise_as_rfc3339_utc() -> None:
    when = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
    manifest = {**MANIFEST, "metadata": {"name": "x", "creationTimestamp": "2024-05-01T12:00:00Z"}}
    resource = Resource.from_manifest(manifest)
    assert resource.metadata.creationTimestamp == when
    assert resource.to_manifest()["metadata"]["creationTimestamp"] == "2024-05-01T12:00:00Z"
    assert (
        format_time(datetime(2024, 5, 1, 14, 0, tzinfo=UTC).astimezone()) == "2024-05-01T14:00:00Z"
    )


@pytest.mark.parametrize("name", ["a", "my-job", "train.v2", "a" * 253, "0abc", "x-1.y-2"])
def test_valid_names(name: str) -> None:
    assert validate_name(name) == name


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        ("", "required"),
        ("My-Job", "RFC 1123 subdomain"),
        ("my_job", "RFC 1123 subdomain"),
        ("-job", "RFC 1123 subdomain"),
        ("job-", "RFC 1123 subdomain"),
        ("a..b", "RFC 1123 subdomain"),
        ("a" * 254, "at most 253"),
    ],
)
def test_invalid_names_name_the_field_and_rule(name: str, rule: str) -> None:
    manifest = {**MANIFEST, "metadata": {"name": name}}
    with pytest.raises(InvalidSpec) as info:
        Resource.from_manifest(manifest)
    assert info.value.field == "metadata.name"
    assert str(info.value).startswith("metadata.name: ")
    assert rule in str(info.value)


@pytest.mark.parametrize(
    ("namespace", "ok"),
    [("default", True), ("team-a", True), ("a.b", False), ("A", False), ("a" * 64, False)],
)
def test_namespaces_are_dns_labels(namespace: str, ok: bool) -> None:
    if ok:
        assert validate_namespace(namespace) == namespace
        return
    with pytest.raises(InvalidSpec) as info:
        Resource.from_manifest({**MANIFEST, "metadata": {"name": "x", "namespace": namespace}})
    assert info.value.field == "metadata.namespace"
    assert "RFC 1123 label" in str(info.value)


def test_structural_errors_become_invalid_spec_naming_the_field() -> None:
    with pytest.raises(InvalidSpec) as info:
        Resource.from_manifest({"apiVersion": "v1", "kind": "X", "metadata": {}})
    assert info.value.field == "metadata.name"
    with pytest.raises(InvalidSpec) as info:
        Resource.from_manifest({**MANIFEST, "spec": ["not", "a", "mapping"]})
    assert info.value.field == "spec"
    with pytest.raises(InvalidSpec, match="mapping"):
        Resource.from_manifest(["x"])  # type: ignore[arg-type]
    with pytest.raises(InvalidSpec) as info:
        Resource.from_manifest({**MANIFEST, "kind": ""})
    assert info.value.field == "kind"


def test_set_condition_bumps_transition_time_only_on_status_change() -> None:
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    status: dict[str, Any] = {}
    assert set_condition(status, "Running", "False", "Pending", "waiting", now=t0) is True
    assert status["conditions"] == [
        {
            "type": "Running",
            "status": "False",
            "reason": "Pending",
            "message": "waiting",
            "lastTransitionTime": "2024-01-01T00:00:00Z",
        }
    ]
    # same status, new message: time kept
    t1 = t0 + timedelta(minutes=1)
    assert set_condition(status, "Running", "False", "Pending", "still waiting", now=t1) is True
    assert get_condition(status, "Running") == {
        "type": "Running",
        "status": "False",
        "reason": "Pending",
        "message": "still waiting",
        "lastTransitionTime": "2024-01-01T00:00:00Z",
    }
    # nothing changed at all
    assert set_condition(status, "Running", "False", "Pending", "still waiting", now=t1) is False
    # status flips: time moves
    t2 = t0 + timedelta(minutes=2)
    assert set_condition(status, "Running", "True", "Started", "", now=t2) is True
    assert status["conditions"][0]["lastTransitionTime"] == "2024-01-01T00:02:00Z"
    # a second condition is appended, the first untouched
    set_condition(status, "Succeeded", "Unknown", now=t2, observed_generation=3)
    assert [c["type"] for c in status["conditions"]] == ["Running", "Succeeded"]
    assert status["conditions"][1]["observedGeneration"] == 3
    assert get_condition(status, "Missing") is None
    # with last, a condition that changes moves to the end; one that does not stays
    assert set_condition(status, "Running", "False", "Done", now=t2, last=True) is True
    assert [c["type"] for c in status["conditions"]] == ["Succeeded", "Running"]
    unchanged = set_condition(
        status, "Succeeded", "Unknown", now=t2, observed_generation=3, last=True
    )
    assert unchanged is False
    assert [c["type"] for c in status["conditions"]] == ["Succeeded", "Running"]


def test_conditions_parse_into_models() -> None:
    status: dict[str, Any] = {}
    set_condition(status, "Ready", "True", "Up", "serving")
    resource = Resource.from_manifest({**MANIFEST, "status": status})
    ready = resource.condition("Ready")
    assert isinstance(ready, Condition)
    assert ready.status == "True" and ready.reason == "Up"
    assert ready.lastTransitionTime is not None and ready.lastTransitionTime.tzinfo is not None
    assert resource.condition("Nope") is None


def test_condition_status_must_be_kubernetes_values() -> None:
    with pytest.raises(InvalidSpec, match="'True', 'False' or 'Unknown'"):
        set_condition({}, "Ready", "yes")  # type: ignore[arg-type]
    with pytest.raises(InvalidSpec) as info:
        Resource.from_manifest(
            {**MANIFEST, "status": {"conditions": [{"type": "Ready", "status": "yes"}]}}
        ).conditions()
    assert info.value.field == "status.conditions[0].status"
