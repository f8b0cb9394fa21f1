"""The Kubernetes-style resource API over real HTTP: CRUD, apply, patch, lists, status."""

from __future__ import annotations

import httpx
import pytest
import yaml

from tests.server.fixtures import job, jobs_path, runtime, runtimes_path
from tests.server.helpers import assert_error, assert_status


def test_create_get_list_delete(client: httpx.Client, ns: str) -> None:
    created = client.post(runtimes_path(ns), json=runtime("mnist", labels={"team": "a"}))
    assert created.status_code == 201, created.text
    body = created.json()
    meta = body["metadata"]
    assert (
        body["apiVersion"] == "trainer.kubeflow.org/v1alpha1" and body["kind"] == "TrainingRuntime"
    )
    assert meta["name"] == "mnist" and meta["namespace"] == ns
    # resourceVersion: the store's revision at the write (one sequence for every object)
    assert meta["generation"] == 1 and meta["resourceVersion"].isdigit() and meta["uid"]
    assert meta["creationTimestamp"].endswith("Z")
    assert body["status"] == {}

    got = client.get(runtimes_path(ns, "mnist")).json()
    assert got == body
    listed = client.get(runtimes_path(ns)).json()
    assert listed["kind"] == "TrainingRuntimeList" and [
        i["metadata"]["name"] for i in listed["items"]
    ] == ["mnist"]

    again = client.post(runtimes_path(ns), json=runtime("mnist"))
    assert_error(again, 409, "already exists")
    assert again.json()["reason"] == "AlreadyExists"

    deleted = client.delete(runtimes_path(ns, "mnist"))
    assert deleted.status_code == 200 and deleted.json()["metadata"]["uid"] == meta["uid"]
    assert_error(client.get(runtimes_path(ns, "mnist")), 404, "not found")
    assert_error(client.delete(runtimes_path(ns, "mnist")), 404)


def test_create_from_yaml_and_generate_name(client: httpx.Client, ns: str) -> None:
    manifest = yaml.safe_dump(job("from-yaml"))
    response = client.post(
        jobs_path(ns), content=manifest, headers={"content-type": "application/yaml"}
    )
    assert response.status_code == 201 and response.json()["metadata"]["name"] == "from-yaml"
    generated = job("x")
    generated["metadata"] = {"generateName": "gen-"}
    response = client.post(jobs_path(ns), json=generated)
    assert response.status_code == 201
    name = response.json()["metadata"]["name"]
    assert name.startswith("gen-") and len(name) == len("gen-") + 5


def test_status_in_a_create_is_ignored(client: httpx.Client, ns: str) -> None:
    manifest = {**job("a"), "status": {"conditions": [{"type": "Succeeded", "status": "True"}]}}
    assert client.post(jobs_path(ns), json=manifest).json()["status"] == {}


def test_apply_generation_semantics(client: httpx.Client, ns: str) -> None:
    first = client.put(runtimes_path(ns, "j"), json=runtime("j"))
    assert first.status_code == 201 and first.headers["X-Ketch-Apply"] == "created"
    assert first.json()["metadata"]["generation"] == 1

    same = client.put(runtimes_path(ns, "j"), json=runtime("j"))
    assert same.status_code == 200 and same.headers["X-Ketch-Apply"] == "unchanged"
    assert same.json()["metadata"]["resourceVersion"] == first.json()["metadata"]["resourceVersion"]

    relabeled = client.put(runtimes_path(ns, "j"), json=runtime("j", labels={"a": "b"}))
    assert relabeled.headers["X-Ketch-Apply"] == "configured"
    assert relabeled.json()["metadata"]["generation"] == 1
    assert int(relabeled.json()["metadata"]["resourceVersion"]) > int(
        first.json()["metadata"]["resourceVersion"]
    )

    respec = client.put(runtimes_path(ns, "j"), json=runtime("j", labels={"a": "b"}, spec={"x": 2}))
    assert respec.headers["X-Ketch-Apply"] == "configured"
    assert respec.json()["metadata"]["generation"] == 2
    assert respec.json()["spec"] == {"x": 2}

    stale = runtime("j", spec={"x": 3})
    stale["metadata"]["resourceVersion"] = first.json()["metadata"]["resourceVersion"]
    assert_error(client.put(runtimes_path(ns, "j"), json=stale), 409, "resourceVersion")

    mismatch = client.put(runtimes_path(ns, "j"), json=runtime("other"))
    assert_error(mismatch, 422, "metadata.name")


