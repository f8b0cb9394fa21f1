"""A profile's quota over the workloads besides a job's first gang: the workers an
elastic job adds later, a pipeline's tasks, a pipeline's runs (counted), and the jobs
Katib's trials create (counted as the API counts them). Over real HTTP against a real
``ketch up``, with real processes, compiled with the real ``kfp`` compiler."""

# no ``from __future__ import annotations``: kfp reads the components' annotations

import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
from kfp import dsl

from ketch.pipelines import spec as ir_loader
from tests.jobs.conftest import manifest, replica
from tests.jobs.conftest import path as job_path
from tests.jobs.conftest import wait_for as wait_for_job
from tests.tenancy.profiles import PROFILES, profile
from tests.tuning.conftest import experiment
from tests.waiting import wait_for

PY = sys.executable
QUOTA = "/api/v1/namespaces/{ns}/resourcequotas/kf-resource-quota"
KFP = "/apis/v2beta1"
KATIB = "/apis/kubeflow.org/v1beta1/namespaces/{ns}"


def _profile_with_quota(client: httpx.Client, name: str, hard: dict[str, str]) -> None:
    response = client.post(PROFILES, json=profile(name, resourceQuotaSpec={"hard": hard}))
    assert response.status_code == 201, response.text


def _events(client: httpx.Client, ns: str, name: str, reason: str) -> list[str]:
    response = client.get(
        f"/api/v1/namespaces/{ns}/events",
        params={"fieldSelector": f"involvedObject.name={name}"},
    )
    assert response.status_code == 200, response.text
    return [e["message"] for e in response.json()["items"] if e["reason"] == reason]


def _used(client: httpx.Client, ns: str) -> dict[str, str]:
    response = client.get(QUOTA.format(ns=ns))
    assert response.status_code == 200, response.text
    used: dict[str, str] = response.json()["status"]["used"]
    return used


def _pods(client: httpx.Client, ns: str, selector: str) -> list[str]:
    response = client.get(f"/api/v1/namespaces/{ns}/pods", params={"labelSelector": selector})
    assert response.status_code == 200, response.text
    return sorted(p["metadata"]["name"] for p in response.json()["items"])


def _holds(release: Path) -> list[str]:
    """A command that runs until ``release`` exists."""
    return [
        PY,
        "-c",
        f"import os, time\nwhile not os.path.exists({str(release)!r}): time.sleep(0.05)",
    ]


# -- an elastic job's new workers -------------------------------------------------------


def test_the_workers_an_elastic_job_adds_wait_for_the_quota(
    client: httpx.Client, ns: str, tmp_path: Path
) -> None:
    _profile_with_quota(client, ns, {"cpu": "1"})
    half = {"requests": {"cpu": "500m"}}
    other_release, own_release = tmp_path / "other", tmp_path / "own"
    jobs = job_path("PyTorchJob", ns)
    other = manifest(
        "PyTorchJob", "other", {"Master": replica(_holds(other_release), resources=half)}
    )
    assert client.post(jobs, json=other).status_code == 201
    grow = manifest(
        "PyTorchJob",
        "grow",
        {"Worker": replica(_holds(own_release), 1, resources=half)},
        elasticPolicy={"rdzvBackend": "c10d", "minReplicas": 1, "maxReplicas": 3},
    )
    assert client.post(jobs, json=grow).status_code == 201
    wait_for_job(client, "PyTorchJob", ns, "other", "Running")
    wait_for_job(client, "PyTorchJob", ns, "grow", "Running")
    assert _used(client, ns) == {"cpu": "1"}

    # a second worker does not fit next to the other job: it waits, saying so
    current = client.get(job_path("PyTorchJob", ns, "grow")).json()
    current["spec"]["pytorchReplicaSpecs"]["Worker"]["replicas"] = 2
    assert client.put(job_path("PyTorchJob", ns, "grow"), json=current).status_code == 200
    refused = wait_for(
        lambda: _events(client, ns, "grow", "FailedCreate"), what="a FailedCreate on grow"
    )
    assert refused[0] == (
        'Error creating: pods "grow-worker-1" is forbidden: exceeded quota: kf-resource-quota, '
        "requested: cpu=500m, used: cpu=1, limited: cpu=1"
    )
    selector = "training.kubeflow.org/job-name=grow"
    assert _pods(client, ns, selector) == ["grow-worker-0"]
    assert _used(client, ns) == {"cpu": "1"}

    # the other job ends: the worker starts in the room it leaves
    other_release.touch()
    wait_for_job(client, "PyTorchJob", ns, "other", "Succeeded")
    wait_for(
        lambda: _pods(client, ns, selector) == ["grow-worker-0", "grow-worker-1"],
        what="the second worker of grow started",
    )
    assert _used(client, ns) == {"cpu": "1"}
    # (the pods are written before the pass's status and events)
    scaled = wait_for(lambda: _events(client, ns, "grow", "ScaledUp"), what="grow scaled up")
    assert scaled == ["PyTorchJob grow: Worker replicas 1 -> 2"]

    # scaled down, the worker it stops gives its charge back
    current = client.get(job_path("PyTorchJob", ns, "grow")).json()
    current["spec"]["pytorchReplicaSpecs"]["Worker"]["replicas"] = 1
    assert client.put(job_path("PyTorchJob", ns, "grow"), json=current).status_code == 200
    wait_for(lambda: _used(client, ns) == {"cpu": "500m"}, what="the stopped worker's release")
    own_release.touch()
    wait_for_job(client, "PyTorchJob", ns, "grow", "Succeeded")
    wait_for(lambda: _used(client, ns) == {"cpu": "0"}, what="grow's release")


