"""Kubeflow's PodDefaults on a Notebook's pod: which ones select it, how they merge
(as Kubeflow's admission webhook merges them, conflicts refused), the checks of a
PodDefault at apply, the environment read from Secrets and ConfigMaps; and on a real
``ketch up`` with a real JupyterLab, a kernel that sees a PodDefault's variables and
its Secret's values, a notebook it does not select that does not, a pod carrying its
labels and annotations, a notebook that waits for a missing Secret and starts once it
is there, and one that two conflicting PodDefaults keep from starting."""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ketch.core.errors import InvalidSpec
from ketch.core.resource import Resource
from ketch.notebooks.admission import apply_to_notebook, merge
from ketch.notebooks.environment import ConfigMissing, PodFields, resolve
from ketch.notebooks.poddefaults import PodDefaultRefused, select, validate_poddefault
from ketch.notebooks.workspace import claim_dir, plan
from tests.notebooks.helpers import (
    events,
    example_notebook,
    execute,
    path,
    requires_jupyterlab,
    start_kernel,
    status,
    wait_ready,
)
from tests.server.fixtures import serve_on
from tests.server.helpers import Server, assert_status, base_env, ketch_command
from tests.server.kubectl import kubectl_for
from tests.waiting import wait_for

PD_API = "/apis/kubeflow.org/v1alpha1"
RECORD = "poddefault.admission.kubeflow.org/poddefault-"


def poddefault(name: str, namespace: str = "team", **spec: Any) -> dict[str, Any]:
    spec.setdefault("selector", {"matchLabels": {"access-ml-pipeline": "true"}})
    return {
        "apiVersion": "kubeflow.org/v1alpha1",
        "kind": "PodDefault",
        "metadata": {"name": name, "namespace": namespace, "resourceVersion": "5"},
        "spec": spec,
    }


def _pd(name: str, namespace: str = "team", **spec: Any) -> Resource:
    resource = Resource.from_manifest(poddefault(name, namespace, **spec))
    validate_poddefault(resource)
    return resource


def _notebook(name: str = "nb", labels: dict[str, str] | None = None) -> Resource:
    manifest = example_notebook(name, "team")
    manifest["metadata"]["labels"].update(labels or {})
    return Resource.from_manifest(manifest)


def _refused_at_apply(manifest: dict[str, Any]) -> InvalidSpec:
    with pytest.raises(InvalidSpec) as refused:
        validate_poddefault(Resource.from_manifest(manifest))
    return refused.value


# -- selection -------------------------------------------------------------------------


def test_selectors_as_kubernetes_reads_them() -> None:
    labels = {"access-ml-pipeline": "true", "tier": "gpu", "statefulset": "nb"}
    expressions = [
        ({"key": "tier", "operator": "In", "values": ["gpu", "tpu"]}, True),
        ({"key": "tier", "operator": "NotIn", "values": ["gpu"]}, False),
        ({"key": "missing", "operator": "NotIn", "values": ["x"]}, True),
        ({"key": "tier", "operator": "Exists"}, True),
        ({"key": "tier", "operator": "DoesNotExist"}, False),
        ({"key": "missing", "operator": "DoesNotExist"}, True),
    ]
    for expression, selected in expressions:
        found = select([_pd("e", selector={"matchExpressions": [expression]})], "team", labels)
        assert bool(found) is selected, expression
    both = {"matchLabels": {"tier": "gpu"}, "matchExpressions": [expressions[0][0]]}
    assert select([_pd("both", selector=both)], "team", labels)
    assert not select([_pd("other", selector={"matchLabels": {"tier": "cpu"}})], "team", labels)
    # an empty selector selects every pod; another namespace's PodDefault none
    assert select([_pd("all", selector={})], "team", labels)
    assert not select([_pd("elsewhere", "other", selector={})], "team", labels)


