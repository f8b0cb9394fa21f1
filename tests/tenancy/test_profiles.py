"""Kubeflow's Profiles on a real ``ketch up`` (SQLite and PostgreSQL): the namespace and
the owner's ``namespaceAdmin`` RoleBinding exist as soon as the create returns, a
namespace someone else owns is never taken, a deleted profile takes its namespace and
what it holds with it, and a bad profile is refused naming the field."""

from __future__ import annotations

import json
import subprocess

import httpx

from tests.server.fixtures import job, jobs_path
from tests.server.helpers import (
    Server,
    assert_status,
    base_env,
    ketch_command,
    object_path,
    wait_until,
)
from tests.tenancy.profiles import (
    ALICE,
    BOB,
    KUBEFLOW_LABELS,
    NAMESPACES,
    PROFILES,
    kubernetes_client,
    profile,
    profile_events,
    ready,
    rolebindings_path,
)


def configmaps_path(ns: str, name: str | None = None) -> str:
    return object_path("/api/v1", ns, "configmaps", name)


def configmap(name: str) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"a": "1"}}


def test_a_profile_makes_its_namespace_and_owner_binding_before_the_create_returns(
    server: Server, client: httpx.Client, ns: str
) -> None:
    import kubernetes

    body = profile(
        ns,
        resourceQuotaSpec={"hard": {"cpu": "2", "memory": "4Gi", "requests.nvidia.com/gpu": "1"}},
        plugins=[{"kind": "WorkloadIdentity", "spec": {"gcpServiceAccount": "sa@p.iam"}}],
    )
    with kubernetes_client(server.url) as api_client:
        custom = kubernetes.client.CustomObjectsApi(api_client)
        created = custom.create_cluster_custom_object("kubeflow.org", "v1", "profiles", body)
        # nothing waited for: the create's answer already says Ready, and both objects exist
        assert ready(created)["status"] == "True", created
        assert ready(created)["reason"] == "NamespaceReady"
        namespace = kubernetes.client.CoreV1Api(api_client).read_namespace(ns)
        binding = kubernetes.client.RbacAuthorizationV1Api(api_client).read_namespaced_role_binding(
            "namespaceAdmin", ns
        )
        got = custom.get_cluster_custom_object("kubeflow.org", "v1beta1", "profiles", ns)
    assert namespace.status.phase == "Active"
    assert namespace.metadata.annotations == {"owner": ALICE}
    assert namespace.metadata.labels == {**KUBEFLOW_LABELS, "kubernetes.io/metadata.name": ns}
    [reference] = namespace.metadata.owner_references
    assert (reference.kind, reference.name, reference.uid, reference.controller) == (
        "Profile",
        ns,
        created["metadata"]["uid"],
        True,
    )
    assert binding.metadata.annotations == {"user": ALICE, "role": "admin"}
    assert (binding.role_ref.api_group, binding.role_ref.kind, binding.role_ref.name) == (
        "rbac.authorization.k8s.io",
        "ClusterRole",
        "kubeflow-admin",
    )
    assert [(s.kind, s.name, s.api_group) for s in binding.subjects] == [
        ("User", ALICE, "rbac.authorization.k8s.io")
    ]
    # served at v1beta1 too, with its quota and plugins kept as written
    assert got["spec"]["resourceQuotaSpec"] == body["spec"]["resourceQuotaSpec"]
    assert got["spec"]["plugins"] == body["spec"]["plugins"]
    assert "namespace" not in got["metadata"]
    events = profile_events(client, ns)
    assert [(e["type"], e["reason"]) for e in events] == [("Normal", "NamespaceReady")]
    table = client.get(
        PROFILES, headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"}
    ).json()
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Owner", "Ready", "Age"]
    row = next(r for r in table["rows"] if r["cells"][0] == ns)
    assert row["cells"][1:3] == [ALICE, "True"]
    client.delete(f"{PROFILES}/{ns}")