# -- a pipeline's tasks --------------------------------------------------------------------

#: appends "start NAME", waits for the folder's release file, appends "end NAME"
HOLD_TASK = (
    "import os, sys, time\n"
    "name, folder = sys.argv[1], sys.argv[2]\n"
    "log = os.path.join(folder, 'log')\n"
    "open(log, 'a').write('start ' + name + '\\n')\n"
    "while not os.path.exists(os.path.join(folder, 'release')): time.sleep(0.05)\n"
    "open(log, 'a').write('end ' + name + '\\n')\n"
)


@dsl.container_component
def hold(name: str, folder: str):  # type: ignore[no-untyped-def]
    return dsl.ContainerSpec(image="python:3.12", command=[PY, "-c", HOLD_TASK, name, folder])


@dsl.pipeline(name="quota-tasks")
def two_tasks(folder: str):  # type: ignore[no-untyped-def]
    for name in ("a", "b"):
        task = hold(name=name, folder=folder).set_cpu_request("1").set_memory_limit("256Mi")
        task.set_caching_options(False)


@dsl.pipeline(name="quota-too-big")
def too_big(folder: str):  # type: ignore[no-untyped-def]
    hold(name="big", folder=folder).set_cpu_request("2").set_caching_options(False)


def _experiment(client: httpx.Client, ns: str) -> str:
    response = client.post(
        f"{KFP}/experiments",
        json={"display_name": f"quota-{uuid.uuid4().hex[:6]}", "namespace": ns},
    )
    assert response.status_code == 200, response.text
    return str(response.json()["experiment_id"])


def _submit(client: httpx.Client, experiment: str, pipeline: Any, **params: Any) -> httpx.Response:
    return client.post(
        f"{KFP}/runs",
        json={
            "display_name": f"run-{uuid.uuid4().hex[:6]}",
            "experiment_id": experiment,
            "pipeline_spec": ir_loader.load(pipeline).spec,
            "runtime_config": {"parameters": params},
        },
    )


def _run(client: httpx.Client, run_id: str) -> dict[str, Any]:
    response = client.get(f"{KFP}/runs/{run_id}")
    assert response.status_code == 200, response.text
    return dict(response.json())


