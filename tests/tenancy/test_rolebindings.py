"""RBAC's RoleBinding on a real ``ketch up`` (SQLite and PostgreSQL): through the real
kubectl (the dispatcher's, which sends ``kubectl create rolebinding`` as protobuf, and
1.29's JSON), the real ``kubernetes`` client, discovery and OpenAPI; what Kubernetes
refuses is refused naming the field, and ``roleRef`` never changes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.server.helpers import Server, assert_status
from tests.server.kubectl import dispatcher, kubectl_for, versioned
from tests.tenancy.profiles import BOB, CAROL, RBAC, kubernetes_client, rolebindings_path

GROUP = "rbac.authorization.k8s.io"


def binding(name: str, role: str = "kubeflow-edit", **fields: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/v1",
        "kind": "RoleBinding",
        "metadata": {"name": name},
        "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": role},
        "subjects": [{"kind": "User", "name": BOB}],
        **fields,
    }


@pytest.mark.parametrize("version", [None, "1.29"], ids=["dispatcher", "1.29"])
def test_kubectl_creates_lists_applies_and_deletes_rolebindings(
    server: Server, tmp_path: Path, ns: str, version: str | None
) -> None:
    kubectl = kubectl_for(
        server.url, tmp_path, versioned(version) if version else dispatcher(), namespace=ns
    )
    made = kubectl.run(
        "create", "rolebinding", "contributors", "--clusterrole=kubeflow-edit",
        f"--user={BOB}", "--group=data-team", f"--serviceaccount={ns}:robot",
    )  # fmt: skip
    assert made.stdout.strip() == "rolebinding.rbac.authorization.k8s.io/contributors created"
    table = kubectl.run("get", "rolebindings").stdout.splitlines()
    assert table[0].split() == ["NAME", "ROLE", "AGE"]
    assert table[1].split()[:2] == ["contributors", "ClusterRole/kubeflow-edit"]
    wide = kubectl.run("get", "rolebinding", "contributors", "-o", "wide").stdout.splitlines()
    assert wide[0].split() == ["NAME", "ROLE", "USERS", "GROUPS", "SERVICEACCOUNTS", "AGE"]
    assert wide[1].split()[:5] == [
        "contributors", "ClusterRole/kubeflow-edit", BOB, "data-team", f"{ns}/robot",
    ]  # fmt: skip
    shown = yaml.safe_load(kubectl.run("get", "rolebinding", "contributors", "-o", "yaml").stdout)
    assert shown["roleRef"] == {"apiGroup": GROUP, "kind": "ClusterRole", "name": "kubeflow-edit"}
    assert shown["subjects"] == [
        {"apiGroup": GROUP, "kind": "User", "name": BOB},
        {"apiGroup": GROUP, "kind": "Group", "name": "data-team"},
        {"kind": "ServiceAccount", "name": "robot", "namespace": ns},
    ]
    assert "spec" not in shown and "status" not in shown

    # apply (a strategic merge patch of a built-in kind), with a name RBAC allows:
    # capitals, as Kubeflow's namespaceAdmin
    manifest = binding("teamViewers", "kubeflow-view")
    manifest["metadata"]["namespace"] = ns
    path = tmp_path / "binding.yaml"
    path.write_text(yaml.safe_dump(manifest))
    assert kubectl.run("apply", "-f", str(path)).stdout.strip().endswith("teamViewers created")
    manifest["subjects"] = [{"kind": "User", "name": CAROL}]
    path.write_text(yaml.safe_dump(manifest))
    assert kubectl.run("apply", "-f", str(path)).stdout.strip().endswith("configured")
    got = yaml.safe_load(kubectl.run("get", "rolebinding", "teamViewers", "-o", "yaml").stdout)
    assert got["subjects"] == [{"apiGroup": GROUP, "kind": "User", "name": CAROL}]
    manifest["roleRef"]["name"] = "kubeflow-admin"
    path.write_text(yaml.safe_dump(manifest))
    refused = kubectl.run("apply", "-f", str(path), check=False)
    assert refused.returncode != 0 and "cannot change roleRef" in refused.stderr
    assert "Traceback" not in refused.stderr

    assert kubectl.run("delete", "rolebinding", "teamViewers", "contributors").returncode == 0
    assert kubectl.run("get", "rolebindings", "-o", "name").stdout.strip() == ""
    resources = kubectl.run("api-resources", f"--api-group={GROUP}").stdout.splitlines()
    assert resources[1].split() == ["rolebindings", f"{GROUP}/v1", "true", "RoleBinding"]
    explained = kubectl.run("explain", "rolebinding.roleRef").stdout
    assert "ClusterRole or Role" in explained


def test_rolebindings_kubernetes_would_refuse_name_the_field(client: httpx.Client, ns: str) -> None:
    strict = {"fieldValidation": "Strict"}
    no_ref = binding("b")
    del no_ref["roleRef"]
    cases: list[tuple[dict[str, Any], str]] = [
        (no_ref, "roleRef"),
        (binding("b", roleRef={"kind": "Policy", "name": "x"}), "roleRef.kind"),
        (binding("b", roleRef={"kind": "ClusterRole"}), "roleRef.name"),
        (
            binding("b", roleRef={"apiGroup": "example.com", "kind": "Role", "name": "x"}),
            "apiGroup",
        ),
        (binding("b", subjects={"kind": "User", "name": BOB}), "subjects"),
        (binding("b", subjects=[{"kind": "Robot", "name": "r2"}]), "subjects[0].kind"),
        (binding("b", subjects=[{"kind": "User"}]), "subjects[0].name"),
        (
            binding("b", subjects=[{"kind": "ServiceAccount", "name": "r", "apiGroup": GROUP}]),
            "subjects[0].apiGroup",
        ),
    ]
    for body, field in cases:
        message = assert_status(
            client.post(rolebindings_path(ns), json=body), 422, "Invalid", field
        )
        assert "Traceback" not in message
    unknown = binding("b", spec={"roleRef": {}})
    assert_status(
        client.post(rolebindings_path(ns), params=strict, json=unknown),
        400,
        "BadRequest",
        'unknown field "spec"',
    )
    # RBAC names are path segments: capitals are fine, '/' is not
    assert_status(
        client.post(rolebindings_path(ns), json=binding("a/b")), 422, "Invalid", "metadata.name"
    )
    assert client.get(rolebindings_path(ns)).json()["items"] == []

    # roleRef is immutable; subjects are not
    assert client.post(rolebindings_path(ns), json=binding("b")).status_code == 201
    replaced = client.put(
        rolebindings_path(ns, "b"), json=binding("b", subjects=[{"kind": "Group", "name": "g"}])
    )
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["subjects"] == [{"kind": "Group", "apiGroup": GROUP, "name": "g"}]
    assert_status(
        client.put(rolebindings_path(ns, "b"), json=binding("b", "kubeflow-admin")),
        422,
        "Invalid",
        "cannot change roleRef",
    )
    assert client.get(rolebindings_path(ns, "b")).json()["roleRef"]["name"] == "kubeflow-edit"
    assert client.delete(rolebindings_path(ns, "b")).status_code == 200


def test_the_kubernetes_client_reads_and_writes_rolebindings(server: Server, ns: str) -> None:
    import kubernetes

    client = kubernetes.client
    body = client.V1RoleBinding(
        api_version=f"{GROUP}/v1",
        kind="RoleBinding",
        metadata=client.V1ObjectMeta(name="ml-team", labels={"team": "ml"}),
        role_ref=client.V1RoleRef(api_group=GROUP, kind="ClusterRole", name="kubeflow-view"),
        subjects=[client.RbacV1Subject(kind="User", name=BOB, api_group=GROUP)],
    )
    with kubernetes_client(server.url) as api_client:
        rbac = client.RbacAuthorizationV1Api(api_client)
        made = rbac.create_namespaced_role_binding(ns, body)
        assert made.metadata.namespace == ns and made.role_ref.name == "kubeflow-view"
        listed = rbac.list_namespaced_role_binding(ns, label_selector="team=ml")
        assert [b.metadata.name for b in listed.items] == ["ml-team"]
        everywhere = rbac.list_role_binding_for_all_namespaces(label_selector="team=ml")
        assert ("ml-team", ns) in {
            (b.metadata.name, b.metadata.namespace) for b in everywhere.items
        }
        patched = rbac.patch_namespaced_role_binding(
            "ml-team", ns, {"subjects": [{"kind": "User", "name": CAROL}]}
        )
        assert [s.name for s in patched.subjects] == [CAROL]
        with pytest.raises(client.ApiException) as refused:
            rbac.patch_namespaced_role_binding(
                "ml-team", ns, {"roleRef": {"kind": "ClusterRole", "name": "kubeflow-admin"}}
            )
        assert refused.value.status == 422 and "cannot change roleRef" in refused.value.body
        rbac.delete_namespaced_role_binding("ml-team", ns)
        assert rbac.list_namespaced_role_binding(ns).items == []


def test_discovery_and_openapi_publish_rolebindings(client: httpx.Client) -> None:
    group = client.get(RBAC).json()
    [resource] = [r for r in group["resources"] if r["name"] == "rolebindings"]
    assert resource["kind"] == "RoleBinding" and resource["namespaced"] is True
    assert set(resource["verbs"]) >= {"create", "delete", "get", "list", "patch", "update", "watch"}
    document = client.get(f"/openapi/v3/apis/{GROUP}/v1").json()
    schemas = document["components"]["schemas"]
    [name] = [n for n in schemas if n.endswith(".RoleBinding")]
    properties = schemas[name]["properties"]
    assert {"roleRef", "subjects"} <= set(properties) and "spec" not in properties
    assert properties["roleRef"]["required"] == ["kind", "name"]