def test_the_pods_labels_select_and_the_exclude_annotation_opts_out() -> None:
    # the Notebook's own labels reach its pod (as Kubeflow's web app sets its
    # configurations), and so do its template's and notebook-name
    by_label = apply_to_notebook(_notebook(labels={"access-ml-pipeline": "true"}), [_pd("ml")])
    assert by_label.names == ["ml"]
    template = example_notebook("nb", "team")
    template["spec"]["template"]["metadata"] = {"labels": {"access-ml-pipeline": "true"}}
    assert apply_to_notebook(Resource.from_manifest(template), [_pd("ml")]).names == ["ml"]
    by_name = _pd("mine", selector={"matchLabels": {"notebook-name": "nb"}})
    assert apply_to_notebook(_notebook(), [by_name, _pd("ml")]).names == ["mine"]
    # in the order of their names
    ordered = [_pd("zeta"), _pd("alpha")]
    found = apply_to_notebook(_notebook(labels={"access-ml-pipeline": "true"}), ordered)
    assert found.names == ["alpha", "zeta"]

    excluded = example_notebook("nb", "team")
    excluded["metadata"]["labels"]["access-ml-pipeline"] = "true"
    excluded["metadata"]["annotations"]["poddefault.admission.kubeflow.org/exclude"] = "true"
    assert apply_to_notebook(Resource.from_manifest(excluded), [_pd("ml")]).names == []


# -- merging ---------------------------------------------------------------------------


def _pod(**spec: Any) -> dict[str, Any]:
    spec.setdefault("containers", [{"name": "main", "image": "img"}])
    return spec


