"""The machine's kubectl (its dispatcher, no flags that loosen validation) against a
real ``ketch up``, through the kubeconfig ``ketch kubeconfig`` wrote: one tour of
what a user types, end to end. The detailed behaviour of each command is tested in
tests/server/; here the pieces are seen working together."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.server.kubectl import Background, Kubectl, dispatcher
from tests.tuning.conftest import experiment
from tests.waiting import wait_for


@pytest.fixture
def kubectl(kubeconfig: Path, tmp_path: Path, ns: str) -> Iterator[Kubectl]:
    """kubectl with ``ketch kubeconfig``'s file; what the test leaves in ``ns`` goes."""
    home = tmp_path / "kubectl-home"
    home.mkdir()
    tool = Kubectl(dispatcher(), kubeconfig, home)
    yield tool
    kinds = "pytorchjobs,experiments,inferenceservices,trainjobs"
    tool.run("delete", kinds, "--all", "-n", ns, "--wait=false", check=False)


def run(kubectl: Kubectl, ns: str, *args: str) -> str:
    """``kubectl -n NS ARGS``'s output (a failure fails the test)."""
    return kubectl.run("-n", ns, *args).stdout


def pytorchjob(name: str, app: str, code: str, **run_policy: Any) -> dict[str, Any]:
    container = {"name": "pytorch", "image": "docker.io/pytorch/pytorch:2"}
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": {"name": name, "labels": {"app": app}},
        "spec": {
            **({"runPolicy": run_policy} if run_policy else {}),
            "pytorchReplicaSpecs": {
                "Master": {
                    "replicas": 1,
                    "restartPolicy": "Never",
                    "template": {
                        "spec": {"containers": [{**container, "command": ["python", "-c", code]}]}
                    },
                }
            },
        },
    }


def write(path: Path, *documents: dict[str, Any]) -> str:
    path.write_text(yaml.safe_dump_all(documents))
    return str(path)


def double(name: str) -> dict[str, Any]:
    return {"name": name, "parameterType": "double", "feasibleSpace": {"min": "0", "max": "1"}}


# prints a few lines, slowly enough for kubectl to follow them and see it Running
COUNT = "import time\nfor i in range(6):\n    print('line', i, flush=True)\n    time.sleep(0.3)\n"


def test_apply_each_kind(kubectl: Kubectl, ns: str, tmp_path: Path, iris_uri: str) -> None:
    isvc = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "iris"},
        "spec": {"predictor": {"sklearn": {"storageUri": iris_uri}}},
    }
    trainjob = {
        "apiVersion": "trainer.kubeflow.org/v1alpha1",
        "kind": "TrainJob",
        "metadata": {"name": "train"},
        "spec": {
            "runtimeRef": {"name": "torch-distributed"},
            "trainer": {"numNodes": 1, "command": ["python", "-c", "print('trained')"]},
        },
    }
    manifest = write(
        tmp_path / "all.yaml",
        pytorchjob("job", "a", "print('hi')"),
        # not "y": kubectl reads YAML 1.1, where a bare y is true
        experiment(
            "tune",
            parameters=[double("x"), double("z")],
            max_trials=1,
            parallel=1,
            maxFailedTrialCount=1,
        ),
        isvc,
        trainjob,
    )
    applied = run(kubectl, ns, "apply", "-f", manifest).splitlines()
    assert applied == [
        "pytorchjob.kubeflow.org/job created",
        "experiment.kubeflow.org/tune created",
        "inferenceservice.serving.kserve.io/iris created",
        "trainjob.trainer.kubeflow.org/train created",
    ]
    listed = run(kubectl, ns, "get", "-f", manifest, "-o", "name").split()
    assert listed == [
        "pytorchjob.kubeflow.org/job",
        "experiment.kubeflow.org/tune",
        "inferenceservice.serving.kserve.io/iris",
        "trainjob.trainer.kubeflow.org/train",
    ]
    deleted = run(kubectl, ns, "delete", "-f", manifest)
    assert deleted.count(" deleted") == 4, deleted