def _tasks(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    details = run.get("run_details", {}).get("task_details", [])
    return {t["display_name"]: t for t in details if t["display_name"].startswith("hold")}


def _finished(client: httpx.Client, run_id: str) -> dict[str, Any] | None:
    run = _run(client, run_id)
    return run if run["state"] in ("SUCCEEDED", "FAILED", "CANCELED") else None


def test_pipeline_tasks_wait_for_the_quota_and_run_one_after_the_other(
    client: httpx.Client, ns: str, tmp_path: Path
) -> None:
    _profile_with_quota(client, ns, {"cpu": "1", "limits.memory": "1Gi"})
    submitted = _submit(client, _experiment(client, ns), two_tasks, folder=str(tmp_path))
    assert submitted.status_code == 200, submitted.text
    run_id = submitted.json()["run_id"]

    def one_waits() -> tuple[dict[str, Any], dict[str, Any]] | None:
        tasks = _tasks(_run(client, run_id))
        running = [t for t in tasks.values() if t["state"] == "RUNNING"]
        waiting = [t for t in tasks.values() if t["state"] == "PENDING" and t.get("error")]
        return (running[0], waiting[0]) if running and waiting else None

    running, waiting = wait_for(one_waits, what="one task running and one waiting")
    assert waiting["error"]["message"] == (
        f'Error creating: pods "{run_id}-{waiting["display_name"]}" is forbidden: exceeded '
        "quota: kf-resource-quota, requested: cpu=1, used: cpu=1, limited: cpu=1 "
        "(the task waits until the quota has room)"
    )
    selector = f"pipeline/runid={run_id}"
    assert _pods(client, ns, selector) == [f"{run_id}-{running['display_name']}"]
    pod = client.get(f"/api/v1/namespaces/{ns}/pods/{run_id}-{running['display_name']}").json()
    assert pod["spec"]["containers"][0]["resources"] == {
        "requests": {"cpu": "1"},
        "limits": {"memory": "256Mi"},
    }
    assert _used(client, ns) == {"cpu": "1", "limits.memory": "256Mi"}

    (tmp_path / "release").touch()
    done = wait_for(lambda: _finished(client, run_id), what="the run finished")
    assert done["state"] == "SUCCEEDED", done
    assert all(t["state"] == "SUCCEEDED" and not t.get("error") for t in _tasks(done).values())
    # the second task started only once the first had ended
    lines = (tmp_path / "log").read_text().split()
    first, second = lines[1], lines[5]
    assert lines == ["start", first, "end", first, "start", second, "end", second]
    assert {first, second} == {"a", "b"}
    assert _used(client, ns) == {"cpu": "0", "limits.memory": "0"}


def test_a_pipeline_task_that_can_never_fit_fails_saying_so(
    client: httpx.Client, ns: str, tmp_path: Path
) -> None:
    _profile_with_quota(client, ns, {"cpu": "1"})
    submitted = _submit(client, _experiment(client, ns), too_big, folder=str(tmp_path))
    assert submitted.status_code == 200, submitted.text
    run_id = submitted.json()["run_id"]
    done = wait_for(lambda: _finished(client, run_id), what="the run finished")
    assert done["state"] == "FAILED"
    task = _tasks(done)["hold"]
    assert task["state"] == "FAILED"
    message = task["error"]["message"]
    assert message.startswith(
        f'Error creating: pods "{run_id}-hold" is forbidden: exceeded quota: '
        "kf-resource-quota, requested: cpu=2, used: cpu=0, limited: cpu=1: the task asks for "
        f"more than the quota of namespace '{ns}' allows, so it can never start"
    )
    assert "spec.resourceQuotaSpec.hard" in message
    assert not (tmp_path / "log").exists()  # it never ran


# -- a pipeline's runs, counted ------------------------------------------------------------------

RUNS = "count/pipelineruns.pipelines.ketch.dev"


def test_runs_past_a_count_quota_are_refused(client: httpx.Client, ns: str, tmp_path: Path) -> None:
    _profile_with_quota(client, ns, {RUNS: "1"})
    experiment_id = _experiment(client, ns)
    (tmp_path / "release").touch()
    first = _submit(client, experiment_id, too_big, folder=str(tmp_path))
    assert first.status_code == 200, first.text

    refused = _submit(client, experiment_id, too_big, folder=str(tmp_path))
    assert refused.status_code == 403, refused.text
    body = refused.json()
    assert body["code"] == 7  # PERMISSION_DENIED
    assert body["message"].startswith('pipelineruns.pipelines.ketch.dev "')
    assert body["message"].endswith(
        f'" is forbidden: exceeded quota: kf-resource-quota, requested: {RUNS}=1, '
        f"used: {RUNS}=1, limited: {RUNS}=1"
    )
    listed = client.get(f"{KFP}/runs", params={"namespace": ns}).json()["runs"]
    assert [r["run_id"] for r in listed] == [first.json()["run_id"]]
    assert _used(client, ns) == {RUNS: "1"}

    # a PipelineRun applied through the resource API is counted the same way
    applied = client.post(
        f"/apis/pipelines.ketch.dev/v1/namespaces/{ns}/pipelineruns",
        json={
            "apiVersion": "pipelines.ketch.dev/v1",
            "kind": "PipelineRun",
            "metadata": {"name": "applied"},
            "spec": {"pipelineSpec": ir_loader.load(too_big).spec},
        },
    )
    assert applied.status_code == 403, applied.text
    assert "exceeded quota: kf-resource-quota" in applied.json()["message"]

    # once the run is deleted there is room again
    wait_for(lambda: _finished(client, first.json()["run_id"]), what="the first run finished")
    assert client.delete(f"{KFP}/runs/{first.json()['run_id']}").status_code == 200
    again = _submit(client, experiment_id, too_big, folder=str(tmp_path))
    assert again.status_code == 200, again.text


# -- the jobs Katib's trials create ---------------------------------------------------------------


def test_a_trial_whose_job_exceeds_a_count_quota_waits_for_room(
    client: httpx.Client, ns: str, tmp_path: Path
) -> None:
    _profile_with_quota(client, ns, {"count/jobs.batch": "1"})
    release = tmp_path / "release"
    program = (
        "import os, sys, time\n"
        f"while not os.path.exists({str(release)!r}): time.sleep(0.05)\n"
        "print(f'score={float(sys.argv[1])}')\n"
    )
    exp = experiment(
        "counted",
        max_trials=2,
        parallel=2,
        maxFailedTrialCount=0,
        command=[PY, "-c", program, "${trialParameters.x}"],
        parameters=[
            {"name": "x", "parameterType": "double", "feasibleSpace": {"min": "0", "max": "1"}}
        ],
    )
    katib = KATIB.format(ns=ns)
    created = client.post(f"{katib}/experiments", json=exp)
    assert created.status_code == 201, created.text

    def trials() -> list[dict[str, Any]]:
        params = {"labelSelector": "katib.kubeflow.org/experiment=counted"}
        return list(client.get(f"{katib}/trials", params=params).json()["items"])

    def refused() -> tuple[str, str] | None:
        for trial in trials():
            name = trial["metadata"]["name"]
            found = _events(client, ns, name, "ReconcileFailed")
            if found:
                return name, found[0]
        return None

    waiting, message = wait_for(refused, what="a trial whose job the quota refused")
    assert message == (
        f'Failed to reconcile: jobs.batch "{waiting}" is forbidden: exceeded quota: '
        "kf-resource-quota, requested: count/jobs.batch=1, used: count/jobs.batch=1, "
        "limited: count/jobs.batch=1"
    )
    jobs = client.get(f"/apis/batch/v1/namespaces/{ns}/jobs").json()["items"]
    assert len(jobs) == 1 and jobs[0]["metadata"]["name"] != waiting
    trial = client.get(f"{katib}/trials/{waiting}").json()
    running = [c for c in trial["status"].get("conditions", []) if c["type"] == "Running"]
    assert running == []  # Created, not Running: its job does not exist yet

    # the first trial ends (its job is deleted): the waiting trial's job is created
    release.touch()

    def finished() -> dict[str, Any] | None:
        body = dict(client.get(f"{katib}/experiments/counted").json())
        for condition in body.get("status", {}).get("conditions", []):
            if condition["type"] in ("Succeeded", "Failed") and condition["status"] == "True":
                return body
        return None

    done = wait_for(finished, timeout=120, what="experiment counted finished")
    assert done["status"]["trialsSucceeded"] == 2, done["status"]