def test_what_a_poddefault_adds_to_the_pod() -> None:
    first = _pd(
        "a",
        env=[{"name": "A", "value": "1"}],
        envFrom=[{"secretRef": {"name": "creds"}, "prefix": "ML_"}],
        volumes=[{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}],
        volumeMounts=[{"name": "data", "mountPath": "/data"}],
        labels={"team": "ml"},
        annotations={"example.com/owner": "ml"},
        tolerations=[{"key": "gpu", "operator": "Exists"}],
        command=["jupyter", "lab"],
        args=["--a"],
        serviceAccountName="first",
        automountServiceAccountToken=True,
        initContainers=[{"name": "init", "image": "busybox"}],
        sidecars=[{"name": "side", "image": "busybox"}],
    )
    second = _pd(
        "b",
        env=[{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
        envFrom=[{"configMapRef": {"name": "settings"}}],
        args=["--b"],
        serviceAccountName="second",
        automountServiceAccountToken=False,
    )
    pod = _pod(
        containers=[{"name": "main", "image": "img", "env": [{"name": "OWN", "value": "x"}]}]
    )
    merged = merge("nb-0", {"app": "nb"}, {}, pod, [first, second])
    assert merged.names == ["a", "b"]
    main, sidecar = merged.spec["containers"]
    # the same variable from two PodDefaults is one variable
    assert main["env"] == [
        {"name": "OWN", "value": "x"},
        {"name": "A", "value": "1"},
        {"name": "B", "value": "2"},
    ]
    assert main["envFrom"] == [
        {"prefix": "ML_", "secretRef": {"name": "creds"}},
        {"configMapRef": {"name": "settings"}},
    ]
    assert main["volumeMounts"] == [{"name": "data", "mountPath": "/data"}]
    # command and args from the first PodDefault that has them
    assert main["command"] == ["jupyter", "lab"] and main["args"] == ["--a"]
    assert sidecar["name"] == "side" and "env" not in sidecar
    assert merged.spec["initContainers"] == [{"name": "init", "image": "busybox"}]
    assert merged.spec["volumes"] == [
        {"name": "data", "persistentVolumeClaim": {"claimName": "data"}}
    ]
    assert merged.spec["tolerations"] == [{"key": "gpu", "operator": "Exists"}]
    # the last PodDefault's service account and token setting win
    assert merged.spec["serviceAccountName"] == "second"
    assert merged.spec["automountServiceAccountToken"] is False
    assert merged.labels == {"app": "nb", "team": "ml"}
    assert merged.annotations == {
        "example.com/owner": "ml",
        f"{RECORD}a": "5",
        f"{RECORD}b": "5",
    }
    assert any("sidecars side" in n for n in merged.notes)
    assert any("initContainers init" in n for n in merged.notes)

    # a container's own command and args are kept
    own = _pod(containers=[{"name": "main", "image": "img", "command": ["jupyter"]}])
    kept_spec = merge("nb-0", {}, {}, own, [first]).spec["containers"][0]
    assert kept_spec["command"] == ["jupyter"] and kept_spec["args"] == ["--a"]


@pytest.mark.parametrize(
    ("pod", "labels", "annotations", "first", "second", "words"),
    [
        # the same variable with another value, from two PodDefaults
        (
            _pod(),
            {},
            {},
            {"env": [{"name": "A", "value": "1"}]},
            {"env": [{"name": "A", "value": "2"}]},
            ["env 'A'", "PodDefault 'b'", "PodDefault 'a'"],
        ),
        # the container's own variable is not overridden: a conflict
        (
            _pod(containers=[{"name": "main", "image": "i", "env": [{"name": "A", "value": "0"}]}]),
            {},
            {},
            {"env": [{"name": "A", "value": "1"}]},
            {},
            ["env 'A' in container 'main'", "PodDefault 'a'"],
        ),
        (
            _pod(volumes=[{"name": "data", "emptyDir": {}}]),
            {},
            {},
            {"volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "d"}}]},
            {},
            ["volume 'data'", "PodDefault 'a'"],
        ),
        (
            _pod(),
            {},
            {},
            {"volumeMounts": [{"name": "x", "mountPath": "/data"}]},
            {"volumeMounts": [{"name": "y", "mountPath": "/data"}]},
            ["mountPath '/data'", "PodDefault 'b'"],
        ),
        (
            _pod(),
            {"team": "a"},
            {},
            {"labels": {"team": "b"}},
            {},
            ["label 'team'", "PodDefault 'a'", "the pod"],
        ),
        (
            _pod(),
            {},
            {"owner": "x"},
            {"annotations": {"owner": "y"}},
            {},
            ["annotation 'owner'"],
        ),
        (
            _pod(),
            {},
            {},
            {"tolerations": [{"key": "gpu", "operator": "Exists"}]},
            {"tolerations": [{"key": "gpu", "operator": "Equal", "value": "1"}]},
            ["toleration 'gpu'"],
        ),
        (
            _pod(),
            {},
            {},
            {"sidecars": [{"name": "main", "image": "other"}]},
            {},
            ["container 'main'"],
        ),
    ],
)
def test_conflicts_refuse_the_pod_naming_the_poddefaults(
    pod: dict[str, Any],
    labels: dict[str, str],
    annotations: dict[str, str],
    first: dict[str, Any],
    second: dict[str, Any],
    words: list[str],
) -> None:
    defaults = [_pd("a", **first), _pd("b", **second)]
    with pytest.raises(PodDefaultRefused) as refused:
        merge("nb-0", labels, annotations, pod, defaults)
    message = str(refused.value)
    assert message.startswith("conflict applying PodDefaults a, b to pod nb-0: ")
    for word in words:
        assert word in message, (word, message)
    assert set(refused.value.names) <= {"a", "b"} and refused.value.names


def test_the_same_item_twice_is_no_conflict() -> None:
    mount = {"name": "data", "mountPath": "/data", "readOnly": False}
    spec = {
        "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "d"}}],
        "volumeMounts": [mount],
        "env": [{"name": "A", "value": "1"}],
        "labels": {"team": "ml"},
    }
    merged = merge("nb-0", {"team": "ml"}, {}, _pod(), [_pd("a", **spec), _pd("b", **spec)])
    assert merged.spec["containers"][0]["volumeMounts"] == [{"name": "data", "mountPath": "/data"}]
    assert len(merged.spec["volumes"]) == 1


def test_a_poddefaults_claim_is_a_folder_like_the_notebooks_own(tmp_path: Path) -> None:
    shared = _pd(
        "shared",
        volumes=[{"name": "shared", "persistentVolumeClaim": {"claimName": "team-data"}}],
        volumeMounts=[{"name": "shared", "mountPath": "/home/jovyan/shared"}],
    )
    applied = apply_to_notebook(_notebook(labels={"access-ml-pipeline": "true"}), [shared])
    layout = plan(tmp_path, "team", "nb", applied.spec, applied.container)
    assert layout.root == claim_dir(tmp_path, "team", "nb-workspace")
    assert (layout.root / "shared", claim_dir(tmp_path, "team", "team-data")) in layout.links
    assert claim_dir(tmp_path, "team", "team-data") in layout.owned
    assert applied.annotations == {f"{RECORD}shared": "5"}


def test_a_pod_made_invalid_by_its_poddefaults_is_refused() -> None:
    dangling = _pd("dangling", volumeMounts=[{"name": "nowhere", "mountPath": "/x"}])
    with pytest.raises(PodDefaultRefused) as refused:
        apply_to_notebook(_notebook(labels={"access-ml-pipeline": "true"}), [dangling])
    message = str(refused.value)
    assert "PodDefaults dangling" in message and "volumeMounts[2].name" in message
    assert refused.value.names == ["dangling"]
    token = _pd("token", args=["--IdentityProvider.token=x"])
    with pytest.raises(PodDefaultRefused, match="set by Ketch"):
        apply_to_notebook(_notebook(labels={"access-ml-pipeline": "true"}), [token])


# -- checks at apply -----------------------------------------------------------------------


def test_kubeflows_poddefaults_are_valid() -> None:
    # the shapes of Kubeflow's documented examples
    validate_poddefault(
        Resource.from_manifest(
            poddefault(
                "access-ml-pipeline",
                desc="Allow access to Kubeflow Pipelines",
                volumes=[
                    {
                        "name": "volume-kf-pipeline-token",
                        "projected": {
                            "sources": [
                                {
                                    "serviceAccountToken": {
                                        "path": "token",
                                        "expirationSeconds": 7200,
                                        "audience": "pipelines.kubeflow.org",
                                    }
                                }
                            ]
                        },
                    }
                ],
                volumeMounts=[
                    {
                        "mountPath": "/var/run/secrets/kubeflow/pipelines",
                        "name": "volume-kf-pipeline-token",
                        "readOnly": True,
                    }
                ],
                env=[
                    {
                        "name": "KF_PIPELINES_SA_TOKEN_PATH",
                        "value": "/var/run/secrets/kubeflow/pipelines/token",
                    },
                    {
                        "name": "S3_KEY",
                        "valueFrom": {"secretKeyRef": {"name": "s3", "key": "key"}},
                    },
                ],
            )
        )
    )


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"selector": {"matchExpressions": [{"key": "a", "operator": "Is"}]}}, "operator"),
        (
            {"selector": {"matchExpressions": [{"key": "a", "operator": "In"}]}},
            "spec.selector.matchExpressions[0].values",
        ),
        (
            {
                "selector": {
                    "matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]
                }
            },
            "spec.selector.matchExpressions[0].values",
        ),
        ({"selector": {"matchLabels": {"a b": "x"}}}, "spec.selector.matchLabels[a b]"),
        (
            {
                "selector": {},
                "env": [
                    {
                        "name": "A",
                        "valueFrom": {
                            "secretKeyRef": {"name": "s", "key": "k"},
                            "fieldRef": {"fieldPath": "metadata.name"},
                        },
                    }
                ],
            },
            "spec.env[0].valueFrom",
        ),
        ({"selector": {}, "env": [{"value": "x"}]}, "spec.env[0].name"),
        ({"selector": {}, "envFrom": [{"prefix": "A_"}]}, "spec.envFrom[0]"),
        ({"selector": {}, "envFrom": [{"secretRef": {}}]}, "spec.envFrom[0].secretRef.name"),
        ({"selector": {}, "sidecars": [{"name": "s"}]}, "spec.sidecars[0].image"),
        (
            {"selector": {}, "volumeMounts": [{"name": "v", "mountPath": "data"}]},
            "spec.volumeMounts[0].mountPath",
        ),
        (
            {
                "selector": {},
                "volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": "A/b"}}],
            },
            "spec.volumes[0].persistentVolumeClaim.claimName",
        ),
        ({"selector": {}, "tolerations": [{"operator": "Maybe"}]}, "spec.tolerations[0].operator"),
        ({"selector": {}, "env": "A=1"}, "spec.env"),
    ],
)
def test_refusals_name_the_field(spec: dict[str, Any], field: str) -> None:
    manifest = poddefault("pd")
    manifest["spec"] = spec
    refused = _refused_at_apply(manifest)
    assert refused.field is not None and field in refused.field, (refused.field, str(refused))


