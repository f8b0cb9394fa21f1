"""Experiments Ketch cannot run are refused at apply, through a real ``ketch up``:
422 Invalid naming the field, nothing stored."""

from __future__ import annotations

import copy
from typing import Any

import httpx
import pytest

from tests.server import fixtures
from tests.tuning.conftest import experiment

server = fixtures.server  # a real ``ketch up`` per database, shared by the session
ns = fixtures.ns
client = fixtures.client


def _path(namespace: str, name: str) -> str:
    return f"/apis/kubeflow.org/v1beta1/namespaces/{namespace}/experiments/{name}"


def _refused(http: httpx.Client, namespace: str, manifest: dict[str, Any]) -> dict[str, Any]:
    name = manifest["metadata"]["name"]
    response = http.put(_path(namespace, name), json=manifest)
    assert response.status_code == 422, response.text
    assert "Traceback" not in response.text
    assert http.get(_path(namespace, name)).status_code == 404, "a refused Experiment was stored"
    return dict(response.json())


def _text(body: dict[str, Any]) -> str:
    return str(body.get("message") or body.get("detail") or body)


def _with_trial_spec(name: str, trial_spec: dict[str, Any], **spec: Any) -> dict[str, Any]:
    manifest = experiment(name, **spec)
    manifest["spec"]["trialTemplate"]["trialSpec"] = trial_spec
    return manifest


def _workflow() -> dict[str, Any]:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "spec": {
            "entrypoint": "train",
            "templates": [
                {
                    "name": "train",
                    "container": {
                        "name": "training-container",
                        "image": "python:3.11",
                        "command": [
                            "python",
                            "-c",
                            "print(1)",
                            "${trialParameters.x}",
                            "${trialParameters.y}",
                        ],
                    },
                }
            ],
        },
    }


def test_an_argo_workflow_trial_is_refused_naming_the_supported_kinds(
    client: httpx.Client, ns: str
) -> None:
    manifest = _with_trial_spec("argo", _workflow())
    template = manifest["spec"]["trialTemplate"]  # conditions given: Katib would accept it
    template["successCondition"] = 'status.[@this].#(phase=="Succeeded")#'
    template["failureCondition"] = 'status.[@this].#(phase=="Failed")#'
    text = _text(_refused(client, ns, manifest))
    assert "spec.trialTemplate.trialSpec.kind" in text
    assert "Workflow" in text
    for supported in ("Job (batch/v1)", "PyTorchJob (kubeflow.org/v1)", "TrainJob"):
        assert supported in text, text


def test_an_unknown_trial_kind_and_a_wrong_api_version_are_refused(
    client: httpx.Client, ns: str
) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "spec": {
            "containers": [
                {"name": "c", "command": ["${trialParameters.x}", "${trialParameters.y}"]}
            ]
        },
    }
    manifest = _with_trial_spec("pod-trial", pod)
    text = _text(_refused(client, ns, manifest))
    assert "spec.trialTemplate.trialSpec.kind" in text and "'Pod'" in text

    manifest = experiment("wrong-version")
    manifest["spec"]["trialTemplate"]["trialSpec"]["apiVersion"] = "kubeflow.org/v1"
    text = _text(_refused(client, ns, manifest))
    assert "spec.trialTemplate.trialSpec.apiVersion" in text and "batch/v1" in text


@pytest.mark.parametrize("kind", ["Custom", "PrometheusMetric"])
def test_sidecar_metrics_collectors_are_refused(client: httpx.Client, ns: str, kind: str) -> None:
    collector: dict[str, Any] = {"kind": kind}
    if kind == "Custom":
        collector["customCollector"] = {"name": "collector", "image": "example/collector:1"}
    manifest = experiment(
        f"collector-{kind.lower()}", metricsCollectorSpec={"collector": collector}
    )
    text = _text(_refused(client, ns, manifest))
    assert "spec.metricsCollectorSpec.collector.kind" in text
    assert kind in text and "StdOut" in text


def test_a_trial_template_that_is_an_invalid_job_is_refused(client: httpx.Client, ns: str) -> None:
    manifest = experiment("no-containers")
    job_spec = manifest["spec"]["trialTemplate"]["trialSpec"]["spec"]
    job_spec["template"]["spec"]["containers"] = []
    job_spec["template"]["spec"]["initContainers"] = [
        {"name": "init", "command": ["echo", "${trialParameters.x}", "${trialParameters.y}"]}
    ]
    text = _text(_refused(client, ns, manifest))
    assert "spec.trialTemplate.trialSpec.spec.template.spec.containers" in text, text


def test_a_pytorchjob_trial_template_is_checked_by_the_pytorchjob_validator(
    client: httpx.Client, ns: str
) -> None:
    """The trial's job is checked by the validator the server uses for its kind, with
    the placeholders filled in: a PyTorchJob without a container is refused."""
    bare = {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": {"name": "probe"},
        "spec": {
            "pytorchReplicaSpecs": {
                "Master": {"replicas": 1, "template": {"spec": {"containers": []}}}
            }
        },
    }
    probe = client.put(f"/apis/kubeflow.org/v1/namespaces/{ns}/pytorchjobs/probe", json=bare)
    if probe.status_code != 422:
        client.delete(f"/apis/kubeflow.org/v1/namespaces/{ns}/pytorchjobs/probe")
        pytest.skip("this server has no PyTorchJob validator that refuses a job without containers")
    trial = copy.deepcopy(bare)
    del trial["metadata"]
    master = trial["spec"]["pytorchReplicaSpecs"]["Master"]
    master["template"]["metadata"] = {
        "annotations": {"x": "${trialParameters.x}", "y": "${trialParameters.y}"}
    }
    text = _text(_refused(client, ns, _with_trial_spec("torch-empty", trial)))
    assert "spec.trialTemplate.trialSpec.spec.pytorchReplicaSpecs" in text, text


def test_a_valid_template_with_placeholders_is_accepted(client: httpx.Client, ns: str) -> None:
    good = experiment("placeholders")
    response = client.put(_path(ns, "placeholders"), json=good)
    assert response.status_code in (200, 201), response.text
    assert client.delete(_path(ns, "placeholders")).status_code == 200


def test_config_map_templates_are_refused(client: httpx.Client, ns: str) -> None:
    manifest = experiment("from-configmap")
    template = manifest["spec"]["trialTemplate"]
    del template["trialSpec"]
    template["configMap"] = {
        "configMapName": "trial-templates",
        "configMapNamespace": "kubeflow",
        "templatePath": "defaultTrialTemplate.yaml",
    }
    text = _text(_refused(client, ns, manifest))
    assert "spec.trialTemplate.configMap" in text and "trialSpec" in text
    assert "trial-templates" in text

    both = experiment("both-templates")
    both["spec"]["trialTemplate"]["configMap"] = {"configMapName": "trial-templates"}
    text = _text(_refused(client, ns, both))
    assert "spec.trialTemplate.configMap" in text and "not both" in text
