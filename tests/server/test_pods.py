"""Pods: what Ketch runs for its objects, as core/v1 Pods (``/api/v1/.../pods``) with
their logs, read through the HTTP API and the real kubectl: a PyTorchJob's replicas,
a batch Job's pods, a TrainJob's nodes, an InferenceService's replicas and a
pipeline's tasks."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.jobs.conftest import SHORT_BACKOFF
from tests.server.fixtures import SERVER_ENV, serve
from tests.server.helpers import Server, assert_error, object_path
from tests.server.kubectl import Kubectl, dispatcher, kubectl_for
from tests.serving.test_inferenceservice_helpers import iris_uri
from tests.waiting import poll

__all__ = ["iris_uri"]  # a fixture

JOBS = "/apis/kubeflow.org/v1"
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = {**SERVER_ENV, **SHORT_BACKOFF}
    yield from serve(Server(tmp_path_factory.mktemp("ketch-pods"), extra_env=env))


@pytest.fixture
def ns(client: httpx.Client) -> Iterator[str]:
    name = f"p-{uuid.uuid4().hex[:10]}"
    yield name
    for plural in ("pytorchjobs",):
        for item in client.get(f"{JOBS}/namespaces/{name}/{plural}").json().get("items", []):
            client.delete(f"{JOBS}/namespaces/{name}/{plural}/{item['metadata']['name']}")


def kubectl(server: Server, tmp_path: Path, ns: str) -> Kubectl:
    return kubectl_for(server.url, tmp_path, dispatcher(), namespace=ns)


def pods_path(ns: str, name: str | None = None) -> str:
    return object_path("/api/v1", ns, "pods", name)


def container(command: str, name: str = "pytorch") -> dict[str, Any]:
    return {
        "name": name,
        "image": "docker.io/pytorch/pytorch:2",
        "command": ["python", "-c", command],
    }


def pytorchjob(
    name: str, master: str, worker: str, *, workers: int = 1, **run_policy: Any
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "pytorchReplicaSpecs": {
            "Master": {
                "replicas": 1,
                "restartPolicy": "OnFailure",
                "template": {
                    "metadata": {"labels": {"team": "vision"}},
                    "spec": {"containers": [container(master)]},
                },
            },
            "Worker": {
                "replicas": workers,
                "restartPolicy": "OnFailure",
                "template": {"spec": {"containers": [container(worker)]}},
            },
        }
    }
    if run_policy:
        spec["runPolicy"] = run_policy
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": {"name": name},
        "spec": spec,
    }


def create_job(client: httpx.Client, ns: str, manifest: dict[str, Any]) -> dict[str, Any]:
    response = client.post(f"{JOBS}/namespaces/{ns}/pytorchjobs", json=manifest)
    assert response.status_code == 201, response.text
    return dict(response.json())


def pods(client: httpx.Client, ns: str, **params: str) -> dict[str, dict[str, Any]]:
    response = client.get(pods_path(ns), params=params)
    assert response.status_code == 200, response.text
    return {p["metadata"]["name"]: p for p in response.json()["items"]}


def wait_pods(
    client: httpx.Client, ns: str, check: Any, timeout: float = 60, **params: str
) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}

    def ready() -> bool:
        nonlocal found
        found = pods(client, ns, **params)
        return bool(check(found))

    assert poll(ready, timeout, 0.1), found
    return found


def phases(found: dict[str, dict[str, Any]]) -> dict[str, str]:
    return {name: pod["status"]["phase"] for name, pod in found.items()}


COUNT = "import time\nfor i in range({n}):\n    print('{who}', i, flush=True)\n    time.sleep({pause})\n"


def test_a_pytorchjobs_replicas_are_pods_with_the_operators_labels(
    client: httpx.Client, ns: str
) -> None:
    job = create_job(
        client,
        ns,
        pytorchjob(
            "mnist",
            COUNT.format(n=3, who="master", pause=0.1),
            COUNT.format(n=2, who="worker", pause=0.1),
        ),
    )
    found = wait_pods(
        client, ns, lambda f: set(phases(f).values()) == {"Succeeded"} and len(f) == 2
    )
    assert set(found) == {"mnist-master-0", "mnist-worker-0"}
    master = found["mnist-master-0"]
    assert master["apiVersion"] == "v1" and master["kind"] == "Pod"
    assert master["metadata"]["labels"] == {
        "team": "vision",
        "training.kubeflow.org/job-name": "mnist",
        "training.kubeflow.org/replica-type": "master",
        "training.kubeflow.org/replica-index": "0",
        "training.kubeflow.org/operator-name": "pytorchjob-controller",
        "training.kubeflow.org/job-role": "master",
    }
    assert "training.kubeflow.org/job-role" not in found["mnist-worker-0"]["metadata"]["labels"]
    assert master["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "kubeflow.org/v1",
            "kind": "PyTorchJob",
            "name": "mnist",
            "uid": job["metadata"]["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    spec = master["spec"]
    assert spec["nodeName"] and spec["restartPolicy"] == "OnFailure"
    [main] = spec["containers"]
    assert main["name"] == "pytorch" and main["image"] == "docker.io/pytorch/pytorch:2"
    env = {e["name"]: e["value"] for e in main["env"]}
    assert env["RANK"] == "0" and env["WORLD_SIZE"] == "2"  # what the operator sets
    assert "local backend runs" in master["metadata"]["annotations"]["ketch.dev/image-not-used"]
    status = master["status"]
    assert status["phase"] == "Succeeded" and status["startTime"].endswith("Z")
    [state] = status["containerStatuses"]
    assert state["name"] == "pytorch" and state["restartCount"] == 0 and state["ready"] is False
    assert state["state"]["terminated"]["exitCode"] == 0
    assert state["state"]["terminated"]["reason"] == "Completed"

    # selectors, every namespace, one pod, its log
    by_job = pods(client, ns, labelSelector="training.kubeflow.org/job-name=mnist")
    assert set(by_job) == {"mnist-master-0", "mnist-worker-0"}
    workers = pods(client, ns, labelSelector="training.kubeflow.org/replica-type in (worker)")
    assert set(workers) == {"mnist-worker-0"}
    everywhere = client.get("/api/v1/pods").json()["items"]
    assert {(p["metadata"]["namespace"], p["metadata"]["name"]) for p in everywhere} >= {
        (ns, "mnist-master-0"),
        (ns, "mnist-worker-0"),
    }
    assert client.get(pods_path(ns, "mnist-worker-0")).json()["metadata"]["uid"]
    log = client.get(pods_path(ns, "mnist-master-0") + "/log")
    assert log.status_code == 200 and log.headers["content-type"].startswith("text/plain")
    assert log.text == "master 0\nmaster 1\nmaster 2\n"
    assert client.get(pods_path(ns, "mnist-master-0") + "/log", params={"tailLines": 1}).text == (
        "master 2\n"
    )
    assert client.get(pods_path(ns, "mnist-master-0") + "/log", params={"limitBytes": 4}).text == (
        "mast"
    )
    stamped = client.get(pods_path(ns, "mnist-worker-0") + "/log", params={"timestamps": "true"})
    lines = stamped.text.splitlines()
    assert [line.split(" ", 1)[1] for line in lines] == ["worker 0", "worker 1"]
    assert all(line.split(" ", 1)[0].endswith("Z") for line in lines)

    # a Table with kubectl's columns
    table = client.get(pods_path(ns), headers={"Accept": TABLE}).json()
    assert [c["name"] for c in table["columnDefinitions"]] == [
        "Name",
        "Ready",
        "Status",
        "Restarts",
        "Age",
    ]
    rows = {r["cells"][0]: r["cells"][1:4] for r in table["rows"]}
    assert rows["mnist-master-0"] == ["0/1", "Completed", "0"]

    # read-only; unknown pods and containers are answered as Kubernetes does
    refused = client.post(
        pods_path(ns), json={"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}}
    )
    assert refused.status_code == 405, refused.text
    assert_error(client.get(pods_path(ns, "nope")), 404, 'pods "nope" not found')
    bad = client.get(pods_path(ns, "mnist-master-0") + "/log", params={"container": "tf"})
    assert_error(bad, 400, "container tf is not valid for pod mnist-master-0")
    none = client.get(pods_path(ns, "mnist-master-0") + "/log", params={"previous": "true"})
    assert_error(none, 400, 'previous terminated container "pytorch" in pod "mnist-master-0"')

    # the pods go with their job
    assert client.delete(f"{JOBS}/namespaces/{ns}/pytorchjobs/mnist").status_code == 200
    wait_pods(client, ns, lambda f: not f)


def watch_events(server: Server, ns: str, **params: Any) -> list[dict[str, Any]]:
    """The events of a pod watch that ends after ``timeoutSeconds``."""
    import json

    query = {"watch": "true", "timeoutSeconds": 1, **params}
    with httpx.Client(base_url=server.url, timeout=30) as http:
        with http.stream("GET", pods_path(ns), params=query) as response:
            assert response.status_code == 200, response.read()
            return [json.loads(line) for line in response.iter_lines() if line.strip()]


def test_a_resumed_pod_watch_gets_exactly_the_changes_after_its_version(
    server: Server, client: httpx.Client, ns: str
) -> None:
    """A job's pods, written by its controller as its processes start and end: a watch
    resumed from a list's resourceVersion gets each of their writes after it, once, in
    order, as the journal has them; from the middle, only the rest; after the job is
    deleted, each pod's DELETED."""
    start = client.get(pods_path(ns)).json()["metadata"]["resourceVersion"]
    create_job(client, ns, pytorchjob("resume", "print('m')", "print('w')"))
    found = wait_pods(
        client, ns, lambda f: len(f) == 2 and set(phases(f).values()) == {"Succeeded"}
    )
    seen = watch_events(server, ns, resourceVersion=start)
    found = pods(client, ns)  # as they are after the watch
    versions = [int(e["object"]["metadata"]["resourceVersion"]) for e in seen]
    assert versions == sorted(set(versions)) and versions[0] > int(start)
    for name, pod in found.items():
        mine = [e for e in seen if e["object"]["metadata"]["name"] == name]
        assert mine[0]["type"] == "ADDED" and {e["type"] for e in mine[1:]} <= {"MODIFIED"}
        assert mine[-1]["object"] == pod  # the last change is the pod as it is now
    middle = versions[len(versions) // 2]
    rest = watch_events(server, ns, resourceVersion=str(middle))
    assert rest == [e for e in seen if int(e["object"]["metadata"]["resourceVersion"]) > middle]
    # the pods go with their job: each one DELETED, as it was, at its deletion's version
    latest = client.get(pods_path(ns)).json()["metadata"]["resourceVersion"]
    assert client.delete(f"{JOBS}/namespaces/{ns}/pytorchjobs/resume").status_code == 200
    wait_pods(client, ns, lambda f: not f)
    gone = watch_events(server, ns, resourceVersion=latest)
    assert sorted((e["type"], e["object"]["metadata"]["name"]) for e in gone) == [
        ("DELETED", "resume-master-0"),
        ("DELETED", "resume-worker-0"),
    ]
    for event in gone:
        pod = found[event["object"]["metadata"]["name"]]
        assert event["object"]["status"] == pod["status"]
        assert int(event["object"]["metadata"]["resourceVersion"]) > int(latest)


def test_kubectl_get_pods_and_logs_follow(
    server: Server, client: httpx.Client, ns: str, tmp_path: Path
) -> None:
    run = kubectl(server, tmp_path, ns)
    create_job(
        client,
        ns,
        pytorchjob(
            "follow",
            COUNT.format(n=8, who="master", pause=0.4),
            COUNT.format(n=1, who="worker", pause=0.1),
        ),
    )
    wait_pods(client, ns, lambda f: phases(f).get("follow-master-0") == "Running")
    # follows the master while it runs, and ends when its process ends
    followed = subprocess.run(
        [str(run.binary), f"--kubeconfig={run.kubeconfig}", f"--cache-dir={run.home / 'cache'}",
         "logs", "-f", "follow-master-0"],
        capture_output=True, text=True, timeout=60, env={"HOME": str(run.home), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert followed.returncode == 0, followed.stderr
    assert followed.stdout.splitlines() == [f"master {i}" for i in range(8)]
    found = wait_pods(client, ns, lambda f: phases(f).get("follow-master-0") == "Succeeded")
    assert phases(found) == {"follow-master-0": "Succeeded", "follow-worker-0": "Succeeded"}

    listed = run.run("get", "pods", "-l", "training.kubeflow.org/job-name=follow").stdout
    header, *rows = listed.splitlines()
    assert header.split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert [r.split()[:4] for r in rows] == [
        ["follow-master-0", "0/1", "Completed", "0"],
        ["follow-worker-0", "0/1", "Completed", "0"],
    ]
    masters = run.run("get", "pods", "-l", "training.kubeflow.org/job-role=master", "-o", "name")
    assert masters.stdout.split() == ["pod/follow-master-0"]
    assert run.run("logs", "follow-master-0", "--tail", "2").stdout == "master 6\nmaster 7\n"
    assert run.run("logs", "follow-worker-0", "-c", "pytorch").stdout == "worker 0\n"
    assert run.run("logs", "follow-master-0", "--since", "1h").stdout.count("\n") == 8
    missing = run.run("logs", "follow-master-0", "--previous", check=False)
    assert missing.returncode != 0 and "previous terminated container" in missing.stderr
    shown = run.run("get", "pod", "follow-worker-0", "-o", "jsonpath={.status.phase}")
    assert shown.stdout == "Succeeded"


CRASH = (
    "import os, sys, time\n"
    "marker = os.path.join({folder!r}, 'runs')\n"
    "runs = len(open(marker).read()) if os.path.exists(marker) else 0\n"
    "open(marker, 'a').write('x')\n"
    "print('run', runs, flush=True)\n"
    "if runs < 2:\n"
    "    sys.exit(3)\n"
    "time.sleep(60)\n"
)


def test_restarts_previous_logs_and_delete_restarts_a_replica(
    server: Server, client: httpx.Client, ns: str, tmp_path: Path
) -> None:
    folder = tmp_path / "marks"
    folder.mkdir()
    create_job(
        client,
        ns,
        pytorchjob(
            "crash", COUNT.format(n=600, who="master", pause=0.1), CRASH.format(folder=str(folder))
        ),
    )

    def restarted_twice(found: dict[str, dict[str, Any]]) -> bool:
        worker = found.get("crash-worker-0")
        if worker is None:
            return False
        [state] = worker["status"]["containerStatuses"]
        return state["restartCount"] == 2 and "running" in state["state"]

    found = wait_pods(client, ns, restarted_twice)
    worker = found["crash-worker-0"]
    assert worker["status"]["phase"] == "Running"
    [state] = worker["status"]["containerStatuses"]
    assert state["lastState"]["terminated"]["exitCode"] == 3
    assert state["lastState"]["terminated"]["reason"] == "Error"
    path = pods_path(ns, "crash-worker-0") + "/log"
    assert client.get(path).text == "run 2\n"
    assert client.get(path, params={"previous": "true"}).text == "run 1\n"
    run = kubectl(server, tmp_path, ns)
    assert run.run("logs", "crash-worker-0", "--previous").stdout == "run 1\n"
    row = run.run("get", "pod", "crash-worker-0", "--no-headers").stdout.split()
    assert row[1:4] == ["1/1", "Running", "2"]

    # kubectl delete pod: the operator's answer, a new pod of the same name
    before = client.get(pods_path(ns, "crash-master-0")).json()
    deleted = run.run("delete", "pod", "crash-master-0", timeout=60)
    assert deleted.stdout.strip() == 'pod "crash-master-0" deleted'
    after = client.get(pods_path(ns, "crash-master-0")).json()
    assert after["metadata"]["uid"] != before["metadata"]["uid"]
    assert after["status"]["phase"] == "Running"
    assert after["status"]["containerStatuses"][0]["restartCount"] == 0
    assert client.get(pods_path(ns, "crash-master-0") + "/log", params={"tailLines": 1}).text
    assert run.run(
        "get", "pytorchjob", "crash", "-o", "jsonpath={.status.conditions[-1].type}"
    ).stdout in (
        "Running",
        "Restarting",
    )
    dry = client.delete(pods_path(ns, "crash-master-0"), params={"dryRun": "All"})
    assert dry.status_code == 200
    assert (
        client.get(pods_path(ns, "crash-master-0")).json()["metadata"]["uid"]
        == after["metadata"]["uid"]
    )


def test_clean_pod_policy_all_removes_the_pods_of_a_finished_job(
    client: httpx.Client, ns: str
) -> None:
    create_job(
        client,
        ns,
        pytorchjob("tidy", "print('m')", "print('w')", cleanPodPolicy="All"),
    )

    def finished() -> bool:
        job = client.get(f"{JOBS}/namespaces/{ns}/pytorchjobs/tidy").json()
        return any(c["type"] == "Succeeded" for c in job["status"].get("conditions", []))

    assert poll(finished, 60, 0.1)
    wait_pods(client, ns, lambda f: not f)


def batch_job(name: str, command: str, **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "template": {
                "metadata": {"labels": {"app": "trial"}},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [container(command, "training-container")],
                },
            }
        },
    }


def test_a_batch_jobs_pod_and_a_trials_collector(client: httpx.Client, ns: str) -> None:
    labels = {"katib.kubeflow.org/trial": "t1", "katib.kubeflow.org/experiment": "e1"}
    response = client.post(
        f"/apis/batch/v1/namespaces/{ns}/jobs",
        json=batch_job("trial", "print('score=0.5')", **labels),
    )
    assert response.status_code == 201, response.text
    uid = response.json()["metadata"]["uid"]
    found = wait_pods(client, ns, lambda f: phases(f) == {"trial-0": "Succeeded"})
    pod = found["trial-0"]
    assert pod["metadata"]["labels"] == {
        "app": "trial",
        **labels,
        "batch.kubernetes.io/controller-uid": uid,
        "controller-uid": uid,
        "batch.kubernetes.io/job-name": "trial",
        "job-name": "trial",
    }
    names = [c["name"] for c in pod["spec"]["containers"]]
    assert names == ["training-container", "metrics-logger-and-collector"]
    # what KatibClient.get_job_logs asks for
    trial = pods(client, ns, labelSelector="katib.kubeflow.org/trial=t1")
    assert list(trial) == ["trial-0"]
    for name in names:
        text = client.get(pods_path(ns, "trial-0") + "/log", params={"container": name}).text
        assert text == "score=0.5\n"
    assert_error(
        client.get(pods_path(ns, "trial-0") + "/log"),
        400,
        "a container name must be specified for pod trial-0",
    )
    # a finished pod of a finished Job: deleting it removes it
    assert client.delete(pods_path(ns, "trial-0")).status_code == 200
    wait_pods(client, ns, lambda f: not f)
    client.delete(f"/apis/batch/v1/namespaces/{ns}/jobs/trial")


def test_a_trainjobs_nodes_are_pods_named_and_labelled_as_jobsets(
    client: httpx.Client, ns: str
) -> None:
    manifest = {
        "apiVersion": "trainer.kubeflow.org/v1alpha1",
        "kind": "TrainJob",
        "metadata": {"name": "tj"},
        "spec": {
            "runtimeRef": {"name": "torch-distributed"},
            "trainer": {
                "numNodes": 2,
                "command": ["python", "-c", "print('hello from the trainer')"],
            },
        },
    }
    response = client.post(
        f"/apis/trainer.kubeflow.org/v1alpha1/namespaces/{ns}/trainjobs", json=manifest
    )
    assert response.status_code == 201, response.text
    found = wait_pods(
        client,
        ns,
        lambda f: (
            set(f) == {"tj-node-0-0", "tj-node-0-1"} and set(phases(f).values()) == {"Succeeded"}
        ),
        labelSelector="jobset.sigs.k8s.io/jobset-name=tj,jobset.sigs.k8s.io/replicatedjob-name in (node)",
    )
    labels = found["tj-node-0-1"]["metadata"]["labels"]
    assert labels["batch.kubernetes.io/job-completion-index"] == "1"
    assert labels["jobset.sigs.k8s.io/replicatedjob-name"] == "node"
    assert found["tj-node-0-0"]["spec"]["containers"][0]["name"] == "node"
    assert "hello from the trainer" in client.get(pods_path(ns, "tj-node-0-0") + "/log").text
    client.delete(f"/apis/trainer.kubeflow.org/v1alpha1/namespaces/{ns}/trainjobs/tj")
    wait_pods(client, ns, lambda f: not f)


def test_an_inferenceservices_replicas_are_pods(
    client: httpx.Client, ns: str, iris_uri: str
) -> None:
    base = f"/apis/serving.kserve.io/v1beta1/namespaces/{ns}/inferenceservices"
    manifest = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "iris"},
        "spec": {"predictor": {"sklearn": {"storageUri": iris_uri}}},
    }
    response = client.post(base, json=manifest)
    assert response.status_code == 201, response.text
    selector = "serving.kserve.io/inferenceservice=iris,component=predictor"

    def one_ready(found: dict[str, dict[str, Any]]) -> bool:
        return len(found) == 1 and all(
            s["ready"] for p in found.values() for s in p["status"]["containerStatuses"]
        )

    try:
        found = wait_pods(client, ns, one_ready, 120, labelSelector=selector)
        [(name, pod)] = found.items()
        assert name == "iris-predictor-00001-1"
        assert pod["status"]["phase"] == "Running"
        assert pod["metadata"]["labels"]["serving.knative.dev/revision"] == "iris-predictor-00001"
        assert [c["name"] for c in pod["spec"]["containers"]] == ["kserve-container"]
        assert "listening on" in client.get(pods_path(ns, name) + "/log").text
        # deleting a replica's pod: another replica takes its place, as a ReplicaSet's does
        assert client.delete(pods_path(ns, name)).status_code == 200
        found = wait_pods(
            client, ns, lambda f: one_ready(f) and name not in f, 120, labelSelector=selector
        )
        assert list(found) == ["iris-predictor-00001-2"]
    finally:
        client.delete(f"{base}/iris")
    wait_pods(client, ns, lambda f: not f, 60, labelSelector=selector)