def test_a_selector_is_required_and_the_name_fits_the_record() -> None:
    manifest = poddefault("pd")
    del manifest["spec"]["selector"]
    assert _refused_at_apply(manifest).field == "spec.selector"
    assert _refused_at_apply(poddefault("x" * 53)).field == "metadata.name"
    validate_poddefault(Resource.from_manifest(poddefault("x" * 52)))


# -- the environment -----------------------------------------------------------------------


def _secret(name: str, **values: str) -> Resource:
    data = {k: base64.b64encode(v.encode()).decode() for k, v in values.items()}
    return Resource.from_manifest(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": "team"},
            "spec": {"type": "Opaque", "data": data},
        }
    )


def _config_map(name: str, **values: str) -> Resource:
    return Resource.from_manifest(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "team"},
            "spec": {"data": values, "binaryData": {"BIN": "AAE="}},
        }
    )


def _reader(*objects: Resource) -> Any:
    stored = {(o.kind, o.metadata.name): o for o in objects}
    return lambda kind, name: stored.get((kind, name))


POD = PodFields(name="nb-0", namespace="team", labels={"app": "nb"})


def test_the_environment_as_the_kubelet_makes_it() -> None:
    container = {
        "envFrom": [
            {"secretRef": {"name": "creds"}, "prefix": "ML_"},
            {"configMapRef": {"name": "settings"}},
            {"secretRef": {"name": "absent", "optional": True}},
        ],
        "env": [
            {"name": "MODE", "value": "plain"},
            {"name": "KEY", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "KEY"}}},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {
                "name": "APP",
                "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}},
            },
            {
                "name": "NONE",
                "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "k", "optional": True}},
            },
        ],
    }
    read = _reader(
        _secret("creds", KEY="s3cret", OTHER="two"),
        _config_map("settings", MODE="from-map", LEVEL="3", **{"bad=key": "x"}),
    )
    found = resolve(container, POD, read)
    # env wins over every source; what is read from elsewhere is kept apart
    assert found.plain == {"MODE": "plain"}
    assert found.hidden == {
        "ML_KEY": "s3cret",
        "ML_OTHER": "two",
        "LEVEL": "3",
        "KEY": "s3cret",
        "POD": "nb-0",
        "APP": "nb",
    }
    assert any("bad=key" in note for note in found.notes)


