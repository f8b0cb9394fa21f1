"""Manifests written the way Kubeflow's, Katib's and KServe's own examples are written:
accepted at apply, or refused with a 422 Invalid naming the field, as the operators' webhooks
answer them (and, where Ketch cannot run something, refused saying so)."""

from __future__ import annotations

import copy
from typing import Any

import httpx
import pytest

from tests.server.helpers import assert_error


def _container(name: str, image: str, *command: str) -> dict[str, Any]:
    return {"name": name, "image": image, "command": list(command) or ["python3", "/opt/train.py"]}


def _replica(
    container: dict[str, Any], replicas: int = 1, restart: str = "OnFailure"
) -> dict[str, Any]:
    return {
        "replicas": replicas,
        "restartPolicy": restart,
        "template": {"spec": {"containers": [container]}},
    }


def _job(kind: str, field: str, replicas: dict[str, dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": kind,
        "metadata": {"name": f"{kind.lower()}-example"},
        "spec": {**spec, field: replicas},
    }


PYTORCH = _job(
    "PyTorchJob",
    "pytorchReplicaSpecs",
    {
        "Master": _replica(
            _container(
                "pytorch",
                "docker.io/kubeflowkatib/pytorch-mnist:v1beta1",
                "python3",
                "/opt/pytorch-mnist/mnist.py",
                "--epochs=1",
            )
        ),
        "Worker": _replica(
            _container(
                "pytorch",
                "docker.io/kubeflowkatib/pytorch-mnist:v1beta1",
                "python3",
                "/opt/pytorch-mnist/mnist.py",
                "--epochs=1",
            )
        ),
    },
)
TFJOB = _job(
    "TFJob",
    "tfReplicaSpecs",
    {
        "PS": _replica(
            _container("tensorflow", "kubeflow/tf-dist-mnist-test:latest"), restart="Never"
        ),
        "Worker": _replica(
            _container("tensorflow", "kubeflow/tf-dist-mnist-test:latest"), 2, "Never"
        ),
    },
)
XGBOOST = _job(
    "XGBoostJob",
    "xgbReplicaSpecs",
    {
        "Master": _replica(
            _container("xgboost", "docker.io/kubeflow/xgboost-dist-iris:latest"), restart="Never"
        ),
        "Worker": _replica(
            _container("xgboost", "docker.io/kubeflow/xgboost-dist-iris:latest"), 2, "Never"
        ),
    },
)
MPIJOB = _job(
    "MPIJob",
    "mpiReplicaSpecs",
    {
        "Launcher": _replica(
            _container("mpi", "mpioperator/mpi-pi", "mpirun", "-n", "2", "/home/mpiuser/pi")
        ),
        "Worker": _replica(_container("mpi", "mpioperator/mpi-pi", "/usr/sbin/sshd", "-De"), 2),
    },
    slotsPerWorker=1,
)
JAXJOB = _job(
    "JAXJob",
    "jaxReplicaSpecs",
    {
        "Worker": _replica(
            _container("jax", "docker.io/kubeflow/jaxjob-simple:latest", "python3", "train.py"), 2
        )
    },
)
PADDLE = _job(
    "PaddleJob",
    "paddleReplicaSpecs",
    {
        "Worker": _replica(
            _container(
                "paddle",
                "registry.baidubce.com/paddlepaddle/paddle:2.4.0rc0-cpu",
                "python",
                "-m",
                "paddle.distributed.launch",
                "run_check",
            ),
            2,
        )
    },
)
MXJOB = _job(
    "MXJob",
    "mxReplicaSpecs",
    {
        "Scheduler": _replica(_container("mxnet", "kubeflow/mxnet-gpu:latest")),
        "Server": _replica(_container("mxnet", "kubeflow/mxnet-gpu:latest")),
        "Worker": _replica(_container("mxnet", "kubeflow/mxnet-gpu:latest")),
    },
    jobMode="MXTrain",
)


def _without(manifest: dict[str, Any], *path: str) -> dict[str, Any]:
    changed = copy.deepcopy(manifest)
    node = changed
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    return changed


def _with(manifest: dict[str, Any], value: Any, *path: str) -> dict[str, Any]:
    changed = copy.deepcopy(manifest)
    node = changed
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return changed


def _katib(trial_spec: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kubeflow.org/v1beta1",
        "kind": "Experiment",
        "metadata": {"name": "random-example"},
        "spec": {
            "objective": {
                "type": "maximize",
                "goal": 0.99,
                "objectiveMetricName": "Validation-accuracy",
                "additionalMetricNames": ["Train-accuracy"],
            },
            "algorithm": {"algorithmName": "random"},
            "parallelTrialCount": 3,
            "maxTrialCount": 12,
            "maxFailedTrialCount": 3,
            "parameters": [
                {
                    "name": "lr",
                    "parameterType": "double",
                    "feasibleSpace": {"min": "0.01", "max": "0.03"},
                },
                {
                    "name": "num-layers",
                    "parameterType": "int",
                    "feasibleSpace": {"min": "2", "max": "5"},
                },
                {
                    "name": "optimizer",
                    "parameterType": "categorical",
                    "feasibleSpace": {"list": ["sgd", "adam", "ftrl"]},
                },
            ],
            "trialTemplate": {
                "primaryContainerName": "training-container",
                "trialParameters": [
                    {"name": "learningRate", "description": "Learning rate", "reference": "lr"},
                    {"name": "numberLayers", "description": "Layers", "reference": "num-layers"},
                    {"name": "optimizer", "description": "Optimizer", "reference": "optimizer"},
                ],
                "trialSpec": trial_spec,
            },
            **extra,
        },
    }


BATCH_TRIAL = {
    "apiVersion": "batch/v1",
    "kind": "Job",
    "spec": {
        "template": {
            "spec": {
                "containers": [
                    {
                        "name": "training-container",
                        "image": "docker.io/kubeflowkatib/mxnet-mnist:latest",
                        "command": [
                            "python3",
                            "/opt/mxnet-mnist/mnist.py",
                            "--batch-size=64",
                            "--lr=${trialParameters.learningRate}",
                            "--num-layers=${trialParameters.numberLayers}",
                            "--optimizer=${trialParameters.optimizer}",
                        ],
                    }
                ],
                "restartPolicy": "Never",
            }
        }
    },
}
TRIAL_ARGS = (
    "python3",
    "/opt/pytorch-mnist/mnist.py",
    "--lr=${trialParameters.learningRate}",
    "--layers=${trialParameters.numberLayers}",
    "--optimizer=${trialParameters.optimizer}",
)
PYTORCH_TRIAL = {
    "apiVersion": "kubeflow.org/v1",
    "kind": "PyTorchJob",
    "spec": {
        "pytorchReplicaSpecs": {
            "Master": _replica(
                _container("pytorch", "docker.io/kubeflowkatib/pytorch-mnist:latest", *TRIAL_ARGS),
                restart="OnFailure",
            ),
            "Worker": _replica(
                _container("pytorch", "docker.io/kubeflowkatib/pytorch-mnist:latest", *TRIAL_ARGS),
                restart="OnFailure",
            ),
        }
    },
}
MXNET_TRIAL = {
    "apiVersion": "kubeflow.org/v1",
    "kind": "MXJob",
    "spec": {
        "jobMode": "MXTrain",
        "mxReplicaSpecs": {
            "Scheduler": _replica(
                _container("mxnet", "kubeflow/mxnet-gpu:latest", "python3", "-c", "pass")
            ),
            "Server": _replica(
                _container("mxnet", "kubeflow/mxnet-gpu:latest", "python3", "-c", "pass")
            ),
            "Worker": _replica(_container("mxnet", "kubeflow/mxnet-gpu:latest", *TRIAL_ARGS)),
        },
    },
}
ARGO_TRIAL = {
    "apiVersion": "argoproj.io/v1alpha1",
    "kind": "Workflow",
    "spec": {
        "entrypoint": "main",
        "templates": [{"name": "main", "container": {"image": "alpine", "command": ["echo"]}}],
    },
}

ISVC = {
    "apiVersion": "serving.kserve.io/v1beta1",
    "kind": "InferenceService",
    "metadata": {"name": "sklearn-iris"},
    "spec": {
        "predictor": {
            "model": {
                "modelFormat": {"name": "sklearn"},
                "storageUri": "gs://kfserving-examples/models/sklearn/1.0/model",
            }
        }
    },
}

ACCEPTED = {
    "pytorchjob": PYTORCH,
    "tfjob": TFJOB,
    "xgboostjob": XGBOOST,
    "mpijob": MPIJOB,
    "jaxjob": JAXJOB,
    "paddlejob": PADDLE,
    "mxjob": MXJOB,
    "experiment-batch-job": _katib(BATCH_TRIAL),
    "experiment-pytorchjob": _katib(PYTORCH_TRIAL),
    "experiment-mxjob": _katib(MXNET_TRIAL),
    "inferenceservice": ISVC,
}

REFUSED: dict[str, tuple[dict[str, Any], tuple[str, ...]]] = {
    "pytorchjob-no-replicas": (
        _without(PYTORCH, "spec", "pytorchReplicaSpecs"),
        ("spec.pytorchReplicaSpecs",),
    ),
    "pytorchjob-no-containers": (
        _with(
            PYTORCH, [], "spec", "pytorchReplicaSpecs", "Worker", "template", "spec", "containers"
        ),
        ("spec.pytorchReplicaSpecs.Worker.template.spec.containers",),
    ),
    "pytorchjob-no-template": (
        _without(PYTORCH, "spec", "pytorchReplicaSpecs", "Worker", "template"),
        ("spec.pytorchReplicaSpecs.Worker",),
    ),
    "pytorchjob-wrong-container-name": (
        _with(
            PYTORCH,
            "trainer",
            "spec",
            "pytorchReplicaSpecs",
            "Master",
            "template",
            "spec",
            "containers",
            0,
            "name",
        ),  # type: ignore[arg-type]
        ("spec.pytorchReplicaSpecs.Master", "pytorch"),
    ),
    "pytorchjob-two-masters": (
        _with(PYTORCH, 2, "spec", "pytorchReplicaSpecs", "Master", "replicas"),
        ("spec.pytorchReplicaSpecs.Master.replicas",),
    ),
    "pytorchjob-bad-name": (_with(PYTORCH, "Bad_Name", "metadata", "name"), ("metadata.name",)),
    "tfjob-no-containers": (
        _with(TFJOB, [], "spec", "tfReplicaSpecs", "PS", "template", "spec", "containers"),
        ("spec.tfReplicaSpecs.PS.template.spec.containers",),
    ),
    "xgboostjob-no-master": (_without(XGBOOST, "spec", "xgbReplicaSpecs", "Master"), ("Master",)),
    "mxjob-two-schedulers": (
        _with(MXJOB, 2, "spec", "mxReplicaSpecs", "Scheduler", "replicas"),
        ("spec.mxReplicaSpecs.Scheduler.replicas",),
    ),
    "experiment-argo-workflow": (_katib(ARGO_TRIAL), ("spec.trialTemplate.trialSpec", "Workflow")),
    "experiment-custom-collector": (
        _katib(
            BATCH_TRIAL,
            metricsCollectorSpec={
                "collector": {
                    "kind": "Custom",
                    "customCollector": {
                        "name": "collector",
                        "image": "example/collector",
                        "args": ["-m", "accuracy"],
                    },
                },
            },
        ),
        ("spec.metricsCollectorSpec.collector.kind", "Custom"),
    ),
    "experiment-invalid-trial-job": (
        _katib(
            _with(
                PYTORCH_TRIAL,
                [],
                "spec",
                "pytorchReplicaSpecs",
                "Worker",
                "template",
                "spec",
                "containers",
            )
        ),
        ("spec.trialTemplate.trialSpec.spec.pytorchReplicaSpecs.Worker.template.spec.containers",),
    ),
    "inferenceservice-two-predictors": (
        _with(ISVC, {"storageUri": "gs://x/model"}, "spec", "predictor", "sklearn"),
        ("spec.predictor",),
    ),
    "inferenceservice-bad-replicas": (
        _with(ISVC, -1, "spec", "predictor", "minReplicas"),
        ("spec.predictor.minReplicas",),
    ),
    "inferenceservice-unknown-format": (
        _with(ISVC, {"name": "cobol"}, "spec", "predictor", "model", "modelFormat"),
        ("spec.predictor.model.modelFormat.name", "cobol"),
    ),
}


def _path(manifest: dict[str, Any], ns: str) -> str:
    group_version = manifest["apiVersion"]
    plural = {"InferenceService": "inferenceservices", "Experiment": "experiments"}.get(
        manifest["kind"], manifest["kind"].lower() + "s"
    )
    return f"/apis/{group_version}/namespaces/{ns}/{plural}"


@pytest.mark.parametrize("name", sorted(ACCEPTED))
def test_upstream_examples_are_accepted(client: httpx.Client, ns: str, name: str) -> None:
    manifest = ACCEPTED[name]
    created = client.post(_path(manifest, ns), json=manifest)
    assert created.status_code == 201, created.text
    deleted = client.delete(f"{_path(manifest, ns)}/{manifest['metadata']['name']}")
    assert deleted.status_code == 200, deleted.text


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_broken_manifests_are_refused_naming_the_field(
    client: httpx.Client, ns: str, name: str
) -> None:
    manifest, fragments = REFUSED[name]
    response = client.post(_path(manifest, ns), json=manifest)
    assert_error(response, 422, *fragments)
    assert "Traceback" not in response.text
    assert client.get(_path(manifest, ns)).json()["items"] == []


def test_a_patch_cannot_make_a_job_invalid(client: httpx.Client, ns: str) -> None:
    suspended = _with(PYTORCH, {"suspend": True}, "spec", "runPolicy")
    path = _path(suspended, ns)
    assert client.post(path, json=suspended).status_code == 201
    name = suspended["metadata"]["name"]
    broken = {"spec": {"pytorchReplicaSpecs": {"Master": {"replicas": 3}}}}
    response = client.patch(
        f"{path}/{name}", json=broken, headers={"content-type": "application/merge-patch+json"}
    )
    assert_error(response, 422, "spec.pytorchReplicaSpecs.Master.replicas")
    stored = client.get(f"{path}/{name}").json()
    assert stored["spec"]["pytorchReplicaSpecs"]["Master"]["replicas"] == 1
    assert stored["metadata"]["generation"] == 1


def _trial(run_spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "kubeflow.org/v1beta1",
        "kind": "Trial",
        "metadata": {"name": "by-hand"},
        "spec": {
            "objective": {"type": "maximize", "objectiveMetricName": "accuracy"},
            "parameterAssignments": [{"name": "lr", "value": "0.01"}],
            "primaryContainerName": "training-container",
            "runSpec": run_spec,
        },
    }


def test_trials_applied_by_hand_are_checked(client: httpx.Client, ns: str) -> None:
    path = f"/apis/kubeflow.org/v1beta1/namespaces/{ns}/trials"
    job = copy.deepcopy(BATCH_TRIAL)
    job["spec"]["template"]["spec"]["containers"][0]["command"] = [
        "python3",
        "-c",
        "print('accuracy=0.5')",
    ]
    assert_error(client.post(path, json=_trial({})), 422, "spec.runSpec")
    assert_error(client.post(path, json=_trial(ARGO_TRIAL)), 422, "spec.runSpec.kind", "Workflow")
    no_containers = _with(job, [], "spec", "template", "spec", "containers")
    assert_error(
        client.post(path, json=_trial(no_containers)),
        422,
        "spec.runSpec.spec.template.spec.containers",
    )
    assert client.get(path).json()["items"] == []
    created = client.post(path, json=_trial(job))
    assert created.status_code == 201, created.text
    assert client.delete(f"{path}/by-hand").status_code == 200
