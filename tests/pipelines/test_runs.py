"""PipelineRun: stored pipeline runs through the resource API, submitted and run for real."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.pipelines.submitted import hello_pipeline_ir
from tests.server import fixtures
from tests.server.helpers import Server, assert_error
from tests.waiting import poll

server = fixtures.server  # a real ``ketch up`` per database, shared by the session
ns = fixtures.ns
client = fixtures.client

TERMINAL = {"SUCCEEDED", "FAILED", "CANCELED", "SKIPPED"}


def runs_path(ns: str, name: str | None = None) -> str:
    base = f"/apis/pipelines.ketch.dev/v1/namespaces/{ns}/pipelineruns"
    return f"{base}/{name}" if name else base


def run_manifest(ir: dict[str, Any], name: str | None = "hello", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "pipelines.ketch.dev/v1",
        "kind": "PipelineRun",
        "metadata": {"name": name} if name else {},
        "spec": {"pipelineSpec": ir, **spec},
    }


@pytest.fixture(scope="module")
def hello_ir(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return hello_pipeline_ir(tmp_path_factory.mktemp("ir"))


@pytest.fixture(scope="module")
def slow_ir(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    import yaml
    from kfp import compiler

    from tests.pipelines.submitted import slow

    path: Path = tmp_path_factory.mktemp("ir") / "slow.yaml"
    compiler.Compiler().compile(slow, str(path))
    return dict(yaml.safe_load(path.read_text()))


def wait_state(
    client: httpx.Client, ns: str, name: str, states: set[str], timeout: float = 90
) -> dict[str, Any]:
    run: dict[str, Any] = {}

    def reached() -> bool:
        nonlocal run
        run = client.get(runs_path(ns, name)).json()
        return run["status"]["state"] in states

    assert poll(reached, timeout, 0.1), run["status"]
    return run


def submit(client: httpx.Client, ns: str, manifest: dict[str, Any]) -> dict[str, Any]:
    response = client.post(runs_path(ns), json=manifest)
    assert response.status_code == 201, response.text
    return dict(response.json())


def test_submit_read_list_and_logs(client: httpx.Client, ns: str, hello_ir: dict[str, Any]) -> None:
    created = submit(client, ns, run_manifest(hello_ir, parameters={"msg": f"run-{ns}"}))
    run_id = created["metadata"]["name"]
    assert created["metadata"]["uid"] == run_id
    assert created["metadata"]["annotations"]["pipelines.ketch.dev/display-name"] == "hello"
    run = wait_state(client, ns, run_id, TERMINAL)
    assert run["status"]["state"] == "SUCCEEDED", run["status"]
    conditions = {c["type"]: c["status"] for c in run["status"]["conditions"]}
    assert conditions == {
        "Running": "False",
        "Succeeded": "True",
        "Failed": "False",
        "Canceled": "False",
    }
    assert run["spec"]["parameters"] == {"msg": f"run-{ns}"} and run["spec"]["pipelineSpec"]
    tasks = {t["path"]: t for t in run["status"]["tasks"]}
    assert set(tasks) == {"say", "say-2"} and all(t["state"] == "SUCCEEDED" for t in tasks.values())
    assert run["status"]["completionTime"].endswith("Z")

    listed = client.get(runs_path(ns)).json()
    assert listed["kind"] == "PipelineRunList" and [
        i["metadata"]["name"] for i in listed["items"]
    ] == [run_id]
    assert "pipelineSpec" not in listed["items"][0]["spec"]
    by_label = client.get(
        runs_path(ns), params={"labelSelector": "pipelines.ketch.dev/pipeline=hello-pipeline"}
    )
    assert len(by_label.json()["items"]) == 1
    assert (
        client.get(
            runs_path(ns), params={"labelSelector": "pipelines.ketch.dev/state=FAILED"}
        ).json()["items"]
        == []
    )

    one = client.get(runs_path(ns, run_id) + "/logs", params={"task": "say"})
    assert one.status_code == 200 and f"hello from run-{ns}" in one.text
    everything = client.get(runs_path(ns, run_id) + "/logs", params={"follow": "true"}).text
    assert everything.startswith("==> say <==\n") and f"hello from run-{ns}" in everything
    alias = client.get(runs_path(ns, run_id) + "/log", params={"task": "say"})
    assert alias.text == one.text
    assert_error(client.get(runs_path(ns, run_id) + "/logs", params={"task": "nope"}), 404, "say")

    # runs cannot be changed; a finished one can be deleted
    same = client.put(
        runs_path(ns, run_id), json=run_manifest(hello_ir, run_id, parameters={"msg": f"run-{ns}"})
    )
    assert same.status_code == 200 and same.headers["X-Ketch-Apply"] == "unchanged"
    changed = client.put(
        runs_path(ns, run_id), json=run_manifest(hello_ir, run_id, parameters={"msg": "other"})
    )
    assert_error(changed, 409, "cannot be changed")
    assert_error(client.patch(runs_path(ns, run_id), json={"spec": {}}), 405)
    assert_error(client.put(runs_path(ns, run_id) + "/status", json={"status": {}}), 405)
    assert client.delete(runs_path(ns, run_id)).status_code == 200
    assert_error(client.get(runs_path(ns, run_id)), 404)
    assert_error(client.get(runs_path(ns + "x", run_id)), 404)


def test_invalid_runs_are_refused(client: httpx.Client, ns: str, hello_ir: dict[str, Any]) -> None:
    no_ir = run_manifest(hello_ir)
    del no_ir["spec"]["pipelineSpec"]
    assert_error(client.post(runs_path(ns), json=no_ir), 422, "spec.pipelineSpec")
    assert_error(client.post(runs_path(ns), json=run_manifest({"nonsense": True})), 400)
    unknown = run_manifest(hello_ir, extra=1)
    assert_error(client.post(runs_path(ns), json=unknown), 422, "spec.extra")
    bad_params = run_manifest(hello_ir, parameters=[1])
    assert_error(client.post(runs_path(ns), json=bad_params), 422, "spec.parameters")
    wrong_param = run_manifest(hello_ir, parameters={"nope": 1})
    assert_error(client.post(runs_path(ns), json=wrong_param), 400)
    assert client.get(runs_path(ns)).json()["items"] == []


def test_unnamed_run_is_named_after_the_pipeline(
    client: httpx.Client, ns: str, hello_ir: dict[str, Any]
) -> None:
    created = submit(client, ns, run_manifest(hello_ir, name=None))
    assert (
        created["metadata"]["annotations"]["pipelines.ketch.dev/display-name"] == "hello-pipeline"
    )
    wait_state(client, ns, created["metadata"]["name"], TERMINAL)


def test_watch_follows_a_run_to_the_end(
    server: Server, client: httpx.Client, ns: str, hello_ir: dict[str, Any]
) -> None:
    with httpx.Client(base_url=server.url, timeout=60) as http:
        with http.stream("GET", runs_path(ns), params={"watch": "true"}) as response:
            # a Kubernetes watch stream: one JSON event per line
            assert response.headers["content-type"] == "application/json"
            events = (json.loads(line) for line in response.iter_lines() if line.strip())
            created = submit(client, ns, run_manifest(hello_ir, parameters={"msg": f"w-{ns}"}))
            event = next(events)
            assert (
                event["type"] == "ADDED"
                and event["object"]["metadata"]["name"] == created["metadata"]["name"]
            )
            while event["object"]["status"]["state"] not in TERMINAL:
                event = next(events)
                assert event["type"] == "MODIFIED"
            assert event["object"]["status"]["state"] == "SUCCEEDED"


def test_cancel_retry_and_delete(client: httpx.Client, ns: str, slow_ir: dict[str, Any]) -> None:
    created = submit(client, ns, run_manifest(slow_ir, name="slow", parameters={"seconds": 60.0}))
    run_id = created["metadata"]["name"]
    wait_state(client, ns, run_id, {"RUNNING"})
    assert_error(client.delete(runs_path(ns, run_id)), 409, "cancel it first")
    canceled = client.post(runs_path(ns, run_id) + "/cancel")
    assert canceled.status_code == 200, canceled.text
    run = wait_state(client, ns, run_id, TERMINAL, timeout=30)
    assert run["status"]["state"] == "CANCELED"
    assert {c["type"]: c["status"] for c in run["status"]["conditions"]}["Canceled"] == "True"

    retried = client.post(runs_path(ns, run_id) + "/retry")
    assert retried.status_code == 200, retried.text
    wait_state(client, ns, run_id, {"RUNNING", "PENDING"})
    client.post(runs_path(ns, run_id) + "/cancel")
    wait_state(client, ns, run_id, TERMINAL, timeout=30)
    assert client.delete(runs_path(ns, run_id)).status_code == 200
    assert_error(client.post(runs_path(ns, run_id) + "/cancel"), 404)
