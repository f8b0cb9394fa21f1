"""Kubernetes' OpenAPI documents: pydantic schemas made structural, the v3 index and
group version documents, v2, and what kubectl does with them (explain, plain apply)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx
import pytest
import yaml
from pydantic import Field

from ketch.capabilities import CAPABILITIES
from ketch.core.capability import kinds_of
from ketch.core.kinds import Kind, registry_of
from ketch.core.spec import SpecModel, model_schema
from ketch.server.core_api import core_capability
from ketch.server.openapi import OpenAPIDocuments
from ketch.server.openapi_schemas import (
    document_path,
    published_spec,
    schema_name,
    schema_prefix,
)
from ketch.server.structural import INT_OR_STRING, PRESERVE, structural
from tests.server.fixtures import job, jobs_path
from tests.server.helpers import Server
from tests.server.kubectl import VERSIONS, dispatcher, kubectl_for, versioned

# what the server serves: the capabilities' kinds and the core group's
KINDS = list(kinds_of([core_capability(CAPABILITIES), *CAPABILITIES]))
PROTOBUF = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"

# -- pydantic to structural ---------------------------------------------------------------


class Port(SpecModel):
    """A port to listen on."""

    number: int = Field(gt=0, le=65535)


class Node(SpecModel):
    name: str
    children: list[Node] = Field(default_factory=list)


class Example(SpecModel):
    replica_count: int = Field(1, alias="replicaCount", ge=0, description="How many run.")
    image: str | None = None
    port: Port | None = None
    ports: dict[str, Port] = Field(default_factory=dict)
    mode: Literal["a", "b"] = "a"
    quantity: str | int | float = 1
    anything: Any = None
    labels: dict[str, str] = Field(default_factory=dict)
    free: dict[str, Any] = Field(default_factory=dict)
    choice: Port | Node | None = None
    tree: Node | None = None


def walk_structural(node: dict[str, Any]) -> None:
    """Every schema in ``node`` is structural: it has a type, or keeps what it is given,
    and refers to nothing."""
    assert not {"$ref", "$defs", "title", "oneOf", "allOf"} & set(node), node
    assert "type" in node or node.get(PRESERVE) or node.get(INT_OR_STRING), node
    assert "anyOf" not in node or node.get(INT_OR_STRING), node
    children = [*node.get("properties", {}).values(), node.get("items")]
    children.append(node.get("additionalProperties"))
    for child in children:
        if isinstance(child, dict):
            walk_structural(child)


def test_structural_schema_of_a_model() -> None:
    schema = structural(Example.model_json_schema(by_alias=True))
    assert schema["type"] == "object" and schema[PRESERVE] is True  # keeps unknown fields
    props = schema["properties"]
    assert "replica_count" not in props  # by its wire alias
    assert props["replicaCount"] == {
        "type": "integer",
        "minimum": 0,
        "description": "How many run.",
        "default": 1,
    }
    assert props["image"] == {"type": "string", "nullable": True}
    port = props["port"]
    assert port["nullable"] is True and port["type"] == "object"
    assert port["description"] == "A port to listen on."  # the model's docstring
    assert port["properties"]["number"] == {
        "type": "integer",
        "minimum": 0,
        "exclusiveMinimum": True,
        "maximum": 65535,
    }
    assert port["required"] == ["number"]
    assert props["ports"]["additionalProperties"]["properties"]["number"]["type"] == "integer"
    assert props["mode"] == {"type": "string", "enum": ["a", "b"], "default": "a"}
    assert props["quantity"][INT_OR_STRING] is True
    assert props["anything"] == {PRESERVE: True}
    assert props["labels"] == {"type": "object", "additionalProperties": {"type": "string"}}
    assert props["free"] == {"type": "object", PRESERVE: True}
    assert props["choice"] == {PRESERVE: True, "nullable": True}
    tree = props["tree"]
    assert tree["properties"]["name"] == {"type": "string"}
    # the model recurs: free-form where it does
    assert tree["properties"]["children"]["items"] == {PRESERVE: True}

    walk_structural(schema)


def test_schema_names_follow_kubernetes() -> None:
    assert schema_prefix("kubeflow.org", "v1") == "org.kubeflow.v1"
    assert schema_prefix("serving.kserve.io", "v1beta1") == "io.kserve.serving.v1beta1"
    assert schema_prefix("batch", "v1") == "io.k8s.api.batch.v1"
    assert schema_prefix("", "v1") == "io.k8s.api.core.v1"
    assert schema_prefix("events.k8s.io", "v1") == "io.k8s.api.events.v1"
    pytorch = next(k for k in KINDS if k.kind == "PyTorchJob")
    assert schema_name(pytorch, "v1") == "org.kubeflow.v1.PyTorchJob"


def test_every_kinds_spec_model_converts() -> None:
    with_models = [k for k in KINDS if k.spec_schema is not None]
    assert {k.kind for k in with_models} >= {
        "PyTorchJob",
        "TFJob",
        "MPIJob",
        "Job",
        "TrainJob",
        "TrainingRuntime",
        "ClusterTrainingRuntime",
        "Experiment",
        "InferenceService",
    }
    for kind in with_models:
        assert kind.spec_schema is not None
        converted = structural(kind.spec_schema())
        walk_structural(converted)
        assert converted["type"] == "object" and converted["properties"], kind.kind
        assert published_spec(kind)["properties"] == converted["properties"]
    run = next(k for k in KINDS if k.kind == "PipelineRun")
    assert run.spec_schema is None and published_spec(run)[PRESERVE] is True


def test_a_spec_schema_that_fails_is_published_free_form(caplog: pytest.LogCaptureFixture) -> None:
    broken = Kind(
        "Broken",
        "example.com",
        ("v1",),
        "brokens",
        spec_schema=_failing_schema,
    )
    assert published_spec(broken)[PRESERVE] is True
    assert "Broken" in caplog.text


def _failing_schema() -> dict[str, object]:
    raise TypeError("not a pydantic model")


def test_model_schema_is_made_once_by_alias() -> None:
    class Example(SpecModel):
        replica_count: int = Field(alias="replicaCount")

    schema = model_schema(Example)
    assert schema() is schema()
    assert "replicaCount" in schema()["properties"]


def test_documents_of_every_kind() -> None:
    documents = OpenAPIDocuments(registry_of(KINDS))
    index = yaml.safe_load(documents.index().body)["paths"]
    served = {document_path(k.group, v) for k in KINDS for v in k.versions}
    assert set(index) == served
    assert "api/v1" in served  # the core group's kinds
    for kind in KINDS:
        for version in kind.versions:
            published = documents.group_version(document_path(kind.group, version))
            assert published is not None
            assert index[document_path(kind.group, version)]["serverRelativeURL"].endswith(
                f"?hash={published.hash}"
            )
            schemas = yaml.safe_load(published.body)["components"]["schemas"]
            schema = schemas[schema_name(kind, version)]
            assert schema["x-kubernetes-group-version-kind"] == [
                {"group": kind.group, "kind": kind.kind, "version": version}
            ]
            if kind.object_schema is not None:  # top-level fields, as core kinds have
                assert set(schema["properties"]) == {
                    "apiVersion",
                    "kind",
                    "metadata",
                    *kind.object_schema(),
                }
            else:
                assert set(schema["properties"]) == {
                    "apiVersion",
                    "kind",
                    "metadata",
                    "spec",
                    "status",
                }
                assert schema["properties"]["status"][PRESERVE] is True
            meta_ref = schema["properties"]["metadata"]["allOf"][0]["$ref"]
            assert meta_ref.rsplit("/", 1)[-1] in schemas
    v2 = yaml.safe_load(documents.v2().body)
    assert v2["swagger"] == "2.0" and "org.kubeflow.v1.PyTorchJob" in v2["definitions"]
    assert "#/components/" not in documents.v2().body.decode()


# -- over HTTP ------------------------------------------------------------------------


def _document(client: httpx.Client, path: str) -> tuple[str, dict[str, Any]]:
    url = client.get("/openapi/v3").json()["paths"][path]["serverRelativeURL"]
    return url, client.get(url).json()


def test_v3_index_and_caching(client: httpx.Client) -> None:
    index = client.get("/openapi/v3")
    assert index.status_code == 200 and index.headers["cache-control"].startswith("no-cache")
    url = index.json()["paths"]["apis/kubeflow.org/v1"]["serverRelativeURL"]
    parts = urlsplit(url)
    assert parts.path == "/openapi/v3/apis/kubeflow.org/v1" and parts.query.startswith("hash=")

    hashed = client.get(url)
    assert hashed.status_code == 200 and "immutable" in hashed.headers["cache-control"]
    assert hashed.headers["etag"] == f'"{parts.query.removeprefix("hash=")}"'
    plain = client.get(parts.path)
    assert plain.content == hashed.content and "no-cache" in plain.headers["cache-control"]
    unchanged = client.get(parts.path, headers={"If-None-Match": hashed.headers["etag"]})
    assert unchanged.status_code == 304

    stale = client.get(f"{parts.path}?hash=0123", follow_redirects=False)
    assert stale.status_code == 301 and stale.headers["location"] == url

    assert client.get("/openapi/v3/apis/kubeflow.org/v9").status_code == 404
    core = client.get("/openapi/v3/api/v1")  # the core group's kinds
    assert core.status_code == 200
    assert "io.k8s.api.core.v1.Secret" in core.json()["components"]["schemas"]


def test_writes_declare_field_validation(client: httpx.Client) -> None:
    _, document = _document(client, "apis/kubeflow.org/v1")
    paths = document["paths"]
    collection = paths["/apis/kubeflow.org/v1/namespaces/{namespace}/pytorchjobs"]
    item = paths["/apis/kubeflow.org/v1/namespaces/{namespace}/pytorchjobs/{name}"]
    gvk = {"group": "kubeflow.org", "kind": "PyTorchJob", "version": "v1"}
    for operation in (collection["post"], item["put"], item["patch"]):
        names = {p["name"] for p in operation["parameters"] if p["in"] == "query"}
        assert {"fieldValidation", "dryRun", "fieldManager"} <= names
        assert operation["x-kubernetes-group-version-kind"] == gvk
    assert set(item["patch"]["requestBody"]["content"]) == {
        "application/apply-patch+yaml",
        "application/json-patch+json",
        "application/merge-patch+json",
    }  # no strategic merge patch: kubectl sends custom resources merge patches
    assert collection["get"]["x-kubernetes-action"] == "list"
    assert "/apis/kubeflow.org/v1/pytorchjobs" in paths  # every namespace
    spec = document["components"]["schemas"]["org.kubeflow.v1.PyTorchJob"]["properties"]["spec"]
    assert spec["required"] == ["pytorchReplicaSpecs"]
    replica = spec["properties"]["pytorchReplicaSpecs"]["additionalProperties"]
    assert replica["properties"]["replicas"]["type"] == "integer"

    _, trainer = _document(client, "apis/trainer.kubeflow.org/v1alpha1")
    assert "/apis/trainer.kubeflow.org/v1alpha1/clustertrainingruntimes/{name}" in trainer["paths"]


def test_v2_is_json_and_protobuf_is_refused(client: httpx.Client) -> None:
    v2 = client.get("/openapi/v2")
    assert v2.status_code == 200 and v2.headers["content-type"] == "application/json"
    definitions = v2.json()["definitions"]
    assert "io.kserve.serving.v1beta1.InferenceService" in definitions
    refused = client.get("/openapi/v2", headers={"Accept": PROTOBUF})
    assert refused.status_code == 406 and "1.29" in refused.json()["message"]
    either = client.get("/openapi/v2", headers={"Accept": f"{PROTOBUF}, application/json"})
    assert either.status_code == 200


# -- through kubectl ------------------------------------------------------------------


BINARIES = [*VERSIONS, "dispatcher"]


def _kubectl_binary(which: str) -> Path:
    return dispatcher() if which == "dispatcher" else versioned(which)


def _fields(explained: str) -> list[str]:
    lines = explained.split("FIELDS:", 1)[1].splitlines()
    return [
        line.split()[0] for line in lines if line.startswith("  ") and not line.startswith("    ")
    ]


@pytest.mark.parametrize("which", BINARIES)
def test_kubectl_explain(server: Server, tmp_path: Path, which: str) -> None:
    kubectl = kubectl_for(server.url, tmp_path, _kubectl_binary(which))
    spec = kubectl.run("explain", "pytorchjob.spec").stdout
    assert "KIND:       PyTorchJob" in spec and "FIELD: spec <Object>" in spec
    assert {"pytorchReplicaSpecs", "runPolicy", "elasticPolicy"} <= set(_fields(spec))
    assert "pytorchReplicaSpecs\t<map[string]Object> -required-" in spec

    predictor = kubectl.run("explain", "inferenceservice.spec.predictor").stdout
    assert {"sklearn", "model", "minReplicas", "containers"} <= set(_fields(predictor))
    deep = kubectl.run("explain", "pytorchjob.spec.runPolicy.cleanPodPolicy").stdout
    assert "FIELD: cleanPodPolicy <string>" in deep
    if which != "1.29":  # kubectl 1.30 and later list an enum's values
        assert "ENUM:" in deep and "Running" in deep

    top = kubectl.run("explain", "clustertrainingruntime").stdout
    assert {"apiVersion", "kind", "metadata", "spec", "status"} <= set(_fields(top))
    meta = kubectl.run("explain", "pytorchjob.metadata").stdout
    assert {"name", "namespace", "labels", "resourceVersion"} <= set(_fields(meta))


@pytest.mark.parametrize("which", BINARIES)
def test_kubectl_apply_without_flags(
    server: Server, client: httpx.Client, tmp_path: Path, ns: str, which: str
) -> None:
    kubectl = kubectl_for(server.url, tmp_path, _kubectl_binary(which), namespace=ns)
    manifest = tmp_path / "job.yaml"
    manifest.write_text(yaml.safe_dump(job("applied")))
    created = kubectl.run("apply", "-f", str(manifest))
    assert created.stdout.strip() == "pytorchjob.kubeflow.org/applied created", created
    stored = client.get(jobs_path(ns, "applied")).json()
    assert stored["spec"]["runPolicy"] == {"suspend": True}
    annotations = stored["metadata"]["annotations"]
    assert "kubectl.kubernetes.io/last-applied-configuration" in annotations

    again = kubectl.run("apply", "-f", str(manifest))
    assert again.stdout.strip() == "pytorchjob.kubeflow.org/applied unchanged"
    manifest.write_text(yaml.safe_dump(job("applied", labels={"team": "a"})))
    changed = kubectl.run("apply", "-f", str(manifest))
    assert changed.stdout.strip() == "pytorchjob.kubeflow.org/applied configured"
    assert client.get(jobs_path(ns, "applied")).json()["metadata"]["labels"] == {"team": "a"}
    for output in (created, again, changed):
        assert "warning" not in output.stderr.lower(), output.stderr
