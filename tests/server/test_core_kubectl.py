"""The core group through the real kubectl: the machine image's dispatcher picks the
kubectl of the server's /version (1.32, which sends the Secrets, ConfigMaps and
Namespaces it creates as protobuf); 1.29 (which sends JSON) is checked too."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
import yaml

from tests.server.fixtures import job
from tests.server.helpers import Server
from tests.server.kubectl import Kubectl, dispatcher, kubectl_for, versioned

VALUE = "kubectl-s3cr3t-value"


def _kubectl(server: Server, tmp_path: Path, ns: str, binary: Path | None = None) -> Kubectl:
    return kubectl_for(server.url, tmp_path, binary or dispatcher(), namespace=ns)


def test_namespaces(server: Server, tmp_path: Path, ns: str) -> None:
    kubectl = _kubectl(server, tmp_path, ns)
    created = kubectl.run("create", "namespace", ns)
    assert created.stdout.strip() == f"namespace/{ns} created"
    listed = kubectl.run("get", "namespaces").stdout.splitlines()
    assert listed[0].split() == ["NAME", "STATUS", "AGE"]
    rows = {line.split()[0]: line.split() for line in listed[1:]}
    assert rows["default"][1] == "Active" and rows[ns][1] == "Active"
    again = kubectl.run("create", "namespace", ns, check=False)
    assert again.returncode != 0 and "AlreadyExists" in again.stderr
    kubectl.run("label", "namespace", ns, "team=a")
    assert kubectl.run("get", "ns", "-l", "team=a", "-o", "name").stdout.split() == [
        f"namespace/{ns}"
    ]
    shown = yaml.safe_load(kubectl.run("get", "namespace", ns, "-o", "yaml").stdout)
    assert shown["metadata"]["labels"] == {"kubernetes.io/metadata.name": ns, "team": "a"}
    refused = kubectl.run("delete", "namespace", "default", check=False)
    assert refused.returncode != 0 and "may not be deleted" in refused.stderr
    assert kubectl.run("delete", "namespace", ns).stdout.strip() == f'namespace "{ns}" deleted'
    gone = kubectl.run("get", "namespace", ns, check=False)
    assert gone.returncode != 0 and f'namespaces "{ns}" not found' in gone.stderr


@pytest.mark.parametrize("version", [None, "1.29"], ids=["dispatcher", "1.29"])
def test_secrets_and_configmaps(
    server: Server, tmp_path: Path, ns: str, version: str | None
) -> None:
    kubectl = _kubectl(server, tmp_path, ns, versioned(version) if version else None)
    made = kubectl.run(
        "create", "secret", "generic", "creds", f"--from-literal=password={VALUE}",
        "--from-literal=user=bob",
    )  # fmt: skip
    assert made.stdout.strip() == "secret/creds created"
    listed = kubectl.run("get", "secrets").stdout
    assert listed.splitlines()[0].split() == ["NAME", "TYPE", "DATA", "AGE"]
    assert listed.splitlines()[1].split()[:3] == ["creds", "Opaque", "2"]
    shown = yaml.safe_load(kubectl.run("get", "secret", "creds", "-o", "yaml").stdout)
    assert base64.b64decode(shown["data"]["password"]).decode() == VALUE
    assert shown["type"] == "Opaque" and shown["metadata"]["namespace"] == ns
    described = kubectl.run("describe", "secret", "creds").stdout
    assert f"password:  {len(VALUE)} bytes" in described and VALUE not in described

    kubectl.run("create", "configmap", "conf", "--from-literal=a=1", "--from-literal=b=2")
    table = kubectl.run("get", "configmaps").stdout.splitlines()
    assert table[0].split() == ["NAME", "DATA", "AGE"] and table[1].split()[:2] == ["conf", "2"]
    assert json.loads(kubectl.run("get", "cm", "conf", "-o", "json").stdout)["data"] == {
        "a": "1",
        "b": "2",
    }
    # kubectl apply of a changed Secret (a strategic merge patch): stringData folded in
    manifest = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "applied"},
        "stringData": {"token": "one"},
    }
    assert "created" in kubectl.run("apply", "-f", "-", input=json.dumps(manifest)).stdout
    manifest["stringData"] = {"token": "two"}
    assert "configured" in kubectl.run("apply", "-f", "-", input=json.dumps(manifest)).stdout
    token = kubectl.run("get", "secret", "applied", "-o", "jsonpath={.data.token}").stdout
    assert base64.b64decode(token).decode() == "two"

    wide = kubectl.run("get", "secrets", "-o", "wide", "-A").stdout
    encoded = base64.b64encode(VALUE.encode()).decode()
    assert VALUE not in listed + wide and encoded not in listed + wide
    kubectl.run("delete", "secret", "creds", "applied")
    kubectl.run("delete", "configmap", "conf")
    assert kubectl.run("get", "secrets", "-o", "name").stdout.strip() == ""
    assert VALUE not in server.output() and encoded not in server.output()


def test_describe_shows_events_and_apply_finds_its_namespace(
    server: Server, tmp_path: Path, ns: str
) -> None:
    kubectl = _kubectl(server, tmp_path, ns)
    first = job("described")
    applied = kubectl.run("apply", "-f", "-", "-v=6", input=json.dumps(first))
    assert "pytorchjob.kubeflow.org/described created" in applied.stdout
    store = server.store()
    store.record_event("PyTorchJob", ns, "described", reason="Checked", message="all good")
    store.record_event("PyTorchJob", ns, "described", reason="Slow", message="late", type="Warning")
    store.record_event("PyTorchJob", ns, "described", reason="Slow", message="late", type="Warning")

    described = kubectl.run("describe", "pytorchjob", "described").stdout
    events = described[described.index("Events:") :].splitlines()
    assert events[1].split() == ["Type", "Reason", "Age", "From", "Message"]
    rows = [line.split() for line in events[3:]]
    assert ["Normal", "Checked"] in [row[:2] for row in rows]
    slow = next(row for row in rows if row[1] == "Slow")
    assert slow[0] == "Warning" and "(x2" in " ".join(slow)
    assert slow[-2:] == ["ketch", "late"]

    listed = kubectl.run("get", "events").stdout.splitlines()
    assert listed[0].split()[:4] == ["NAME", "LAST", "SEEN", "TYPE"]
    assert any("pytorchjob/described" in line and "Checked" in line for line in listed)
    warnings = kubectl.run("get", "events", "--field-selector", "type=Warning", "-o", "name")
    assert len(warnings.stdout.split()) == 1
    assert "events.k8s.io" not in kubectl.run("get", "ev").stderr  # no ambiguous short name

    # the namespace now holds an object: apply's GET of it answers it
    second = job("second")
    again = kubectl.run("apply", "-f", "-", "-v=6", input=json.dumps(second))
    namespace_gets = [
        line
        for line in again.stderr.splitlines()
        if f"GET {server.url}/api/v1/namespaces/{ns} " in line
    ]
    assert namespace_gets and all("200 OK" in line for line in namespace_gets)
    kubectl.run("delete", "pytorchjob", "described", "second")
