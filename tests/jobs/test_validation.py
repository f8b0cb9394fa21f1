"""Apply-time checks of the training jobs through a real ``ketch up``: the training
operator's admission rules answered with 422 Invalid and the offending field's path."""

from __future__ import annotations

import copy
import sys
from typing import Any

import httpx
import pytest

from tests.jobs.conftest import DEFAULT_CONTAINER, REPLICAS_FIELD, manifest, path

PY = sys.executable


def container(kind: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": DEFAULT_CONTAINER[kind],
        "image": "example/trainer:1",
        "command": [PY, "-c", "pass"],
        **extra,
    }


def spec(kind: str, count: int = 1, **extra: Any) -> dict[str, Any]:
    return {"replicas": count, "template": {"spec": {"containers": [container(kind, **extra)]}}}


#: a valid job of each kind
VALID: dict[str, dict[str, dict[str, Any]]] = {
    "PyTorchJob": {"Master": spec("PyTorchJob"), "Worker": spec("PyTorchJob", 2)},
    "TFJob": {"Chief": spec("TFJob"), "Worker": spec("TFJob", 2)},
    "XGBoostJob": {"Master": spec("XGBoostJob"), "Worker": spec("XGBoostJob")},
    "MPIJob": {"Launcher": spec("MPIJob"), "Worker": spec("MPIJob", 2)},
    "JAXJob": {"Worker": spec("JAXJob", 2)},
    "PaddleJob": {"Master": spec("PaddleJob"), "Worker": spec("PaddleJob")},
    "MXJob": {"Scheduler": spec("MXJob"), "Server": spec("MXJob"), "Worker": spec("MXJob")},
}


def refused(client: httpx.Client, ns: str, body: dict[str, Any], field: str) -> str:
    """The message of the 422 that refuses ``body``; it names ``field``."""
    response = client.post(path(body["kind"], ns), json=body)
    assert response.status_code == 422, response.text
    message = str(response.json().get("message", response.text))
    assert field in message, message
    assert "Traceback" not in response.text
    assert client.get(path(body["kind"], ns, body["metadata"]["name"])).status_code == 404
    return message


def job(kind: str, name: str = "bad", **spec_fields: Any) -> dict[str, Any]:
    return manifest(kind, name, copy.deepcopy(VALID[kind]), **spec_fields)


@pytest.mark.parametrize("kind", list(VALID))
def test_each_kind_refuses_what_its_operator_refuses(
    client: httpx.Client, ns: str, kind: str
) -> None:
    field = REPLICAS_FIELD[kind]
    first = next(iter(VALID[kind]))
    containers = f"spec.{field}.{first}.template.spec.containers"

    no_replicas = job(kind)
    no_replicas["spec"][field] = {}
    refused(client, ns, no_replicas, f"spec.{field}")

    missing = job(kind)
    del missing["spec"][field]
    refused(client, ns, missing, f"spec.{field}")

    empty = job(kind)
    empty["spec"][field][first]["template"]["spec"]["containers"] = []
    refused(client, ns, empty, containers)

    no_template = job(kind)
    del no_template["spec"][field][first]["template"]
    refused(client, ns, no_template, containers)

    renamed = job(kind)
    renamed["spec"][field][first]["template"]["spec"]["containers"][0]["name"] = "main"
    message = refused(client, ns, renamed, containers)
    assert f"name {DEFAULT_CONTAINER[kind]}" in message

    no_image = job(kind)
    del no_image["spec"][field][first]["template"]["spec"]["containers"][0]["image"]
    refused(client, ns, no_image, f"{containers}[0].image")

    unknown = job(kind)
    unknown["spec"][field]["Chef"] = spec(kind)
    refused(client, ns, unknown, f"spec.{field}.Chef")

    bad_name = job(kind, name="9lives")
    refused(client, ns, bad_name, "metadata.name")

    managed = job(kind, runPolicy={"managedBy": "someone/else"})
    refused(client, ns, managed, "spec.runPolicy.managedBy")

    ok = client.post(path(kind, ns), json=job(kind, name="good"))
    assert ok.status_code == 201, ok.text
    assert client.delete(path(kind, ns, "good")).status_code == 200