@pytest.mark.parametrize(
    ("container", "message"),
    [
        ({"envFrom": [{"secretRef": {"name": "creds"}}]}, 'secret "creds" not found'),
        ({"envFrom": [{"configMapRef": {"name": "settings"}}]}, 'configmap "settings" not found'),
        (
            {"env": [{"name": "K", "valueFrom": {"secretKeyRef": {"name": "there", "key": "k"}}}]},
            "couldn't find key k in Secret team/there",
        ),
    ],
)
def test_a_missing_source_stops_the_container_with_the_kubelets_message(
    container: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigMissing) as missing:
        resolve(container, POD, _reader(_secret("there", other="x")))
    assert str(missing.value) == message


# -- on a real ketch up, with a real JupyterLab ---------------------------------------------

NS = "pd-team"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from serve_on("sqlite", tmp_path_factory.mktemp("ketch-poddefaults"))


@pytest.fixture(scope="module")
def http(server: Server) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


def _pd_path(namespace: str, name: str | None = None) -> str:
    base = f"{PD_API}/namespaces/{namespace}/poddefaults"
    return f"{base}/{name}" if name else base


def _pod_of(http: httpx.Client, name: str) -> dict[str, Any]:
    found: dict[str, Any] = http.get(f"/api/v1/namespaces/{NS}/pods/{name}-0").json()
    return found