def test_a_pytorchjob_from_apply_to_delete(kubectl: Kubectl, ns: str, tmp_path: Path) -> None:
    idle = pytorchjob("idle", "c", "print('never')", suspend=True)
    first = write(tmp_path / "idle.yaml", idle)
    manifest = write(tmp_path / "jobs.yaml", pytorchjob("tour", "a", COUNT), idle)
    watch = Background(kubectl, "-n", ns, "get", "pytorchjobs", "-w", "--output-watch-events")
    try:
        # the watch is open once it has printed the first job
        run(kubectl, ns, "apply", "-f", first)
        watch.wait_for(lambda lines: any(line.split()[:2] == ["ADDED", "idle"] for line in lines))
        applied = run(kubectl, ns, "apply", "-f", manifest).splitlines()
        assert applied == [
            "pytorchjob.kubeflow.org/tour created",
            "pytorchjob.kubeflow.org/idle unchanged",
        ]

        # logs -f of the master's pod, once it runs: its output, ending when it exits
        def started() -> bool:
            phase = kubectl.run(
                "-n", ns, "get", "pod", "tour-master-0", "-o", "jsonpath={.status.phase}",
                check=False,
            ).stdout  # fmt: skip
            return phase in ("Running", "Succeeded")

        wait_for(started, 30, 0.2, "the master's pod running")
        followed = run(kubectl, ns, "logs", "-f", "tour-master-0")
        assert followed.splitlines() == [f"line {i}" for i in range(6)]

        # the watch: ADDED, then MODIFIED as the job's state changes
        lines = watch.wait_for(
            lambda lines: any(
                line.split()[:3] == ["MODIFIED", "tour", "Succeeded"] for line in lines
            )
        )
    finally:
        watch.stop()
    assert lines is not None
    tour = [line.split() for line in lines if line.split()[1:2] == ["tour"]]
    assert tour[0][0] == "ADDED"
    states = [row[2] for row in tour if row[0] == "MODIFIED" and len(row) > 3]
    assert "Running" in states and states[-1] == "Succeeded", lines

    table = run(kubectl, ns, "get", "pytorchjobs").splitlines()
    assert table[0].split() == ["NAME", "STATE", "AGE"]
    assert {tuple(row.split()[:2]) for row in table[1:]} == {
        ("tour", "Succeeded"),
        ("idle", "Suspended"),
    }
    got = yaml.safe_load(run(kubectl, ns, "get", "pytorchjob", "tour", "-o", "yaml"))
    assert got["kind"] == "PyTorchJob" and got["metadata"]["labels"] == {"app": "a"}
    assert got["status"]["conditions"][-1]["type"] == "Succeeded"
    selected = run(kubectl, ns, "get", "pytorchjobs", "-l", "app in (a,b)", "-o", "name")
    assert selected.split() == ["pytorchjob.kubeflow.org/tour"]

    described = run(kubectl, ns, "describe", "pytorchjob", "tour")
    reasons = [row.split()[1] for row in described.split("Events:")[1].splitlines()[3:] if row]
    assert {"PyTorchJobCreated", "PyTorchJobRunning", "PyTorchJobSucceeded"} <= set(reasons)

    deleted = run(kubectl, ns, "delete", "-f", manifest).splitlines()
    assert deleted == [
        'pytorchjob.kubeflow.org "tour" deleted',
        'pytorchjob.kubeflow.org "idle" deleted',
    ]
    gone = kubectl.run("-n", ns, "get", "pytorchjobs")
    assert gone.stdout == "" and "No resources found" in gone.stderr


def test_explain_dry_run_runtimes_and_api_resources(
    kubectl: Kubectl, ns: str, tmp_path: Path
) -> None:
    explained = run(kubectl, ns, "explain", "pytorchjob.spec")
    assert "pytorchReplicaSpecs" in explained and "runPolicy" in explained

    manifest = write(tmp_path / "dry.yaml", pytorchjob("dry", "a", "print('no')"))
    dry = run(kubectl, ns, "apply", "--dry-run=server", "-f", manifest)
    assert dry.strip() == "pytorchjob.kubeflow.org/dry created (server dry run)"
    missing = kubectl.run("-n", ns, "get", "pytorchjob", "dry", check=False)
    assert missing.returncode != 0 and "NotFound" in missing.stderr

    runtimes = run(kubectl, ns, "get", "clustertrainingruntimes", "-o", "name").split()
    assert "clustertrainingruntime.trainer.kubeflow.org/torch-distributed" in runtimes

    resources = {
        line.split()[0] for line in run(kubectl, ns, "api-resources").splitlines()[1:] if line
    }
    assert {
        "pytorchjobs",
        "experiments",
        "inferenceservices",
        "trainjobs",
        "clustertrainingruntimes",
        "pods",
        "namespaces",
        "events",
    } <= resources