def test_deleting_a_profile_deletes_its_namespace_and_what_it_holds(
    client: httpx.Client, ns: str
) -> None:
    assert client.post(PROFILES, json=profile(ns)).status_code == 201
    assert client.post(configmaps_path(ns), json=configmap("settings")).status_code == 201
    assert client.post(jobs_path(ns), json=job("train")).status_code == 201
    contributor = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "bob-edit"},
        "roleRef": {"kind": "ClusterRole", "name": "kubeflow-edit"},
        "subjects": [{"kind": "User", "name": BOB}],
    }
    assert client.post(rolebindings_path(ns), json=contributor).status_code == 201

    deleted = client.delete(f"{PROFILES}/{ns}")
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["metadata"]["name"] == ns
    # gone when the delete returns
    assert_status(client.get(f"{NAMESPACES}/{ns}"), 404, "NotFound", ns)
    for path in (configmaps_path(ns), jobs_path(ns), rolebindings_path(ns)):
        assert client.get(path).json()["items"] == [], path
    assert_status(client.get(f"{PROFILES}/{ns}"), 404, "NotFound")
    # the name is free again
    assert client.post(PROFILES, json=profile(ns, BOB)).status_code == 201
    again = client.get(f"{NAMESPACES}/{ns}").json()
    assert again["metadata"]["annotations"] == {"owner": BOB}
    client.delete(f"{PROFILES}/{ns}")


def test_a_namespace_someone_else_owns_is_never_taken(client: httpx.Client, ns: str) -> None:
    theirs = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": ns, "annotations": {"owner": BOB}},
    }
    assert client.post(NAMESPACES, json=theirs).status_code == 201
    assert client.post(configmaps_path(ns), json=configmap("bobs")).status_code == 201

    created = client.post(PROFILES, json=profile(ns))
    assert created.status_code == 201, created.text
    condition = ready(created.json())
    assert (condition["status"], condition["reason"]) == ("False", "NamespaceOwnedByAnother")
    assert BOB in condition["message"] and ALICE in condition["message"]
    assert "does not take it over" in condition["message"]
    warnings = [e for e in profile_events(client, ns) if e["type"] == "Warning"]
    assert [e["reason"] for e in warnings] == ["NamespaceOwnedByAnother"]
    assert warnings[0]["message"] == condition["message"]
    namespace = client.get(f"{NAMESPACES}/{ns}").json()
    assert namespace["metadata"]["annotations"] == {"owner": BOB}
    assert "ownerReferences" not in namespace["metadata"]
    assert "app.kubernetes.io/part-of" not in namespace["metadata"]["labels"]
    assert_status(client.get(rolebindings_path(ns, "namespaceAdmin")), 404, "NotFound")
    # deleting the refused profile leaves Bob's namespace as it was
    assert client.delete(f"{PROFILES}/{ns}").status_code == 200
    assert client.get(f"{NAMESPACES}/{ns}").status_code == 200
    assert client.get(configmaps_path(ns, "bobs")).status_code == 200
    client.delete(configmaps_path(ns, "bobs"))
    client.delete(f"{NAMESPACES}/{ns}")