def test_merge_patch(client: httpx.Client, ns: str) -> None:
    client.post(
        runtimes_path(ns),
        json=runtime("p", labels={"a": "1", "b": "2"}, spec={"x": 1, "y": {"z": 1}}),
    )
    patch = {"metadata": {"labels": {"b": None, "c": "3"}}, "spec": {"y": {"w": 2}}}
    response = client.patch(
        runtimes_path(ns, "p"), json=patch, headers={"content-type": "application/merge-patch+json"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["metadata"]["labels"] == {"a": "1", "c": "3"}
    assert body["spec"] == {"x": 1, "y": {"z": 1, "w": 2}}
    assert body["metadata"]["generation"] == 2

    labels_only = client.patch(
        runtimes_path(ns, "p"), json={"metadata": {"annotations": {"note": "hi"}}}
    )
    assert labels_only.json()["metadata"]["generation"] == 2
    assert labels_only.json()["metadata"]["annotations"] == {"note": "hi"}

    # the status is the status subresource's: a patch's status is ignored, as Kubernetes does
    ignored = client.patch(runtimes_path(ns, "p"), json={"status": {"phase": "Done"}})
    assert ignored.status_code == 200 and ignored.json()["status"] == {}
    assert_error(
        client.patch(runtimes_path(ns, "p"), json={"metadata": {"name": "q"}}), 422, "metadata.name"
    )
    assert_error(client.patch(runtimes_path(ns, "p"), json={"kind": "TFJob"}), 422, "kind")
    assert_error(client.patch(runtimes_path(ns, "nope"), json={"spec": {}}), 404)


def test_label_selectors(client: httpx.Client, ns: str) -> None:
    for name, labels in (("a", {"tier": "web", "env": "prod"}), ("b", {"tier": "db"}), ("c", {})):
        client.post(jobs_path(ns), json=job(name, labels=labels))

    def names(selector: str) -> list[str]:
        response = client.get(jobs_path(ns), params={"labelSelector": selector})
        assert response.status_code == 200, response.text
        return [i["metadata"]["name"] for i in response.json()["items"]]

    assert names("tier=web") == ["a"]
    assert names("tier!=web") == ["b", "c"]
    assert names("tier") == ["a", "b"]
    assert names("!tier") == ["c"]
    assert names("tier,env=prod") == ["a"]
    assert_error(client.get(jobs_path(ns), params={"labelSelector": "a=b=c"}), 400, "labelSelector")


def test_paging_with_continue_tokens(client: httpx.Client, ns: str) -> None:
    for index in range(5):
        client.post(jobs_path(ns), json=job(f"job-{index}", labels={"odd": str(index % 2)}))
    seen: list[str] = []
    token = None
    pages = 0
    while True:
        params = {"limit": 2, **({"continue": token} if token else {})}
        page = client.get(jobs_path(ns), params=params).json()
        seen += [i["metadata"]["name"] for i in page["items"]]
        pages += 1
        token = page["metadata"].get("continue")
        if not token:
            break
    assert seen == [f"job-{i}" for i in range(5)] and pages == 3

    odd = client.get(jobs_path(ns), params={"limit": 1, "labelSelector": "odd=1"}).json()
    assert [i["metadata"]["name"] for i in odd["items"]] == ["job-1"]
    rest = client.get(
        jobs_path(ns),
        params={"limit": 5, "labelSelector": "odd=1", "continue": odd["metadata"]["continue"]},
    )
    assert [i["metadata"]["name"] for i in rest.json()["items"]] == ["job-3"]
    assert "continue" not in rest.json()["metadata"]

    assert_error(client.get(jobs_path(ns), params={"continue": "garbage!"}), 400, "continue")
    assert_error(client.get(jobs_path(ns), params={"limit": 0}), 400, "limit")


def test_list_across_namespaces(client: httpx.Client, ns: str) -> None:
    other = ns + "-b"
    client.post(jobs_path(ns), json=job("same", labels={"suite": ns}))
    client.post(jobs_path(other), json=job("same", labels={"suite": ns}))
    everywhere = client.get(
        "/apis/kubeflow.org/v1/pytorchjobs", params={"labelSelector": f"suite={ns}"}
    )
    assert [i["metadata"]["namespace"] for i in everywhere.json()["items"]] == [ns, other]


def test_status_subresource(client: httpx.Client, ns: str) -> None:
    created = client.post(runtimes_path(ns), json=runtime("s")).json()
    status = {
        "conditions": [{"type": "Running", "status": "True", "reason": "Started"}],
        "replicas": 1,
    }
    written = client.put(runtimes_path(ns, "s") + "/status", json={"status": status})
    assert written.status_code == 200, written.text
    assert written.json()["status"] == status
    assert written.json()["metadata"]["generation"] == 1
    assert client.get(runtimes_path(ns, "s") + "/status").json()["status"] == status
    # a spec apply keeps the status
    applied = client.put(runtimes_path(ns, "s"), json=runtime("s", spec={"changed": True})).json()
    assert applied["status"] == status

    stale = {"metadata": {"resourceVersion": created["metadata"]["resourceVersion"]}, "status": {}}
    assert_error(client.put(runtimes_path(ns, "s") + "/status", json=stale), 409, "resourceVersion")
    bad = {"status": {"conditions": [{"type": "Ready", "status": "Maybe"}]}}
    assert_error(
        client.put(runtimes_path(ns, "s") + "/status", json=bad), 422, "status.conditions[0]"
    )
    assert_error(client.put(runtimes_path(ns, "s") + "/status", json={"spec": {}}), 422, "status")
    assert_error(client.put(runtimes_path(ns, "gone") + "/status", json={"status": {}}), 404)


@pytest.mark.parametrize(
    ("name", "fragment"),
    [("Upper", "RFC 1123"), ("under_score", "RFC 1123"), ("-dash", "RFC 1123"), ("x" * 254, "253")],
)
def test_invalid_names_are_422_in_objects_and_400_in_urls(
    client: httpx.Client, ns: str, name: str, fragment: str
) -> None:
    assert_error(client.post(jobs_path(ns), json=job(name)), 422, "metadata.name", fragment)
    assert_error(client.get(jobs_path(ns, name)), 400, fragment)


def test_invalid_manifests_are_422(client: httpx.Client, ns: str) -> None:
    no_name = job("x")
    no_name["metadata"] = {}
    assert_error(client.post(jobs_path(ns), json=no_name), 422, "metadata.name")
    wrong_version = {**job("x"), "apiVersion": "kubeflow.org/v2"}
    assert_error(
        client.post(jobs_path(ns), json=wrong_version), 422, "apiVersion", "kubeflow.org/v1"
    )
    wrong_kind = {**job("x"), "kind": "TFJob"}
    assert_error(client.post(jobs_path(ns), json=wrong_kind), 422, "kind")
    other_ns = job("x")
    other_ns["metadata"]["namespace"] = "elsewhere"
    assert_error(client.post(jobs_path(ns), json=other_ns), 422, "metadata.namespace")
    bad_labels = job("x")
    bad_labels["metadata"]["labels"] = {"a": 1}
    assert_error(client.post(jobs_path(ns), json=bad_labels), 422, "metadata.labels")
    assert_error(
        client.get("/apis/kubeflow.org/v1/namespaces/Bad_NS/pytorchjobs"), 400, "namespace"
    )


def test_unknown_kinds_are_404_with_close_matches(client: httpx.Client, ns: str) -> None:
    message = assert_error(client.get(f"/apis/kubeflow.org/v1/namespaces/{ns}/pytorchjob"), 404)
    assert "pytorchjobs" in message
    assert_error(client.get(f"/apis/kubeflow.org/v1/namespaces/{ns}/widgets"), 404, "widgets")
    assert_error(
        client.get(f"/apis/kubeflow.org/v9/namespaces/{ns}/pytorchjobs"), 404, "kubeflow.org/v1"
    )
    assert_error(client.get(f"/apis/example.com/v1/namespaces/{ns}/pytorchjobs"), 404)


def test_discovery(client: httpx.Client) -> None:
    groups = {g["name"] for g in client.get("/apis").json()["groups"]}
    assert {
        "kubeflow.org",
        "serving.kserve.io",
        "trainer.kubeflow.org",
        "pipelines.ketch.dev",
    } <= groups
    resources = client.get("/apis/serving.kserve.io/v1beta1").json()["resources"]
    assert {"name": "inferenceservices", "kind": "InferenceService"}.items() <= resources[0].items()
    kinds = {k["kind"]: k for k in client.get("/apis/ketch.dev/v1/kinds").json()["items"]}
    expected = {
        "PyTorchJob",
        "TFJob",
        "XGBoostJob",
        "MPIJob",
        "JAXJob",
        "PaddleJob",
        "MXJob",
        "TrainJob",
        "Experiment",
        "Trial",
        "Suggestion",
        "InferenceService",
        "InferenceGraph",
        "PipelineRun",
        "Profile",
        "RoleBinding",
    }
    assert expected <= set(kinds)
    # a kind nothing reconciles is not served (nothing would ever act on it)
    assert not {"ServingRuntime", "ClusterServingRuntime"} & set(kinds)
    assert kinds["TrainJob"]["apiVersion"] == "trainer.kubeflow.org/v1alpha1"
    assert kinds["Experiment"]["apiVersion"] == "kubeflow.org/v1beta1"
    assert_error(client.get("/apis/example.com/v1"), 404)


def test_other_kinds_round_trip(client: httpx.Client, ns: str) -> None:
    isvc = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "sklearn-iris"},
        "spec": {
            "predictor": {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": "gs://x"}}
        },
    }
    path = f"/apis/serving.kserve.io/v1beta1/namespaces/{ns}/inferenceservices"
    assert client.post(path, json=isvc).status_code == 201
    assert client.get(f"{path}/sklearn-iris").json()["spec"] == isvc["spec"]
    notebook = {
        "apiVersion": "kubeflow.org/v1beta1",
        "kind": "Notebook",
        "metadata": {"name": "nb"},
        "spec": {},
    }
    response = client.post(f"/apis/kubeflow.org/v1beta1/namespaces/{ns}/notebooks", json=notebook)
    assert_status(response, 422, "Invalid", "spec.template")
