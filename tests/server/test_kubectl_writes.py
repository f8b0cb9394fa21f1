"""The real kubectl writing through Ketch: server-side apply (twice, a conflict, forced),
client-side apply removing a field, every ``kubectl patch --type``, server dry runs,
field validation, cluster-scoped ClusterTrainingRuntimes and list selectors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from ketch.core.conditions import is_true
from tests.server.fixtures import SUSPENDED_JOB_SPEC
from tests.server.helpers import Server
from tests.server.kubectl import Kubectl, kubectl_for
from tests.waiting import wait_for


@pytest.fixture
def kubectl(server: Server, tmp_path: Path, ns: str) -> Kubectl:
    return kubectl_for(server.url, tmp_path, namespace=ns)


def manifest(
    name: str, *, labels: dict[str, str] | None = None, run_policy: dict[str, Any] | None = None
) -> str:
    spec: dict[str, Any] = yaml.safe_load(yaml.safe_dump(SUSPENDED_JOB_SPEC))
    spec["runPolicy"].update(run_policy or {})
    document = {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": {"name": name, **({"labels": labels} if labels else {})},
        "spec": spec,
    }
    return yaml.safe_dump(document)


def get(kubectl: Kubectl, *args: str) -> dict[str, Any]:
    found = yaml.safe_load(kubectl.run("get", *args, "-o", "yaml").stdout)
    assert isinstance(found, dict)
    return found


def test_server_side_apply(kubectl: Kubectl) -> None:
    config = manifest("ssa", labels={"app": "a"}, run_policy={"backoffLimit": 3})
    first = kubectl.run("apply", "--server-side", "-f", "-", input=config)
    assert "pytorchjob.kubeflow.org/ssa serverside-applied" in first.stdout
    # the controller writes the suspended job's status once: wait for it to settle
    settled = wait_for(
        lambda: is_true(get(kubectl, "pytorchjob", "ssa").get("status") or {}, "Suspended"),
        what="the job's Suspended condition",
    )
    assert settled
    version = get(kubectl, "pytorchjob", "ssa")["metadata"]["resourceVersion"]
    again = kubectl.run("apply", "--server-side", "-f", "-", input=config)
    assert "serverside-applied" in again.stdout
    shown = yaml.safe_load(
        kubectl.run("get", "pytorchjob", "ssa", "-o", "yaml", "--show-managed-fields").stdout
    )
    assert shown["metadata"]["resourceVersion"] == version  # nothing changed
    entries = shown["metadata"]["managedFields"]
    assert [(e["manager"], e["operation"]) for e in entries] == [("kubectl", "Apply")]
    assert entries[0]["fieldsType"] == "FieldsV1"
    assert entries[0]["fieldsV1"]["f:spec"]["f:runPolicy"] == {
        "f:backoffLimit": {},
        "f:suspend": {},
    }

    theirs = manifest("ssa", run_policy={"backoffLimit": 5})
    conflict = kubectl.run(
        "apply", "--server-side", "--field-manager=other", "-f", "-", input=theirs, check=False
    )
    assert conflict.returncode != 0
    assert "Apply failed with 1 conflict" in conflict.stderr, conflict.stderr
    assert 'conflict with "kubectl": .spec.runPolicy.backoffLimit' in conflict.stderr
    assert "--force-conflicts" in conflict.stderr
    assert get(kubectl, "pytorchjob", "ssa")["spec"]["runPolicy"]["backoffLimit"] == 3

    kubectl.run(
        "apply",
        "--server-side",
        "--field-manager=other",
        "--force-conflicts",
        "-f",
        "-",
        input=theirs,
    )
    forced = yaml.safe_load(
        kubectl.run("get", "pytorchjob", "ssa", "-o", "yaml", "--show-managed-fields").stdout
    )
    assert forced["spec"]["runPolicy"]["backoffLimit"] == 5
    owners = {e["manager"]: e["fieldsV1"] for e in forced["metadata"]["managedFields"]}
    assert "f:backoffLimit" in owners["other"]["f:spec"]["f:runPolicy"]
    assert "f:backoffLimit" not in owners["kubectl"]["f:spec"]["f:runPolicy"]


def test_client_side_apply_removes_a_field_left_out(kubectl: Kubectl) -> None:
    first = manifest("csa", labels={"app": "a", "extra": "x"}, run_policy={"backoffLimit": 3})
    assert "created" in kubectl.run("apply", "-f", "-", input=first).stdout
    stored = get(kubectl, "pytorchjob", "csa")
    annotation = stored["metadata"]["annotations"][
        "kubectl.kubernetes.io/last-applied-configuration"
    ]
    assert yaml.safe_load(annotation)["metadata"]["labels"] == {"app": "a", "extra": "x"}

    second = manifest("csa", labels={"app": "a"})
    assert "configured" in kubectl.run("apply", "-f", "-", input=second).stdout
    after = get(kubectl, "pytorchjob", "csa")
    assert after["metadata"]["labels"] == {"app": "a"}
    assert "backoffLimit" not in after["spec"]["runPolicy"]
    assert after["spec"]["runPolicy"]["suspend"] is True
    assert "unchanged" in kubectl.run("apply", "-f", "-", input=second).stdout


def test_kubectl_patch_types(kubectl: Kubectl) -> None:
    kubectl.run("create", "-f", "-", input=manifest("patched", labels={"a": "1"}))
    kubectl.run(
        "patch",
        "pytorchjob",
        "patched",
        "--type=json",
        "-p",
        '[{"op": "add", "path": "/metadata/labels/b", "value": "2"}]',
    )
    kubectl.run(
        "patch",
        "pytorchjob",
        "patched",
        "--type=merge",
        "-p",
        '{"metadata": {"labels": {"a": null}}, "spec": {"runPolicy": {"backoffLimit": 1}}}',
    )
    patched = get(kubectl, "pytorchjob", "patched")
    assert patched["metadata"]["labels"] == {"b": "2"}
    assert patched["spec"]["runPolicy"]["backoffLimit"] == 1
    refused = kubectl.run(
        "patch",
        "pytorchjob",
        "patched",
        "--type=strategic",
        "-p",
        '{"metadata": {}}',
        check=False,
    )
    assert refused.returncode != 0 and "custom resource" in refused.stderr, refused.stderr

    # Kubernetes' own batch/v1 Job takes a strategic merge patch: containers merge by name
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "strategic"},
        "spec": {
            "suspend": True,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "main", "image": "python", "command": ["true"]}],
                }
            },
        },
    }
    kubectl.run("create", "-f", "-", input=yaml.safe_dump(job))
    kubectl.run(
        "patch",
        "job",
        "strategic",
        "--type=strategic",
        "-p",
        '{"spec": {"template": {"spec": {"containers": [{"name": "main", "image": "python:3"}]}}}}',
    )
    containers = get(kubectl, "job", "strategic")["spec"]["template"]["spec"]["containers"]
    assert containers == [{"name": "main", "image": "python:3", "command": ["true"]}]


def test_server_dry_runs(kubectl: Kubectl) -> None:
    created = kubectl.run(
        "create", "--dry-run=server", "-o", "yaml", "-f", "-", input=manifest("dry")
    )
    shown = yaml.safe_load(created.stdout)
    assert shown["metadata"]["name"] == "dry" and shown["metadata"]["uid"]
    missing = kubectl.run("get", "pytorchjob", "dry", check=False)
    assert missing.returncode != 0 and "NotFound" in missing.stderr

    kubectl.run("create", "-f", "-", input=manifest("kept"))
    deleted = kubectl.run("delete", "pytorchjob", "kept", "--dry-run=server")
    assert "(server dry run)" in deleted.stdout
    assert get(kubectl, "pytorchjob", "kept")["metadata"]["name"] == "kept"
    applied = kubectl.run(
        "apply",
        "--server-side",
        "--dry-run=server",
        "-f",
        "-",
        input=manifest("kept", labels={"tier": "web"}),
    )
    assert "serverside-applied (server dry run)" in applied.stdout
    assert not get(kubectl, "pytorchjob", "kept")["metadata"].get("labels")


def test_field_validation_from_kubectl(kubectl: Kubectl) -> None:
    bogus = yaml.safe_load(manifest("bogus"))
    bogus["spec"]["bogusField"] = 1
    text = yaml.safe_dump(bogus)
    strict = kubectl.run("create", "-f", "-", input=text, check=False)  # Strict by default
    assert strict.returncode != 0
    assert 'strict decoding error: unknown field "spec.bogusField"' in strict.stderr
    warned = kubectl.run("create", "--validate=warn", "-f", "-", input=text)
    assert 'Warning: unknown field "spec.bogusField"' in warned.stderr
    assert "bogusField" not in get(kubectl, "pytorchjob", "bogus")["spec"]
    kubectl.run("delete", "pytorchjob", "bogus")
    ignored = kubectl.run("create", "--validate=ignore", "-f", "-", input=text)
    assert "Warning" not in ignored.stderr


def test_cluster_training_runtimes(kubectl: Kubectl) -> None:
    listed = kubectl.run("get", "clustertrainingruntimes").stdout.splitlines()
    assert listed[0].split() == ["NAME", "AGE"]
    assert "torch-distributed" in [line.split()[0] for line in listed[1:]]
    runtime = get(kubectl, "clustertrainingruntime", "torch-distributed")
    assert runtime["kind"] == "ClusterTrainingRuntime"
    assert "namespace" not in runtime["metadata"]
    assert runtime["metadata"]["labels"]["trainer.kubeflow.org/framework"] == "torch"


def test_selectors(kubectl: Kubectl) -> None:
    for name, app in (("sel-a", "a"), ("sel-b", "b"), ("sel-c", "c")):
        kubectl.run("create", "-f", "-", input=manifest(name, labels={"app": app}))
    chosen = kubectl.run("get", "pytorchjobs", "-l", "app in (a,b)", "-o", "name").stdout
    assert chosen.split() == ["pytorchjob.kubeflow.org/sel-a", "pytorchjob.kubeflow.org/sel-b"]
    others = kubectl.run("get", "pytorchjobs", "-l", "app notin (a,b)", "-o", "name").stdout
    assert others.split() == ["pytorchjob.kubeflow.org/sel-c"]
    named = kubectl.run(
        "get", "pytorchjobs", "--field-selector", "metadata.name=sel-b", "-o", "name"
    ).stdout
    assert named.split() == ["pytorchjob.kubeflow.org/sel-b"]
    bad = kubectl.run("get", "pytorchjobs", "--field-selector", "spec.x=1", check=False)
    assert bad.returncode != 0 and "BadRequest" in bad.stderr and "spec.x" in bad.stderr