def test_a_namespace_without_an_owner_is_taken_once_annotated_for_the_owner(
    client: httpx.Client, ns: str
) -> None:
    existing = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": ns, "labels": {"pipelines.kubeflow.org/enabled": "false"}},
    }
    assert client.post(NAMESPACES, json=existing).status_code == 201
    assert client.post(configmaps_path(ns), json=configmap("kept")).status_code == 201
    created = client.post(PROFILES, json=profile(ns)).json()
    condition = ready(created)
    assert (condition["status"], condition["reason"]) == ("False", "NamespaceExists")
    assert f"kubectl annotate namespace {ns} owner={ALICE}" in condition["message"]

    # a cluster admin gives it to Alice: the controller takes it at once
    patched = client.patch(
        f"{NAMESPACES}/{ns}",
        json={"metadata": {"annotations": {"owner": ALICE}}},
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert patched.status_code == 200, patched.text

    def taken() -> bool:
        return ready(client.get(f"{PROFILES}/{ns}").json()).get("status") == "True"

    assert wait_until(taken, timeout=30), client.get(f"{PROFILES}/{ns}").json()
    assert client.get(rolebindings_path(ns, "namespaceAdmin")).status_code == 200
    labels = client.get(f"{NAMESPACES}/{ns}").json()["metadata"]["labels"]
    # Kubeflow's labels are added; one the namespace had already is kept as it was
    assert labels["pipelines.kubeflow.org/enabled"] == "false"
    assert labels["app.kubernetes.io/part-of"] == "kubeflow-profile"
    assert [e["reason"] for e in profile_events(client, ns)] == [
        "NamespaceExists",
        "NamespaceReady",
    ]
    # an adopted namespace is not the profile's own: deleting the profile takes only the
    # binding it made
    assert client.delete(f"{PROFILES}/{ns}").status_code == 200
    assert client.get(configmaps_path(ns, "kept")).status_code == 200
    assert_status(client.get(rolebindings_path(ns, "namespaceAdmin")), 404, "NotFound")
    client.delete(configmaps_path(ns, "kept"))
    client.delete(f"{NAMESPACES}/{ns}")


def test_the_owners_binding_is_put_back_and_follows_a_new_owner(
    client: httpx.Client, ns: str
) -> None:
    assert client.post(PROFILES, json=profile(ns)).status_code == 201
    assert client.delete(rolebindings_path(ns, "namespaceAdmin")).status_code == 200

    def bound_to(user: str) -> bool:
        found = client.get(rolebindings_path(ns, "namespaceAdmin"))
        return found.status_code == 200 and found.json()["subjects"][0]["name"] == user

    assert wait_until(lambda: bound_to(ALICE), timeout=30)
    # the namespace is the profile's own: a new owner takes it over
    changed = client.patch(
        f"{PROFILES}/{ns}",
        json={"spec": {"owner": {"kind": "User", "name": BOB}}},
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert changed.status_code == 200, changed.text
    assert ready(changed.json())["status"] == "True"
    assert bound_to(BOB)
    binding = client.get(rolebindings_path(ns, "namespaceAdmin")).json()
    assert binding["metadata"]["annotations"] == {"user": BOB, "role": "admin"}
    assert client.get(f"{NAMESPACES}/{ns}").json()["metadata"]["annotations"] == {"owner": BOB}
    client.delete(f"{PROFILES}/{ns}")


def test_profiles_kubeflow_would_refuse_name_the_field(client: httpx.Client, ns: str) -> None:
    no_owner = profile(ns)
    del no_owner["spec"]["owner"]
    cases = [
        (no_owner, "spec.owner"),
        (profile(ns, owner=""), "spec.owner.name"),
        (
            {**profile(ns), "spec": {"owner": {"kind": "Group", "name": "devs"}}},
            "spec.owner.kind",
        ),
        (profile(f"{ns}.team"), "metadata.name"),
        (profile("default"), "metadata.name"),
        (profile(ns, resourceQuotaSpec={"hard": {"cpu": "lots"}}), "hard[cpu]"),
    ]
    for body, field in cases:
        message = assert_status(client.post(PROFILES, json=body), 422, "Invalid", field)
        assert "Traceback" not in message
    assert_status(client.get(f"{NAMESPACES}/{ns}"), 404, "NotFound")
    assert client.get(f"{PROFILES}/{ns}").status_code == 404


def test_ketch_delete_profile_asks_first(server: Server, client: httpx.Client, ns: str) -> None:
    assert client.post(PROFILES, json=profile(ns)).status_code == 201
    env = {**base_env(server.home), "KETCH_URL": server.url}

    def ketch(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*ketch_command(), *args],
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
        )

    # without a terminal nothing can be confirmed: refused, naming --yes
    refused = ketch("delete", "profile", ns)
    assert refused.returncode == 2, refused.stderr
    assert "--yes" in refused.stderr and "its namespace" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert client.get(f"{NAMESPACES}/{ns}").status_code == 200
    deleted = ketch("delete", "profile", ns, "--yes")
    assert deleted.returncode == 0, deleted.stderr
    assert deleted.stdout.strip() == f"profile/{ns} deleted"
    assert client.get(f"{NAMESPACES}/{ns}").status_code == 404
    # RBAC names are path segments: the CLI takes Kubeflow's namespaceAdmin
    assert client.post(PROFILES, json=profile(ns)).status_code == 201
    shown = ketch("get", "rolebinding", "namespaceAdmin", "-n", ns, "-o", "json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["roleRef"]["name"] == "kubeflow-admin"
    assert ketch("delete", "profile", ns, "-y").returncode == 0
