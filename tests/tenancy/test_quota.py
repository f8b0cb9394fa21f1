"""Profile quotas (``spec.resourceQuotaSpec.hard``), enforced as Kubernetes enforces
the ``kf-resource-quota`` ResourceQuota Kubeflow makes of them: over real HTTP
against a real ``ketch up``, with real job processes."""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import httpx

from tests.jobs.conftest import condition, manifest, replica
from tests.jobs.conftest import path as job_path
from tests.jobs.conftest import wait_for as wait_for_job
from tests.server.fixtures import SUSPENDED_JOB_SPEC
from tests.server.helpers import Server
from tests.server.kubectl import dispatcher, kubectl_for
from tests.tenancy.profiles import PROFILES, profile
from tests.waiting import wait_for

PY = sys.executable
JOBS = "/apis/kubeflow.org/v1/namespaces/{ns}/pytorchjobs"
QUOTA = "/api/v1/namespaces/{ns}/resourcequotas/kf-resource-quota"


def _profile_with_quota(client: httpx.Client, name: str, hard: dict[str, str]) -> None:
    response = client.post(PROFILES, json=profile(name, resourceQuotaSpec={"hard": hard}))
    assert response.status_code == 201, response.text


def _suspended_job(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": {"name": name},
        "spec": copy.deepcopy(SUSPENDED_JOB_SPEC),
    }


def _events(client: httpx.Client, ns: str, name: str) -> list[dict[str, Any]]:
    response = client.get(
        f"/api/v1/namespaces/{ns}/events",
        params={"fieldSelector": f"involvedObject.name={name}"},
    )
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def test_a_create_past_a_count_quota_is_forbidden_and_not_stored(
    client: httpx.Client, ns: str
) -> None:
    _profile_with_quota(client, ns, {"count/pytorchjobs.kubeflow.org": "2"})
    jobs = JOBS.format(ns=ns)
    for name in ("one", "two"):
        created = client.post(jobs, json=_suspended_job(name))
        assert created.status_code == 201, created.text

    refused = client.post(jobs, json=_suspended_job("three"))
    assert refused.status_code == 403, refused.text
    status = refused.json()
    assert status["kind"] == "Status"
    assert status["reason"] == "Forbidden"
    assert status["code"] == 403
    assert status["message"] == (
        'pytorchjobs.kubeflow.org "three" is forbidden: exceeded quota: kf-resource-quota, '
        "requested: count/pytorchjobs.kubeflow.org=1, used: count/pytorchjobs.kubeflow.org=2, "
        "limited: count/pytorchjobs.kubeflow.org=2"
    )
    assert client.get(f"{jobs}/three").status_code == 404
    listed = client.get(jobs).json()["items"]
    assert sorted(item["metadata"]["name"] for item in listed) == ["one", "two"]

    quota = client.get(QUOTA.format(ns=ns))
    assert quota.status_code == 200, quota.text
    assert quota.json()["status"] == {
        "hard": {"count/pytorchjobs.kubeflow.org": "2"},
        "used": {"count/pytorchjobs.kubeflow.org": "2"},
    }

    # a PUT that would create it, and a dry run, are refused the same way
    put = client.put(f"{jobs}/three", json=_suspended_job("three"))
    assert put.status_code == 403, put.text
    dry = client.post(jobs, params={"dryRun": "All"}, json=_suspended_job("three"))
    assert dry.status_code == 403, dry.text
    assert client.get(f"{jobs}/three").status_code == 404

    # updates of what is there are not creates: the quota does not stop them
    one = client.get(f"{jobs}/one").json()
    one["metadata"].setdefault("labels", {})["touched"] = "yes"
    assert client.put(f"{jobs}/one", json=one).status_code == 200

    # once one is deleted there is room again
    assert client.delete(f"{jobs}/two").status_code == 200
    again = client.post(jobs, json=_suspended_job("three"))
    assert again.status_code == 201, again.text


def test_a_namespace_without_a_quota_is_not_limited(client: httpx.Client, ns: str) -> None:
    jobs = JOBS.format(ns=ns)
    for index in range(3):
        created = client.post(jobs, json=_suspended_job(f"job-{index}"))
        assert created.status_code == 201, created.text


def test_a_job_past_the_cpu_quota_waits_until_the_running_one_finishes(
    client: httpx.Client, ns: str, tmp_path: Path
) -> None:
    _profile_with_quota(client, ns, {"cpu": "1", "memory": "1Gi"})
    release = tmp_path / "release"
    resources = {"requests": {"cpu": "1", "memory": "256Mi"}}
    holds = [
        PY,
        "-c",
        f"import os, time\nwhile not os.path.exists({str(release)!r}): time.sleep(0.05)",
    ]
    first = manifest("PyTorchJob", "first", {"Master": replica(holds, resources=resources)})
    second = manifest(
        "PyTorchJob", "second", {"Master": replica([PY, "-c", "pass"], resources=resources)}
    )
    jobs = JOBS.format(ns=ns)
    assert client.post(jobs, json=first).status_code == 201
    wait_for_job(client, "PyTorchJob", ns, "first", "Running")
    assert client.post(jobs, json=second).status_code == 201

    def quota_event() -> dict[str, Any] | None:
        for event in _events(client, ns, "second"):
            if event["reason"] == "FailedCreate":
                return event
        return None

    event = wait_for(quota_event, what="a FailedCreate event on the second job")
    assert event["type"] == "Warning"
    assert event["message"] == (
        'Error creating: pods "second-master-0" is forbidden: exceeded quota: '
        "kf-resource-quota, requested: cpu=1, used: cpu=1, limited: cpu=1"
    )
    waiting = client.get(job_path("PyTorchJob", ns, "second")).json()
    assert "startTime" not in waiting["status"]
    assert condition(waiting, "Running") is None
    assert "kf-resource-quota" in waiting["status"]["admission"]
    pods = client.get(
        f"/api/v1/namespaces/{ns}/pods",
        params={"labelSelector": "training.kubeflow.org/job-name=second"},
    ).json()["items"]
    assert pods == []
    quota = client.get(QUOTA.format(ns=ns)).json()
    assert quota["status"] == {
        "hard": {"cpu": "1", "memory": "1Gi"},
        "used": {"cpu": "1", "memory": "256Mi"},
    }

    release.touch()
    done_first = wait_for_job(client, "PyTorchJob", ns, "first", "Succeeded")
    done_second = wait_for_job(client, "PyTorchJob", ns, "second", "Succeeded")
    assert done_second["status"]["startTime"] >= done_first["status"]["completionTime"]
    assert "admission" not in done_second["status"]


