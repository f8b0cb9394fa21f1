"""The patch types and field ownership as functions: strategic merge patch directives,
JSON patch errors, the patch type a Content-Type names, FieldsV1 trees and apply."""

from __future__ import annotations

from typing import Any

import pytest

from ketch.core.errors import InvalidSpec
from ketch.core.kinds import Kind
from ketch.server import fieldmanager
from ketch.server.patches import (
    PatchFailed,
    UnsupportedMediaType,
    json_patch,
    patch_type,
    strategic_merge_patch,
)

CRD = Kind("PyTorchJob", "kubeflow.org", ("v1",), "pytorchjobs")
BUILT_IN = Kind("Job", "batch", ("v1",), "jobs")


def pod(*containers: dict[str, Any]) -> dict[str, Any]:
    return {"spec": {"containers": list(containers)}, "metadata": {"finalizers": ["a"]}}


def test_strategic_merge_patch_merges_lists_by_key_and_honours_directives() -> None:
    current = pod({"name": "a", "image": "x", "env": [{"name": "E", "value": "1"}]}, {"name": "b"})
    merged = strategic_merge_patch(
        current,
        {
            "spec": {
                "containers": [{"name": "b", "image": "y"}, {"name": "c"}],
                "$setElementOrder/containers": [{"name": "c"}, {"name": "b"}, {"name": "a"}],
            },
            "metadata": {"finalizers": ["b", "a"]},
        },
    )
    assert [c["name"] for c in merged["spec"]["containers"]] == ["c", "b", "a"]
    assert merged["spec"]["containers"][1] == {"name": "b", "image": "y"}
    assert merged["metadata"]["finalizers"] == ["a", "b"]

    deleted = strategic_merge_patch(
        current, {"spec": {"containers": [{"name": "a", "$patch": "delete"}]}}
    )
    assert [c["name"] for c in deleted["spec"]["containers"]] == ["b"]
    replaced = strategic_merge_patch(
        current, {"spec": {"containers": [{"name": "z"}, {"$patch": "replace"}]}}
    )
    assert replaced["spec"]["containers"] == [{"name": "z"}]
    retained = strategic_merge_patch(
        {"spec": {"a": 1, "b": 2}}, {"spec": {"c": 3, "$retainKeys": ["a", "c"]}}
    )
    assert retained["spec"] == {"a": 1, "c": 3}
    pruned = strategic_merge_patch(
        current, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}
    )
    assert pruned["metadata"]["finalizers"] == []
    map_replaced = strategic_merge_patch(
        {"spec": {"a": {"x": 1, "y": 2}}}, {"spec": {"a": {"z": 3, "$patch": "replace"}}}
    )
    assert map_replaced["spec"]["a"] == {"z": 3}
    with pytest.raises(InvalidSpec, match="merge key"):
        strategic_merge_patch(current, {"spec": {"containers": [{"image": "no-name"}]}})
    with pytest.raises(InvalidSpec, match=r"\$bogus"):
        strategic_merge_patch(current, {"spec": {"$bogus": 1}})


def test_patch_types_by_content_type() -> None:
    assert patch_type("application/merge-patch+json", CRD) == "merge"
    assert patch_type("application/json; charset=utf-8", CRD) == "merge"
    assert patch_type("application/json-patch+json", CRD) == "json"
    assert patch_type("application/apply-patch+yaml", CRD) == "apply"
    assert patch_type("application/strategic-merge-patch+json", BUILT_IN) == "strategic"
    with pytest.raises(UnsupportedMediaType, match="custom resource"):
        patch_type("application/strategic-merge-patch+json", CRD)
    with pytest.raises(UnsupportedMediaType, match="text/plain"):
        patch_type("text/plain", CRD)


def test_json_patch_errors() -> None:
    document = {"spec": {"a": [1]}}
    assert json_patch(document, [{"op": "move", "from": "/spec/a", "path": "/spec/b"}]) == {
        "spec": {"b": [1]}
    }
    assert document == {"spec": {"a": [1]}}  # not changed in place
    with pytest.raises(PatchFailed):
        json_patch(document, [{"op": "test", "path": "/spec/a", "value": [2]}])
    with pytest.raises(PatchFailed):
        json_patch(document, [{"op": "replace", "path": "/spec/missing/x", "value": 1}])
    with pytest.raises(InvalidSpec, match="body"):
        json_patch(document, [{"path": "/spec"}])


def test_fields_v1_round_trip() -> None:
    paths = {("f:spec", "f:replicas"), ("f:metadata", "f:labels", "f:app"), ("f:spec", "f:x")}
    tree = fieldmanager.to_fields_v1(paths)
    assert tree == {
        "f:metadata": {"f:labels": {"f:app": {}}},
        "f:spec": {"f:replicas": {}, "f:x": {}},
    }
    assert fieldmanager.from_fields_v1(tree) == paths
    marked = {"f:spec": {".": {}, "f:a": {}}}
    assert fieldmanager.from_fields_v1(marked) == {("f:spec",), ("f:spec", "f:a")}
    assert fieldmanager.path_text(("f:spec", "f:replicas")) == ".spec.replicas"


def test_manager_names() -> None:
    assert fieldmanager.manager_name(None, "kubectl/v1.32.0 (linux/amd64)") == "kubectl"
    assert fieldmanager.manager_name("mine", "kubectl/v1.32.0") == "mine"
    with pytest.raises(InvalidSpec, match="fieldManager"):
        fieldmanager.manager_name(None, "kubectl/v1.32.0", apply=True)
    with pytest.raises(InvalidSpec, match="fieldManager"):
        fieldmanager.manager_name("x" * 129, None)


def test_apply_then_update_move_ownership() -> None:
    config = {"apiVersion": "v1", "kind": "X", "metadata": {"name": "o"}, "spec": {"a": 1, "b": 2}}
    result, entries = fieldmanager.apply(
        [], None, config, manager="one", api_version="v1", force=False
    )
    assert result["spec"] == {"a": 1, "b": 2}
    changed = {**result, "spec": {"a": 5, "b": 2, "c": 3}}
    entries = fieldmanager.update(entries, result, changed, manager="editor", api_version="v1")
    owned = {(e.manager, e.operation): e.fields for e in entries}
    assert owned[("one", "Apply")] == {("f:spec", "f:b")}
    assert owned[("editor", "Update")] == {("f:spec", "f:a"), ("f:spec", "f:c")}
    # "one" applies a again: the editor owns it with another value
    with pytest.raises(fieldmanager.ApplyConflict) as conflict:
        fieldmanager.apply(entries, changed, config, manager="one", api_version="v1", force=False)
    assert str(conflict.value).startswith(
        'Apply failed with 1 conflict: conflict with "editor" using v1: .spec.a'
    )