def test_kind_specific_rules(client: httpx.Client, ns: str) -> None:
    two_masters = job("PyTorchJob")
    two_masters["spec"]["pytorchReplicaSpecs"]["Master"]["replicas"] = 2
    assert "must be 1" in refused(
        client, ns, two_masters, "spec.pytorchReplicaSpecs.Master.replicas"
    )

    no_workers = job("PyTorchJob")
    no_workers["spec"]["pytorchReplicaSpecs"]["Worker"]["replicas"] = 0
    refused(client, ns, no_workers, "spec.pytorchReplicaSpecs.Worker.replicas")

    elastic = job("PyTorchJob", elasticPolicy={"minReplicas": 1, "maxReplicas": 2})
    del elastic["spec"]["pytorchReplicaSpecs"]["Worker"]
    refused(client, ns, elastic, "spec.pytorchReplicaSpecs.Worker")

    both = job("PyTorchJob", elasticPolicy={"nProcPerNode": 2}, nprocPerNode="2")
    refused(client, ns, both, "spec.elasticPolicy.nProcPerNode")

    bounds = job("PyTorchJob", elasticPolicy={"minReplicas": 3, "maxReplicas": 2})
    refused(client, ns, bounds, "spec.elasticPolicy.minReplicas")

    chief_and_master = job("TFJob")
    chief_and_master["spec"]["tfReplicaSpecs"]["Master"] = spec("TFJob")
    refused(client, ns, chief_and_master, "spec.tfReplicaSpecs")

    no_master = job("XGBoostJob")
    del no_master["spec"]["xgbReplicaSpecs"]["Master"]
    refused(client, ns, no_master, "spec.xgbReplicaSpecs.Master")

    no_launcher = job("MPIJob")
    del no_launcher["spec"]["mpiReplicaSpecs"]["Launcher"]
    refused(client, ns, no_launcher, "spec.mpiReplicaSpecs.Launcher")

    main = job("MPIJob", mainContainer="trainer")
    refused(client, ns, main, "spec.mpiReplicaSpecs.Launcher.template.spec.containers")

    schedulers = job("MXJob")
    schedulers["spec"]["mxReplicaSpecs"]["Scheduler"]["replicas"] = 2
    refused(client, ns, schedulers, "spec.mxReplicaSpecs.Scheduler.replicas")

    refused(client, ns, job("MXJob", jobMode="MXTune"), "spec.mxReplicaSpecs.Tuner")
    refused(client, ns, job("MXJob", jobMode="Inference"), "spec.jobMode")

    no_command = job("JAXJob")
    del no_command["spec"]["jaxReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0][
        "command"
    ]
    refused(
        client, ns, no_command, "spec.jaxReplicaSpecs.Worker.template.spec.containers[0].command"
    )

    restart = job("PaddleJob")
    restart["spec"]["paddleReplicaSpecs"]["Worker"]["restartPolicy"] = "Sometimes"
    refused(client, ns, restart, "spec.paddleReplicaSpecs.Worker.restartPolicy")


def test_update_is_checked_too(client: httpx.Client, ns: str) -> None:
    body = job("JAXJob", name="held", runPolicy={"suspend": True})
    created = client.post(path("JAXJob", ns), json=body)
    assert created.status_code == 201, created.text
    # the job's controller writes it too (its status): each try updates what is stored
    # now, and a write that came between the read and the update (409) is read again
    for _ in range(10):
        current = client.get(path("JAXJob", ns, "held"))
        assert current.status_code == 200, current.text
        changed = current.json()
        changed["spec"]["jaxReplicaSpecs"]["Worker"]["template"]["spec"]["containers"] = []
        response = client.put(path("JAXJob", ns, "held"), json=changed)
        if response.status_code != 409:
            break
    assert response.status_code == 422, response.text
    assert "spec.jaxReplicaSpecs.Worker.template.spec.containers" in response.json()["message"]
    assert client.delete(path("JAXJob", ns, "held")).status_code == 200


