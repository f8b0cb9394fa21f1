"""Kubernetes discovery over real HTTP and through the real kubectl: /version, /api,
/api/v1, /apis (legacy and aggregated, v2 and v2beta1), /apis/{group}/{version}."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from ketch.capabilities import CAPABILITIES
from ketch.core import config
from ketch.core.capability import kinds_of
from ketch.server.core_api import core_capability
from ketch.server.discovery import KUBERNETES_MINOR, discovery_format, version_priority
from ketch.server.media import parse_accept
from ketch.server.pods import pods_capability
from tests.server.helpers import Server
from tests.server.kubectl import VERSIONS, dispatcher, kubectl_for, versioned

# what the server serves: the capabilities' kinds and the core group's
KINDS = list(
    kinds_of([pods_capability(CAPABILITIES), core_capability(CAPABILITIES), *CAPABILITIES])
)
V2 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
V2BETA1 = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"
# what kubectl 1.30+ sends to /api and /apis
KUBECTL_ACCEPT = f"{V2},{V2BETA1},application/json"


# -- content negotiation --------------------------------------------------------------


def test_discovery_format_follows_the_clients_preference() -> None:
    assert discovery_format(KUBECTL_ACCEPT) == "v2"
    assert discovery_format(f"{V2BETA1},application/json") == "v2beta1"  # kubectl 1.27
    assert discovery_format(f"{V2BETA1};q=0.9,{V2}") == "v2"
    assert discovery_format(f"{V2};q=0,{V2BETA1}") == "v2beta1"
    assert discovery_format("application/json") == ""
    assert discovery_format(None) == "" and discovery_format("*/*") == ""
    assert discovery_format("application/json;g=apidiscovery.k8s.io;v=v9;as=X") is None
    assert discovery_format("application/yaml") is None
    assert [m.type for m in parse_accept("a/b;q=0.5, c/d, e/f;q=0")] == ["c/d", "a/b"]


def test_version_priority_orders_as_kubernetes_does() -> None:
    versions = ["v1alpha1", "v1beta1", "v1", "v2", "v1beta2", "foo"]
    assert sorted(versions, key=version_priority) == [
        "v2",
        "v1",
        "v1beta2",
        "v1beta1",
        "v1alpha1",
        "foo",
    ]


# -- over HTTP ------------------------------------------------------------------------


def test_version_reports_a_kubernetes_version_and_ketchs(client: httpx.Client) -> None:
    body = client.get("/version").json()
    assert body["major"] == "1" and body["minor"] == KUBERNETES_MINOR
    assert body["gitVersion"].startswith(f"v1.{KUBERNETES_MINOR}.")
    assert body["ketchVersion"] == config.version()
    system, _, arch = body["platform"].partition("/")
    assert system and arch
    for key in ("gitCommit", "gitTreeState", "buildDate", "goVersion", "compiler"):
        assert isinstance(body[key], str)  # the kubernetes client requires each


def test_legacy_group_list(client: httpx.Client) -> None:
    response = client.get("/apis")
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["kind"] == "APIGroupList" and body["apiVersion"] == "v1"
    groups = {g["name"]: g for g in body["groups"]}
    assert set(groups) == {k.group for k in KINDS if k.group}
    kubeflow = groups["kubeflow.org"]
    # in Kubernetes' order of version priority (v1alpha1: Kubeflow's PodDefault)
    assert [v["version"] for v in kubeflow["versions"]] == ["v1", "v1beta1", "v1alpha1"]
    assert kubeflow["preferredVersion"] == {"groupVersion": "kubeflow.org/v1", "version": "v1"}


@pytest.mark.parametrize("version", ["v2", "v2beta1"])
def test_aggregated_discovery_in_the_version_asked(client: httpx.Client, version: str) -> None:
    accept = V2 if version == "v2" else V2BETA1
    response = client.get("/apis", headers={"Accept": f"{accept},application/json"})
    assert response.status_code == 200
    assert response.headers["content-type"] == accept  # the parameters asked, echoed
    body = response.json()
    assert body["kind"] == "APIGroupDiscoveryList"
    assert body["apiVersion"] == f"apidiscovery.k8s.io/{version}"
    found = {
        (item["metadata"]["name"], v["version"], r["resource"]): r
        for item in body["items"]
        for v in item["versions"]
        for r in v["resources"]
    }
    for kind in (k for k in KINDS if k.group):  # the core group's are /api's
        for served in kind.versions:
            entry = found[(kind.group, served, kind.plural)]
            assert entry["responseKind"] == {
                "group": kind.group,
                "version": served,
                "kind": kind.kind,
            }
            assert entry["scope"] == ("Namespaced" if kind.namespaced else "Cluster")
            assert entry["singularResource"] == kind.singular
            assert entry.get("shortNames", []) == list(kind.short_names)
            assert entry.get("categories", []) == list(kind.categories)
            assert entry["verbs"] == list(kind.verbs)
            assert [s["subresource"] for s in entry["subresources"]] == list(kind.subresources)
    assert found[("trainer.kubeflow.org", "v1alpha1", "clustertrainingruntimes")]["scope"] == (
        "Cluster"
    )
    assert found[("kubeflow.org", "v1", "pytorchjobs")]["categories"] == ["all", "kubeflow"]
    kubeflow = next(i for i in body["items"] if i["metadata"]["name"] == "kubeflow.org")
    # preferred first
    assert [v["version"] for v in kubeflow["versions"]] == ["v1", "v1beta1", "v1alpha1"]
    assert all(v["freshness"] == "Current" for v in kubeflow["versions"])

    core = client.get("/api", headers={"Accept": accept})
    assert core.headers["content-type"] == accept
    assert core.json()["apiVersion"] == f"apidiscovery.k8s.io/{version}"
    assert [
        (i["metadata"]["name"], [v["version"] for v in i["versions"]]) for i in core.json()["items"]
    ] == [("", ["v1"])]
    core_resources = {r["resource"]: r for r in core.json()["items"][0]["versions"][0]["resources"]}
    assert set(core_resources) == {k.plural for k in KINDS if not k.group}
    assert core_resources["events"]["verbs"] == ["get", "list", "watch"]  # read-only
    assert core_resources["namespaces"]["scope"] == "Cluster"
    assert core_resources["secrets"]["subresources"] == []


def test_core_group(client: httpx.Client) -> None:
    body = client.get("/api").json()
    assert body["kind"] == "APIVersions" and body["versions"] == ["v1"]
    assert body["serverAddressByClientCIDRs"][0]["clientCIDR"] == "0.0.0.0/0"
    resources = client.get("/api/v1").json()
    assert resources["kind"] == "APIResourceList" and resources["groupVersion"] == "v1"
    core = sorted(k.plural for k in KINDS if not k.group)
    assert sorted(r["name"] for r in resources["resources"] if "/" not in r["name"]) == core


def test_group_version_resources(client: httpx.Client) -> None:
    body = client.get("/apis/kubeflow.org/v1").json()
    assert body["kind"] == "APIResourceList" and body["groupVersion"] == "kubeflow.org/v1"
    resources = {r["name"]: r for r in body["resources"]}
    job = resources["pytorchjobs"]
    assert job == {
        "name": "pytorchjobs",
        "singularName": "pytorchjob",
        "namespaced": True,
        "kind": "PyTorchJob",
        "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
        "categories": ["all", "kubeflow"],
    }
    assert resources["pytorchjobs/status"]["kind"] == "PyTorchJob"
    assert set(resources["pytorchjobs/status"]["verbs"]) >= {"get", "update"}
    assert "experiments" not in resources  # v1beta1's

    trainer = client.get("/apis/trainer.kubeflow.org/v1alpha1").json()["resources"]
    cluster = next(r for r in trainer if r["name"] == "clustertrainingruntimes")
    assert cluster["namespaced"] is False and cluster["kind"] == "ClusterTrainingRuntime"
    runs = client.get("/apis/pipelines.ketch.dev/v1").json()["resources"][0]
    assert runs["shortNames"] == ["run", "runs", "pr"]

    missing = client.get("/apis/kubeflow.org/v9")
    assert missing.status_code == 404 and "kubeflow.org/v9" in missing.json()["message"]


def test_each_document_has_an_etag(client: httpx.Client) -> None:
    for path, accept in (("/apis", V2), ("/apis", "application/json"), ("/version", "*/*")):
        first = client.get(path, headers={"Accept": accept})
        etag = first.headers["etag"]
        again = client.get(path, headers={"Accept": accept, "If-None-Match": etag})
        assert again.status_code == 304 and again.headers["etag"] == etag
    legacy = client.get("/apis").headers["etag"]
    assert client.get("/apis", headers={"Accept": V2}).headers["etag"] != legacy


def test_an_unacceptable_accept_is_refused(client: httpx.Client) -> None:
    response = client.get("/apis", headers={"Accept": "application/yaml"})
    assert response.status_code == 406
    assert "application/json" in response.json()["message"]


def test_kfp_facade_and_ketch_kinds_are_still_served(client: httpx.Client) -> None:
    assert client.get("/apis/v2beta1/healthz").json() == {
        "multi_user": False,
        "pipeline_store": "database",
    }
    pipelines = client.get("/apis/v2beta1/pipelines")
    assert pipelines.status_code == 200 and "kind" not in pipelines.json()
    kinds = {k["kind"]: k for k in client.get("/apis/ketch.dev/v1/kinds").json()["items"]}
    assert {k.kind for k in KINDS} == set(kinds)
    assert kinds["ClusterTrainingRuntime"]["namespaced"] is False


# -- through kubectl ------------------------------------------------------------------


BINARIES = [*VERSIONS, "dispatcher"]


def _kubectl_binary(which: str) -> Path:
    return dispatcher() if which == "dispatcher" else versioned(which)


@pytest.mark.parametrize("which", BINARIES)
def test_kubectl_api_resources(server: Server, tmp_path: Path, which: str) -> None:
    kubectl = kubectl_for(server.url, tmp_path, _kubectl_binary(which))
    wide = kubectl.run("api-resources", "-o", "wide").stdout
    rows = {line.split()[0]: line.split() for line in wide.splitlines()[1:] if line.strip()}
    assert set(rows) >= {k.plural for k in KINDS}
    assert rows["pytorchjobs"][1:4] == ["kubeflow.org/v1", "true", "PyTorchJob"]
    assert rows["pytorchjobs"][-1] == "all,kubeflow"  # CATEGORIES
    assert rows["pipelineruns"][1] == "run,runs,pr"  # SHORTNAMES
    assert rows["inferenceservices"][1] == "isvc"
    assert rows["clustertrainingruntimes"][1:4] == [
        "trainer.kubeflow.org/v1alpha1",
        "false",
        "ClusterTrainingRuntime",
    ]
    by_category = kubectl.run("api-resources", "--categories=kubeflow", "-o", "name").stdout
    assert "pytorchjobs.kubeflow.org" in by_category.split()
    assert "inferenceservices.serving.kserve.io" not in by_category.split()


@pytest.mark.parametrize("which", BINARIES)
def test_kubectl_get_in_an_empty_namespace(
    server: Server, tmp_path: Path, ns: str, which: str
) -> None:
    kubectl = kubectl_for(server.url, tmp_path, _kubectl_binary(which), namespace=ns)
    for name in ("pytorchjobs", "pytorchjob", "isvc", "pytorchjobs.kubeflow.org"):
        result = kubectl.run("get", name)
        assert result.stdout == "" and f"No resources found in {ns} namespace." in result.stderr


def test_the_dispatcher_runs_the_kubectl_of_the_servers_minor_version(
    server: Server, tmp_path: Path
) -> None:
    kubectl = kubectl_for(server.url, tmp_path, dispatcher())
    versions = json.loads(kubectl.run("version", "-o", "json").stdout)
    # a 1.32 server: the dispatcher (itself kubectl 1.32) runs its own kubectl rather
    # than one of kubectl.1.NN
    assert versions["serverVersion"]["minor"] == KUBERNETES_MINOR
    client = versions["clientVersion"]
    assert client["major"] == "1" and client["minor"].rstrip("+") == KUBERNETES_MINOR, client
    assert client["gitVersion"].startswith(f"v1.{KUBERNETES_MINOR}."), client
    assert "WARNING" not in kubectl.run("version").stderr  # no version skew
