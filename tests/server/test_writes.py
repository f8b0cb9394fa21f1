"""The write side of the resource API over real HTTP: dryRun, fieldValidation, the patch
types, server-side apply, read-only metadata sent back, optimistic concurrency,
cluster-scoped kinds, field selectors and set-based label selectors."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.server.fixtures import job, jobs_path, runtime, runtimes_path
from tests.server.helpers import assert_status, object_path

MERGE = {"content-type": "application/merge-patch+json"}
JSON_PATCH = {"content-type": "application/json-patch+json"}
STRATEGIC = {"content-type": "application/strategic-merge-patch+json"}
APPLY = {"content-type": "application/apply-patch+yaml"}
CLUSTER_RUNTIMES = "/apis/trainer.kubeflow.org/v1alpha1/clustertrainingruntimes"


def batch_jobs_path(ns: str, name: str | None = None) -> str:
    return object_path("/apis/batch/v1", ns, "jobs", name)


def batch_job(name: str) -> dict[str, Any]:
    """A suspended batch/v1 Job (nothing runs)."""
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "suspend": True,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "main",
                            "image": "python",
                            "command": ["true"],
                            "env": [{"name": "A", "value": "1"}],
                        }
                    ],
                }
            },
        },
    }


def names(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [item["metadata"]["name"] for item in response.json()["items"]]


def test_dry_run_checks_and_answers_but_stores_nothing(client: httpx.Client, ns: str) -> None:
    dry = client.post(jobs_path(ns), params={"dryRun": "All"}, json=job("dry"))
    assert dry.status_code == 201, dry.text
    meta = dry.json()["metadata"]
    assert meta["name"] == "dry" and meta["uid"] and meta["generation"] == 1
    assert_status(client.get(jobs_path(ns, "dry")), 404, "NotFound")
    # validated as a real create is
    invalid = job("bad", spec={"pytorchReplicaSpecs": {}})
    assert_status(client.post(jobs_path(ns), params={"dryRun": "All"}, json=invalid), 422)

    # a TrainingRuntime: no controller writes its status, so its version stays put
    stored = client.post(runtimes_path(ns), json=runtime("real", labels={"a": "1"})).json()
    version = stored["metadata"]["resourceVersion"]
    patched = client.patch(
        runtimes_path(ns, "real"),
        params={"dryRun": "All"},
        json={"metadata": {"labels": {"a": "2"}}, "spec": {"x": 2}},
        headers=MERGE,
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["metadata"]["labels"] == {"a": "2"}
    assert patched.json()["metadata"]["generation"] == 2
    replaced = client.put(
        runtimes_path(ns, "real"), params={"dryRun": "All"}, json=runtime("real", labels={"b": "3"})
    )
    assert replaced.status_code == 200 and replaced.json()["metadata"]["labels"] == {"b": "3"}
    assert_status(  # a dry-run create of what exists is refused as a create is
        client.post(runtimes_path(ns), params={"dryRun": "All"}, json=runtime("real")),
        409,
        "AlreadyExists",
    )
    deleted = client.delete(runtimes_path(ns, "real"), params={"dryRun": "All"})
    assert deleted.status_code == 200 and deleted.json()["metadata"]["name"] == "real"
    options = {"apiVersion": "v1", "kind": "DeleteOptions", "dryRun": ["All"]}
    in_body = client.request("DELETE", runtimes_path(ns, "real"), json=options)
    assert in_body.status_code == 200, in_body.text

    now = client.get(runtimes_path(ns, "real")).json()
    assert now["metadata"]["resourceVersion"] == version
    assert now["metadata"]["labels"] == {"a": "1"} and now["metadata"]["generation"] == 1

    message = assert_status(
        client.post(jobs_path(ns), params={"dryRun": "Server"}, json=job("x")), 400, "BadRequest"
    )
    assert "dryRun" in message and '"All"' in message
    assert_status(
        client.delete(runtimes_path(ns, "real"), params={"dryRun": "yes"}),
        400,
        "BadRequest",
        "dryRun",
    )


def test_field_validation_modes(client: httpx.Client, ns: str) -> None:
    bogus = job("strict", spec={"bogusField": 1})
    bogus["metadata"]["bogusMeta"] = "x"
    message = assert_status(
        client.post(jobs_path(ns), params={"fieldValidation": "Strict"}, json=bogus),
        400,
        "BadRequest",
        "strict decoding error",
    )
    assert 'unknown field "spec.bogusField"' in message
    assert 'unknown field "metadata.bogusMeta"' in message

    bogus["metadata"]["name"] = "warned"
    warned = client.post(jobs_path(ns), params={"fieldValidation": "Warn"}, json=bogus)
    assert warned.status_code == 201, warned.text
    warnings = warned.headers.get_list("warning")
    assert '299 - "unknown field \\"spec.bogusField\\""' in warnings, warnings
    assert "bogusField" not in warned.json()["spec"]

    bogus["metadata"]["name"] = "default"
    default = client.post(jobs_path(ns), json=bogus)  # no parameter: Warn, as Kubernetes does
    assert default.status_code == 201 and len(default.headers.get_list("warning")) == 2
    assert "bogusField" not in client.get(jobs_path(ns, "default")).json()["spec"]

    bogus["metadata"]["name"] = "ignored"
    ignored = client.post(jobs_path(ns), params={"fieldValidation": "Ignore"}, json=bogus)
    assert ignored.status_code == 201 and not ignored.headers.get_list("warning")
    assert "bogusField" not in ignored.json()["spec"]

    # fields Ketch's models keep (free-form below the spec's top level) are not unknown
    kept = job("kept", spec={"runPolicy": {"suspend": True, "schedulingPolicy": {"queue": "q"}}})
    response = client.post(jobs_path(ns), params={"fieldValidation": "Strict"}, json=kept)
    assert response.status_code == 201, response.text
    assert response.json()["spec"]["runPolicy"]["schedulingPolicy"] == {"queue": "q"}

    # on patches too
    assert_status(
        client.patch(
            jobs_path(ns, "kept"),
            params={"fieldValidation": "Strict"},
            json={"spec": {"other": 1}},
            headers=MERGE,
        ),
        400,
        "BadRequest",
        'unknown field "spec.other"',
    )
    assert_status(
        client.post(jobs_path(ns), params={"fieldValidation": "strict"}, json=job("x")),
        400,
        "BadRequest",
        "fieldValidation",
    )


def test_json_patch(client: httpx.Client, ns: str) -> None:
    client.post(runtimes_path(ns), json=runtime("jp", labels={"a": "1"}, spec={"list": [1, 2]}))
    operations = [
        {"op": "test", "path": "/metadata/labels/a", "value": "1"},
        {"op": "add", "path": "/metadata/labels/b", "value": "2"},
        {"op": "remove", "path": "/metadata/labels/a"},
        {"op": "add", "path": "/spec/list/-", "value": 3},
        {"op": "replace", "path": "/spec/list/0", "value": 0},
        {"op": "copy", "from": "/spec/list", "path": "/spec/copied"},
    ]
    patched = client.patch(runtimes_path(ns, "jp"), json=operations, headers=JSON_PATCH)
    assert patched.status_code == 200, patched.text
    body = patched.json()
    assert body["metadata"]["labels"] == {"b": "2"}
    assert body["spec"] == {"list": [0, 2, 3], "copied": [0, 2, 3]}

    failed = [{"op": "test", "path": "/metadata/labels/b", "value": "9"}]
    assert_status(
        client.patch(runtimes_path(ns, "jp"), json=failed, headers=JSON_PATCH), 422, "Invalid"
    )
    missing = [{"op": "remove", "path": "/spec/nothing/here"}]
    assert_status(
        client.patch(runtimes_path(ns, "jp"), json=missing, headers=JSON_PATCH), 422, "Invalid"
    )
    assert_status(
        client.patch(runtimes_path(ns, "jp"), json={"op": "add"}, headers=JSON_PATCH),
        400,
        "BadRequest",
        "list of operations",
    )
    rename = [{"op": "replace", "path": "/metadata/name", "value": "other"}]
    assert_status(
        client.patch(runtimes_path(ns, "jp"), json=rename, headers=JSON_PATCH),
        422,
        "Invalid",
        "metadata.name",
    )
    assert client.get(runtimes_path(ns, "jp")).json()["spec"] == body["spec"]


def test_strategic_merge_patch(client: httpx.Client, ns: str) -> None:
    client.post(jobs_path(ns), json=job("crd"))
    message = assert_status(
        client.patch(jobs_path(ns, "crd"), json={"spec": {}}, headers=STRATEGIC),
        415,
        "UnsupportedMediaType",
    )
    assert "custom resource" in message and "application/merge-patch+json" in message
    assert_status(
        client.patch(jobs_path(ns, "crd"), json={}, headers={"content-type": "text/plain"}),
        415,
        "UnsupportedMediaType",
    )

    created = client.post(batch_jobs_path(ns), json=batch_job("built-in"))
    assert created.status_code == 201, created.text
    patch = {
        "metadata": {"labels": {"x": "y"}},
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "main",
                            "image": "python:3.12",
                            "env": [{"name": "B", "value": "2"}],
                        },
                        {"name": "side", "image": "busybox", "command": ["true"]},
                    ]
                }
            }
        },
    }
    patched = client.patch(batch_jobs_path(ns, "built-in"), json=patch, headers=STRATEGIC)
    assert patched.status_code == 200, patched.text
    containers = patched.json()["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["main", "side"]
    main = containers[0]
    assert main["image"] == "python:3.12" and main["command"] == ["true"]
    assert main["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
    delete = {
        "spec": {"template": {"spec": {"containers": [{"name": "side", "$patch": "delete"}]}}}
    }
    patched = client.patch(batch_jobs_path(ns, "built-in"), json=delete, headers=STRATEGIC)
    assert [c["name"] for c in patched.json()["spec"]["template"]["spec"]["containers"]] == ["main"]


def test_read_only_metadata_sent_back_is_accepted(client: httpx.Client, ns: str) -> None:
    client.post(runtimes_path(ns), json=runtime("echo", labels={"a": "1"}, spec={"n": 1}))
    read = client.get(runtimes_path(ns, "echo")).json()
    # what the Katib SDK sends: the whole object it read, the timestamp in Python's format
    read["metadata"]["creationTimestamp"] = "2026-01-02 03:04:05+00:00"
    read["metadata"]["labels"]["b"] = "2"
    read["spec"]["n"] = 4
    patched = client.patch(runtimes_path(ns, "echo"), json=read, headers=MERGE)
    assert patched.status_code == 200, patched.text
    body = patched.json()
    assert body["metadata"]["labels"] == {"a": "1", "b": "2"}
    assert body["spec"]["n"] == 4
    assert body["metadata"]["creationTimestamp"].endswith("Z")
    assert body["metadata"]["creationTimestamp"] != "2026-01-02T03:04:05Z"
    assert body["metadata"]["uid"] == read["metadata"]["uid"]

    # a PUT of what was read, read-only fields included, with a stale version: 409
    stale = dict(read)
    stale["metadata"] = {**read["metadata"], "generation": 99}
    assert_status(client.put(runtimes_path(ns, "echo"), json=stale), 409, "Conflict", "modified")
    fresh = client.get(runtimes_path(ns, "echo")).json()
    fresh["metadata"]["creationTimestamp"] = "yesterday"
    fresh["metadata"]["generation"] = 99
    fresh["spec"]["n"] = 5
    put = client.put(runtimes_path(ns, "echo"), json=fresh)
    assert put.status_code == 200, put.text
    assert put.json()["metadata"]["generation"] == 3
    # a patch that carries a stale resourceVersion: 409
    assert_status(
        client.patch(
            runtimes_path(ns, "echo"),
            json={"metadata": {"resourceVersion": read["metadata"]["resourceVersion"]}},
            headers=MERGE,
        ),
        409,
        "Conflict",
        "resourceVersion",
    )
    other_uid = {"metadata": {"uid": "0000"}}
    assert_status(client.patch(runtimes_path(ns, "echo"), json=other_uid, headers=MERGE), 409)


def test_server_side_apply(client: httpx.Client, ns: str) -> None:
    config = runtime("ssa", labels={"app": "a"}, spec={"x": 1, "y": {"z": 1}})
    body = json.dumps(config)
    assert_status(
        client.patch(runtimes_path(ns, "ssa"), content=body, headers=APPLY),
        400,
        "BadRequest",
        "fieldManager",
    )
    first = client.patch(
        runtimes_path(ns, "ssa"), params={"fieldManager": "one"}, content=body, headers=APPLY
    )
    assert first.status_code == 201, first.text
    entries = first.json()["metadata"]["managedFields"]
    assert [(e["manager"], e["operation"]) for e in entries] == [("one", "Apply")]
    assert entries[0]["fieldsV1"] == {
        "f:metadata": {"f:labels": {"f:app": {}}},
        "f:spec": {"f:x": {}, "f:y": {"f:z": {}}},
    }
    again = client.patch(
        runtimes_path(ns, "ssa"), params={"fieldManager": "one"}, content=body, headers=APPLY
    )
    assert again.status_code == 200
    assert (
        again.json()["metadata"]["resourceVersion"] == first.json()["metadata"]["resourceVersion"]
    )

    # another manager: a field of "one" with another value conflicts
    theirs = runtime("ssa", spec={"x": 2, "w": 1})
    conflict = client.patch(
        runtimes_path(ns, "ssa"),
        params={"fieldManager": "two"},
        content=json.dumps(theirs),
        headers=APPLY,
    )
    message = assert_status(conflict, 409, "Conflict", "Apply failed with 1 conflict")
    assert 'conflict with "one": .spec.x' in message
    assert conflict.json()["details"]["causes"] == [
        {"reason": "FieldManagerConflict", "message": 'conflict with "one"', "field": ".spec.x"}
    ]
    # the same value is shared, not a conflict
    shared = client.patch(
        runtimes_path(ns, "ssa"),
        params={"fieldManager": "two"},
        content=json.dumps(runtime("ssa", spec={"x": 1, "w": 1})),
        headers=APPLY,
    )
    assert shared.status_code == 200, shared.text
    forced = client.patch(
        runtimes_path(ns, "ssa"),
        params={"fieldManager": "two", "force": "true"},
        content=json.dumps(theirs),
        headers=APPLY,
    )
    assert forced.status_code == 200, forced.text
    assert forced.json()["spec"] == {"x": 2, "y": {"z": 1}, "w": 1}
    owned = {e["manager"]: e["fieldsV1"] for e in forced.json()["metadata"]["managedFields"]}
    assert owned["one"] == {
        "f:metadata": {"f:labels": {"f:app": {}}},
        "f:spec": {"f:y": {"f:z": {}}},
    }
    assert owned["two"] == {"f:spec": {"f:w": {}, "f:x": {}}}

    # "one" leaves out a field it applied before: it is removed (no one else owns it)
    smaller = runtime("ssa", labels={"app": "a"}, spec={})
    after = client.patch(
        runtimes_path(ns, "ssa"),
        params={"fieldManager": "one"},
        content=json.dumps(smaller),
        headers=APPLY,
    )
    assert after.status_code == 200, after.text
    assert after.json()["spec"] == {"x": 2, "w": 1}
    assert_status(
        client.patch(
            runtimes_path(ns, "ssa"),
            params={"fieldManager": "one", "force": "true"},
            json={"spec": {}},
            headers=MERGE,
        ),
        400,
        "BadRequest",
        "force",
    )
    # an update by another manager takes the fields it changes
    updated = client.patch(
        runtimes_path(ns, "ssa"),
        params={"fieldManager": "editor"},
        json={"spec": {"x": 3}},
        headers=MERGE,
    ).json()
    owned = {
        (e["manager"], e["operation"]): e["fieldsV1"] for e in updated["metadata"]["managedFields"]
    }
    assert owned[("editor", "Update")] == {"f:spec": {"f:x": {}}}
    assert owned[("two", "Apply")] == {"f:spec": {"f:w": {}}}


def test_cluster_scoped_kinds(client: httpx.Client, ns: str) -> None:
    name = f"rt-{ns}"
    manifest = {
        "apiVersion": "trainer.kubeflow.org/v1alpha1",
        "kind": "ClusterTrainingRuntime",
        "metadata": {"name": name, "labels": {"suite": ns}},
        "spec": {"template": {"spec": {"replicatedJobs": []}}},
    }
    created = client.post(CLUSTER_RUNTIMES, json=manifest)
    assert created.status_code == 201, created.text
    assert "namespace" not in created.json()["metadata"]
    got = client.get(f"{CLUSTER_RUNTIMES}/{name}")
    assert got.status_code == 200 and "namespace" not in got.json()["metadata"]
    listed = client.get(CLUSTER_RUNTIMES, params={"labelSelector": f"suite={ns}"})
    assert names(listed) == [name]
    assert all("namespace" not in i["metadata"] for i in listed.json()["items"])
    builtin = client.get(f"{CLUSTER_RUNTIMES}/torch-distributed")
    assert builtin.status_code == 200, builtin.text
    assert builtin.json()["kind"] == "ClusterTrainingRuntime"

    patched = client.patch(
        f"{CLUSTER_RUNTIMES}/{name}", json={"metadata": {"labels": {"b": "c"}}}, headers=MERGE
    )
    assert patched.status_code == 200 and patched.json()["metadata"]["labels"]["b"] == "c"
    replaced = client.put(f"{CLUSTER_RUNTIMES}/{name}", json=manifest)
    assert replaced.status_code == 200 and replaced.json()["metadata"]["labels"] == {"suite": ns}
    status = client.put(f"{CLUSTER_RUNTIMES}/{name}/status", json={"status": {"x": 1}})
    assert status.status_code == 200 and status.json()["status"] == {"x": 1}

    # the wrong scope is 404
    namespaced = f"/apis/trainer.kubeflow.org/v1alpha1/namespaces/{ns}/clustertrainingruntimes"
    assert_status(client.get(f"{namespaced}/{name}"), 404, "NotFound", "cluster-scoped")
    assert_status(client.get(namespaced), 404, "NotFound", "cluster-scoped")
    assert_status(client.post(namespaced, json=manifest), 404, "NotFound")
    assert_status(client.get("/apis/kubeflow.org/v1/pytorchjobs/x"), 404, "NotFound", "namespaced")
    assert_status(client.post("/apis/kubeflow.org/v1/pytorchjobs", json=job("x")), 404)

    deleted = client.delete(f"{CLUSTER_RUNTIMES}/{name}")
    assert deleted.status_code == 200
    assert_status(client.get(f"{CLUSTER_RUNTIMES}/{name}"), 404, "NotFound")


def test_field_selectors(client: httpx.Client, ns: str) -> None:
    other = ns + "-b"
    for name in ("a", "b", "c", "d"):
        client.post(jobs_path(ns), json=job(name, labels={"suite": ns}))
    client.post(jobs_path(other), json=job("a", labels={"suite": ns}))

    assert names(client.get(jobs_path(ns), params={"fieldSelector": "metadata.name=b"})) == ["b"]
    assert names(client.get(jobs_path(ns), params={"fieldSelector": "metadata.name!=b"})) == [
        "a",
        "c",
        "d",
    ]
    everywhere = "/apis/kubeflow.org/v1/pytorchjobs"
    selected = client.get(
        everywhere,
        params={"fieldSelector": f"metadata.namespace={other}", "labelSelector": f"suite={ns}"},
    )
    assert names(selected) == ["a"]
    both = client.get(
        everywhere,
        params={"fieldSelector": "metadata.name==a", "labelSelector": f"suite={ns}"},
    )
    assert [i["metadata"]["namespace"] for i in both.json()["items"]] == [ns, other]
    # pages are filled: limit counts selected objects
    first = client.get(
        jobs_path(ns), params={"fieldSelector": "metadata.name!=a", "limit": 2}
    ).json()
    assert [i["metadata"]["name"] for i in first["items"]] == ["b", "c"]
    rest = client.get(
        jobs_path(ns),
        params={
            "fieldSelector": "metadata.name!=a",
            "limit": 2,
            "continue": first["metadata"]["continue"],
        },
    ).json()
    assert [i["metadata"]["name"] for i in rest["items"]] == ["d"]

    for bad in ("spec.replicas=1", "status.phase=Running", "metadata.name"):
        message = assert_status(
            client.get(jobs_path(ns), params={"fieldSelector": bad}), 400, "BadRequest"
        )
        assert "fieldSelector" in message


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("tier in (web, db)", ["a", "b"]),
        ("tier notin (web)", ["b", "c"]),
        ("tier in (web),env", ["a"]),
        ("!tier", ["c"]),
        ("tier", ["a", "b"]),
        ("tier!=web,!env", ["b", "c"]),
        ("replicas>2", ["b"]),
    ],
)
def test_set_based_label_selectors(
    client: httpx.Client, ns: str, selector: str, expected: list[str]
) -> None:
    for name, labels in (
        ("a", {"tier": "web", "env": "prod", "replicas": "1"}),
        ("b", {"tier": "db", "replicas": "3"}),
        ("c", {}),
    ):
        client.post(jobs_path(ns), json=job(name, labels=labels))
    assert names(client.get(jobs_path(ns), params={"labelSelector": selector})) == expected


def test_malformed_label_selectors_are_400(client: httpx.Client, ns: str) -> None:
    for bad in ("a in b", "a in (b", "a notin", "a,,b", "x>y"):
        assert_status(
            client.get(jobs_path(ns), params={"labelSelector": bad}),
            400,
            "BadRequest",
            "labelSelector",
        )


def test_status_patch(client: httpx.Client, ns: str) -> None:
    client.post(runtimes_path(ns), json=runtime("st", spec={"x": 1}))
    patched = client.patch(
        runtimes_path(ns, "st") + "/status",
        json={"status": {"phase": "Ready"}, "spec": {"x": 2}},
        headers=MERGE,
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["status"] == {"phase": "Ready"}
    assert patched.json()["spec"] == {"x": 1}  # only the status changes there
    json_patched = client.patch(
        runtimes_path(ns, "st") + "/status",
        json=[{"op": "add", "path": "/status/count", "value": 2}],
        headers=JSON_PATCH,
    )
    assert json_patched.json()["status"] == {"phase": "Ready", "count": 2}
    dry = client.patch(
        runtimes_path(ns, "st") + "/status",
        params={"dryRun": "All"},
        json={"status": {"phase": "Gone"}},
        headers=MERGE,
    )
    assert dry.status_code == 200 and dry.json()["status"]["phase"] == "Gone"
    assert client.get(runtimes_path(ns, "st")).json()["status"]["phase"] == "Ready"