def _waiting(http: httpx.Client, name: str) -> dict[str, Any] | None:
    found: dict[str, Any] | None = status(http, NS, name).get("containerState", {}).get("waiting")
    return found


@requires_jupyterlab
@pytest.mark.timeout(300)
def test_a_kernel_sees_its_poddefaults_and_its_secret(server: Server, http: httpx.Client) -> None:
    ml = poddefault(
        "access-ml",
        NS,
        desc="Give access to the ML store",
        env=[{"name": "ML_ENDPOINT", "value": "http://store.example"}],
        envFrom=[{"secretRef": {"name": "ml-creds"}, "prefix": "ML_"}],
        volumes=[{"name": "shared", "persistentVolumeClaim": {"claimName": "team-shared"}}],
        volumeMounts=[{"name": "shared", "mountPath": "/home/jovyan/shared"}],
        labels={"ml-access": "granted"},
        annotations={"example.com/granted-by": "access-ml"},
    )
    del ml["metadata"]["resourceVersion"]
    assert http.post(_pd_path(NS), json=ml).status_code == 201
    version = http.get(_pd_path(NS, "access-ml")).json()["metadata"]["resourceVersion"]

    notebook = example_notebook("granted", NS)
    notebook["spec"]["template"]["metadata"] = {"labels": {"access-ml-pipeline": "true"}}
    del notebook["spec"]["template"]["spec"]["volumes"][1]
    del notebook["spec"]["template"]["spec"]["containers"][0]["volumeMounts"][1]
    assert http.post(path(NS), json=notebook).status_code == 201
    # the Secret is not there yet: the kubelet's CreateContainerConfigError
    waiting = wait_for(lambda: _waiting(http, "granted"), 30, what="the notebook to wait")
    assert waiting["reason"] == "CreateContainerConfigError"
    assert waiting["message"] == 'secret "ml-creds" not found'
    failed = wait_for(
        lambda: [e for e in events(http, NS, "granted") if e["reason"] == "Failed"], 30
    )
    assert failed[0]["type"] == "Warning" and "ml-creds" in failed[0]["message"]

    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "ml-creds"},
        "stringData": {"TOKEN": "s3cret-token"},
    }
    assert http.post(f"/api/v1/namespaces/{NS}/secrets", json=secret).status_code == 201
    wait_ready(http, NS, "granted")

    prefix = f"/notebook/{NS}/granted/"
    kernel = start_kernel(http, prefix)
    code = "import os; (os.environ['ML_ENDPOINT'], os.environ['ML_TOKEN'])"
    assert execute(server.url, prefix, kernel, code) == "('http://store.example', 's3cret-token')"
    shared = execute(server.url, prefix, kernel, "os.path.realpath('shared')")
    assert shared.strip("'") == str(server.home / "volumes" / NS / "team-shared")

    pod = _pod_of(http, "granted")
    assert pod["metadata"]["labels"]["ml-access"] == "granted"
    annotations = pod["metadata"]["annotations"]
    assert annotations["example.com/granted-by"] == "access-ml"
    assert annotations[f"{RECORD}access-ml"] == version
    container = pod["spec"]["containers"][0]
    assert {"name": "ML_ENDPOINT", "value": "http://store.example"} in container["env"]
    assert container["envFrom"] == [{"prefix": "ML_", "secretRef": {"name": "ml-creds"}}]
    # the Secret's value is in no pod and no manifest
    assert "s3cret-token" not in json.dumps(pod)
    applied = [e for e in events(http, NS, "granted") if e["reason"] == "PodDefaultsApplied"]
    assert applied and "access-ml" in applied[0]["message"]

    # a notebook the PodDefault does not select gets none of it
    plain = example_notebook("plain", NS)
    assert http.post(path(NS), json=plain).status_code == 201
    wait_ready(http, NS, "plain")
    other = f"/notebook/{NS}/plain/"
    kernel = start_kernel(http, other)
    absent = "import os; [k for k in os.environ if k.startswith('ML_')]"
    assert execute(server.url, other, kernel, absent) == "[]"
    plain_pod = _pod_of(http, "plain")
    assert "ml-access" not in plain_pod["metadata"]["labels"]
    assert not any(k.startswith(RECORD) for k in plain_pod["metadata"].get("annotations", {}))

    for name in ("granted", "plain"):
        assert http.delete(path(NS, name)).status_code == 200