def test_batch_job_and_runtime_without_containers_are_refused(
    client: httpx.Client, ns: str
) -> None:
    job_body = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "empty"},
        "spec": {"template": {"spec": {"containers": [], "restartPolicy": "Never"}}},
    }
    response = client.post(f"/apis/batch/v1/namespaces/{ns}/jobs", json=job_body)
    assert response.status_code == 422, response.text
    assert "spec.template.spec.containers" in response.json()["message"]

    runtime = {
        "apiVersion": "trainer.kubeflow.org/v1alpha1",
        "kind": "TrainingRuntime",
        "metadata": {"name": "empty"},
        "spec": {
            "template": {
                "spec": {
                    "replicatedJobs": [
                        {
                            "name": "node",
                            "template": {"spec": {"template": {"spec": {"containers": []}}}},
                        },
                    ]
                }
            }
        },
    }
    response = client.post(
        f"/apis/trainer.kubeflow.org/v1alpha1/namespaces/{ns}/trainingruntimes", json=runtime
    )
    assert response.status_code == 422, response.text
    assert (
        "spec.template.spec.replicatedJobs[0].template.spec.template.spec.containers"
        in response.json()["message"]
    )


def test_registered_validator_checks_plain_manifests() -> None:
    """Other capabilities (a Katib trial template's check) reach the check through the
    assembled admission: called with a Resource, or with a plain manifest."""
    from ketch.capabilities import CAPABILITIES
    from ketch.core.capability import Admission
    from ketch.core.errors import InvalidSpec
    from ketch.core.resource import Resource
    from ketch.jobs.validation import JobValidator

    admission = Admission(CAPABILITIES)
    check = admission.validator("PyTorchJob")
    template = {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "spec": {"pytorchReplicaSpecs": copy.deepcopy(VALID["PyTorchJob"])},
    }
    assert isinstance(check, JobValidator)
    validate_manifest = check.validate_manifest
    validate_manifest(template)  # a trial template has no name yet
    template["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"]["containers"] = []
    with pytest.raises(InvalidSpec) as caught:
        validate_manifest(template)
    assert caught.value.field == "spec.pytorchReplicaSpecs.Worker.template.spec.containers"
    resource = Resource.from_manifest({**template, "metadata": {"name": "trial-1"}})
    with pytest.raises(InvalidSpec):
        check(resource)
    for kind in VALID:
        assert callable(admission.validator(kind))

    # Katib's other trial kinds: a batch Job and a TrainJob
    batch = admission.validator("Job")
    assert isinstance(batch, JobValidator)
    pod = {
        "containers": [{"name": "main", "image": "python:3.12", "command": ["true"]}],
        "restartPolicy": "Never",
    }
    batch.validate_manifest(
        {"apiVersion": "batch/v1", "kind": "Job", "spec": {"template": {"spec": pod}}}
    )
    with pytest.raises(InvalidSpec) as caught:
        batch.validate_manifest(
            {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "spec": {"template": {"spec": {**pod, "containers": []}}},
            }
        )
    assert caught.value.field == "spec.template.spec.containers"
    trainjob = admission.validator("TrainJob")
    assert isinstance(trainjob, JobValidator)
    trainjob.validate_manifest({"spec": {"runtimeRef": {"name": "torch-distributed"}}})
    with pytest.raises(InvalidSpec) as caught:
        trainjob.validate_manifest(
            {"spec": {"trainer": {"numNodes": 0}, "runtimeRef": {"name": "x"}}}
        )
    assert caught.value.field == "spec.trainer.numNodes"