def test_a_gang_starts_whole_or_not_at_all(client: httpx.Client, ns: str, tmp_path: Path) -> None:
    _profile_with_quota(client, ns, {"pods": "2"})
    release = tmp_path / "release"
    holds = [
        PY,
        "-c",
        f"import os, time\nwhile not os.path.exists({str(release)!r}): time.sleep(0.05)",
    ]
    jobs = JOBS.format(ns=ns)
    lone = manifest("PyTorchJob", "lone", {"Master": replica(holds)})
    assert client.post(jobs, json=lone).status_code == 201
    wait_for_job(client, "PyTorchJob", ns, "lone", "Running")
    gang = manifest(
        "PyTorchJob",
        "gang",
        {"Master": replica([PY, "-c", "pass"]), "Worker": replica([PY, "-c", "pass"])},
    )
    assert client.post(jobs, json=gang).status_code == 201

    def refused() -> str | None:
        for event in _events(client, ns, "gang"):
            if event["reason"] == "FailedCreate":
                return str(event["message"])
        return None

    message = wait_for(refused, what="a FailedCreate event on the gang")
    assert message == (
        'Error creating: pods "gang-master-0" (and 1 more pods of the gang) is forbidden: '
        "exceeded quota: kf-resource-quota, requested: pods=2, used: pods=1, limited: pods=2"
    )
    pods = client.get(f"/api/v1/namespaces/{ns}/pods").json()["items"]
    assert sorted(p["metadata"]["name"] for p in pods) == ["lone-master-0"]

    release.touch()
    wait_for_job(client, "PyTorchJob", ns, "gang", "Succeeded")


def test_a_batch_job_runs_its_pods_one_at_a_time_under_a_memory_quota(
    client: httpx.Client, ns: str
) -> None:
    _profile_with_quota(client, ns, {"requests.memory": "512Mi"})
    container = {
        "name": "main",
        "image": "python:3.12",
        "command": [PY, "-c", "import time; time.sleep(0.3)"],
        "resources": {"requests": {"memory": "300Mi"}},
    }
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "pairs"},
        "spec": {
            "completions": 2,
            "parallelism": 2,
            "template": {"spec": {"containers": [container], "restartPolicy": "Never"}},
        },
    }
    jobs = f"/apis/batch/v1/namespaces/{ns}/jobs"
    assert client.post(jobs, json=job).status_code == 201

    def complete() -> dict[str, Any] | None:
        current: dict[str, Any] = client.get(f"{jobs}/pairs").json()
        found = condition(current, "Complete")
        return current if found and found["status"] == "True" else None

    done = wait_for(complete, what="the Job to complete")
    assert done["status"]["succeeded"] == 2
    refusals = [e for e in _events(client, ns, "pairs") if e["reason"] == "FailedCreate"]
    assert refusals, "the second pod never waited for the quota"
    assert refusals[0]["message"] == (
        'Error creating: pods "pairs-1" is forbidden: exceeded quota: kf-resource-quota, '
        "requested: requests.memory=300Mi, used: requests.memory=300Mi, "
        "limited: requests.memory=512Mi"
    )


def test_kubectl_shows_the_quota_and_cannot_write_it(
    server: Server, client: httpx.Client, ns: str, tmp_path: Path
) -> None:
    _profile_with_quota(
        client, ns, {"requests.cpu": "2", "limits.memory": "1Gi", "count/configmaps": "1"}
    )
    kubectl = kubectl_for(server.url, tmp_path, dispatcher(), namespace=ns)
    kubectl.run("create", "configmap", "settings", "--from-literal=a=b")
    refused = kubectl.run("create", "configmap", "more", "--from-literal=a=b", check=False)
    assert refused.returncode != 0
    assert (
        'configmaps "more" is forbidden: exceeded quota: kf-resource-quota, requested: '
        "count/configmaps=1, used: count/configmaps=1, limited: count/configmaps=1"
    ) in refused.stderr
    listed = kubectl.run("get", "quota").stdout.splitlines()
    assert listed[0].split() == ["NAME", "REQUEST", "LIMIT", "AGE"]
    assert listed[1].startswith("kf-resource-quota")
    assert "count/configmaps: 1/1, requests.cpu: 0/2" in listed[1]
    assert "limits.memory: 0/1Gi" in listed[1]
    edit = kubectl.run("delete", "resourcequota", "kf-resource-quota", check=False)
    assert edit.returncode != 0 and "change the Profile" in edit.stderr
    assert client.get(QUOTA.format(ns=ns)).status_code == 200
    assert client.get(QUOTA.format(ns="no-such-profile")).status_code == 404