def test_a_pipelines_tasks_are_pods(
    client: httpx.Client, ns: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from tests.pipelines.submitted import hello_pipeline_ir

    ir = hello_pipeline_ir(tmp_path_factory.mktemp("ir"))
    runs = f"/apis/pipelines.ketch.dev/v1/namespaces/{ns}/pipelineruns"
    manifest = {
        "apiVersion": "pipelines.ketch.dev/v1",
        "kind": "PipelineRun",
        "metadata": {"name": "hello"},
        "spec": {"pipelineSpec": ir, "parameters": {"msg": "pods"}, "enableCaching": False},
    }
    response = client.post(runs, json=manifest)
    assert response.status_code == 201, response.text
    run_id = response.json()["metadata"]["name"]

    def ended() -> bool:
        return client.get(f"{runs}/{run_id}").json()["status"]["state"] == "SUCCEEDED"

    assert poll(ended, 120, 0.1)
    found = pods(client, ns, labelSelector=f"pipeline/runid={run_id}")
    assert set(found) == {f"{run_id}-say", f"{run_id}-say-2"}
    pod = found[f"{run_id}-say"]
    assert pod["status"]["phase"] == "Succeeded"
    assert pod["metadata"]["labels"]["pipelines.kubeflow.org/v2_component"] == "true"
    assert pod["metadata"]["annotations"]["workflows.argoproj.io/node-name"] == f"{run_id}.say"
    assert pod["metadata"]["ownerReferences"][0]["kind"] == "PipelineRun"
    assert "hello from pods" in client.get(pods_path(ns, f"{run_id}-say") + "/log").text
    # a finished task's pod may be deleted; the run's deletion takes the others
    assert client.delete(pods_path(ns, f"{run_id}-say-2")).status_code == 200
    assert set(pods(client, ns)) == {f"{run_id}-say"}
    assert client.delete(f"{runs}/{run_id}").status_code == 200
    assert pods(client, ns) == {}


def test_a_running_tasks_pod_cannot_be_deleted(
    client: httpx.Client, ns: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    import yaml
    from kfp import compiler

    from tests.pipelines.submitted import slow

    path = tmp_path_factory.mktemp("ir") / "slow.yaml"
    compiler.Compiler().compile(slow, str(path))
    runs = f"/apis/pipelines.ketch.dev/v1/namespaces/{ns}/pipelineruns"
    manifest = {
        "apiVersion": "pipelines.ketch.dev/v1",
        "kind": "PipelineRun",
        "metadata": {"name": "slow"},
        "spec": {"pipelineSpec": yaml.safe_load(path.read_text()), "parameters": {"seconds": 60}},
    }
    response = client.post(runs, json=manifest)
    assert response.status_code == 201, response.text
    run_id = response.json()["metadata"]["name"]
    name = f"{run_id}-nap"
    wait_pods(client, ns, lambda f: phases(f).get(name) == "Running", 60)
    refused = client.delete(pods_path(ns, name))
    assert_error(refused, 409, "a running pipeline task is not restarted by deleting its pod")
    assert client.post(f"{runs}/{run_id}/cancel").status_code == 200
    found = wait_pods(client, ns, lambda f: phases(f).get(name) == "Failed", 60)
    assert found[name]["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] > 0