def test_conflicting_poddefaults_keep_a_notebook_from_starting(
    server: Server, http: httpx.Client, tmp_path: Path
) -> None:
    # applied with the real kubectl, listed with kubectl and ketch
    kubectl = kubectl_for(server.url, tmp_path / "kube", namespace=NS)
    for name, value in (("mode-a", "a"), ("mode-b", "b")):
        manifest = poddefault(
            name,
            NS,
            selector={"matchLabels": {"conflicting": "true"}},
            desc=f"sets MODE to {value}",
            env=[{"name": "MODE", "value": value}],
        )
        del manifest["metadata"]["resourceVersion"]
        kubectl.run("apply", "-f", "-", input=json.dumps(manifest))
    listed = kubectl.run("get", "poddefaults").stdout
    assert "mode-a" in listed and "mode-b" in listed
    assert "poddefault.kubeflow.org/mode-a" in kubectl.run("get", "kubeflow").stdout
    env = base_env(tmp_path / "client-home")
    env["KETCH_URL"] = server.url
    got = subprocess.run(
        [*ketch_command(), "get", "poddefaults", "-n", NS, "-o", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert got.returncode == 0, got.stderr
    assert {"mode-a", "mode-b"} <= {i["metadata"]["name"] for i in json.loads(got.stdout)["items"]}

    notebook = example_notebook("torn", NS)
    notebook["metadata"]["labels"]["conflicting"] = "true"
    assert http.post(path(NS), json=notebook).status_code == 201
    waiting = wait_for(lambda: _waiting(http, "torn"), 30, what="the notebook to wait")
    assert waiting["reason"] == "PodDefaultConflict"
    assert "mode-a" in waiting["message"] and "mode-b" in waiting["message"]
    assert "env 'MODE'" in waiting["message"]
    refused = wait_for(
        lambda: [e for e in events(http, NS, "torn") if e["reason"] == "FailedCreate"], 30
    )
    assert refused[0]["type"] == "Warning" and "mode-a, mode-b" in refused[0]["message"]
    assert status(http, NS, "torn")["readyReplicas"] == 0
    assert http.get(f"/notebook/{NS}/torn/").status_code == 503

    # a bad PodDefault is refused at apply, naming the field
    bad = poddefault("bad", NS, selector={"matchExpressions": [{"key": "a", "operator": "In"}]})
    message = assert_status(http.post(_pd_path(NS), json=bad), 422, "Invalid")
    assert "spec.selector.matchExpressions[0].values" in message
    assert http.delete(path(NS, "torn")).status_code == 200
