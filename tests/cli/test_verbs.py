"""The kubectl-like verbs, run as real ``ketch`` subprocesses against a real server."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import yaml

from tests.cli import helpers
from tests.cli.helpers import Ketch, bad, ok
from tests.server.fixtures import job, jobs_path, runtime, runtimes_path
from tests.server.helpers import Server

ketch = helpers.ketch  # the fixture (tests/cli/conftest.py), still importable from here

MANIFESTS = """\
apiVersion: kubeflow.org/v1
kind: PyTorchJob
metadata:
  name: mnist
  labels: {team: a}
spec:
  pytorchReplicaSpecs:
    Master:
      replicas: 1
      template: {spec: {containers: [{name: pytorch, image: example/trainer, command: ["true"]}]}}
---
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: iris
spec:
  predictor: {model: {modelFormat: {name: sklearn}, storageUri: "file:///nonexistent/model.joblib"}}
"""


def test_apply_reports_created_unchanged_configured(ketch: Ketch, ns: str, tmp_path: Path) -> None:
    file = tmp_path / "m.yaml"
    file.write_text(MANIFESTS)
    assert ok(ketch("apply", "-f", str(file), "-n", ns)).splitlines() == [
        "pytorchjob/mnist created",
        "inferenceservice/iris created",
    ]
    assert ok(ketch("apply", "-f", str(file), "-n", ns)).splitlines() == [
        "pytorchjob/mnist unchanged",
        "inferenceservice/iris unchanged",
    ]
    changed = MANIFESTS.replace("image: example/trainer", "image: example/trainer:2")
    assert ok(ketch("apply", "-f", "-", "-n", ns, stdin=changed)).splitlines() == [
        "pytorchjob/mnist configured",
        "inferenceservice/iris unchanged",
    ]
    folder = tmp_path / "dir"
    folder.mkdir()
    (folder / "a.yaml").write_text(yaml.safe_dump(job("from-dir")))
    assert ok(ketch("apply", "-f", str(folder), "-n", ns)).strip() == "pytorchjob/from-dir created"


def test_get_formats(ketch: Ketch, client: httpx.Client, ns: str) -> None:
    client.post(runtimes_path(ns), json=runtime("alpha", labels={"tier": "web"}))
    client.post(runtimes_path(ns), json=runtime("beta"))
    client.put(
        runtimes_path(ns, "alpha") + "/status",
        json={
            "status": {
                "conditions": [
                    {
                        "type": "Created",
                        "status": "True",
                        "lastTransitionTime": "2024-01-01T00:00:00Z",
                    },
                    {
                        "type": "Running",
                        "status": "True",
                        "lastTransitionTime": "2024-01-01T00:01:00Z",
                    },
                ]
            }
        },
    )
    table = ok(ketch("get", "trainingruntimes", "-n", ns)).splitlines()
    assert table[0].split() == ["NAME", "STATE", "AGE"]
    assert table[1].split()[:2] == ["alpha", "Running"] and table[2].split()[:2] == ["beta", "-"]
    for spelling in ("TrainingRuntime", "trainingruntime", "TRAININGRUNTIMES"):
        assert "alpha" in ok(ketch("get", spelling, "-n", ns))
    single = json.loads(ok(ketch("get", "trainingruntime", "alpha", "-n", ns, "-o", "json")))
    assert single["metadata"]["name"] == "alpha"
    listed = yaml.safe_load(ok(ketch("get", "trainingruntimes", "-n", ns, "-o", "yaml")))
    assert [i["metadata"]["name"] for i in listed["items"]] == ["alpha", "beta"]
    wide = ok(ketch("get", "trainingruntimes", "-n", ns, "-o", "wide"))
    assert "LABELS" in wide and "tier=web" in wide
    selected = ok(ketch("get", "trainingruntimes", "-n", ns, "-l", "tier=web")).splitlines()
    assert len(selected) == 2 and "alpha" in selected[1]
    everywhere = ok(ketch("get", "trainingruntimes", "-A", "-o", "json"))
    assert {
        (i["metadata"]["namespace"], i["metadata"]["name"]) for i in json.loads(everywhere)["items"]
    } >= {
        (ns, "alpha"),
        (ns, "beta"),
    }
    assert ok(ketch("get", "trainingruntimes", "-A")).splitlines()[0].split()[:2] == [
        "NAMESPACE",
        "NAME",
    ]
    empty = ketch("get", "tfjobs", "-n", ns)
    assert empty.returncode == 0 and "No tfjobs found" in empty.stderr
    kinds = ok(ketch("get", "kinds"))
    assert "PyTorchJob" in kinds and "PipelineRun" in kinds


def test_describe_shows_conditions_and_events(
    ketch: Ketch, client: httpx.Client, server: Server, ns: str
) -> None:
    client.post(
        runtimes_path(ns),
        json=runtime("desc", labels={"team": "a"}, spec={"mlPolicy": {"numNodes": 2}}),
    )
    client.put(
        runtimes_path(ns, "desc") + "/status",
        json={
            "status": {
                "replicaStatuses": {"Master": {"active": 1}},
                "conditions": [
                    {
                        "type": "Running",
                        "status": "True",
                        "reason": "JobRunning",
                        "message": "job is running",
                    }
                ],
            }
        },
    )
    server.store().record_event(
        "TrainingRuntime", ns, "desc", reason="SuccessfulCreate", message="created pod"
    )
    text = ok(ketch("describe", "trainingruntime", "desc", "-n", ns))
    assert "Name:        desc" in text and "team=a" in text
    assert "mlPolicy" in text and "replicaStatuses" in text
    assert "Conditions:" in text and "JobRunning" in text and "job is running" in text
    assert "Events:" in text and "SuccessfulCreate" in text and "created pod" in text


def test_delete(ketch: Ketch, client: httpx.Client, ns: str) -> None:
    client.post(jobs_path(ns), json=job("a"))
    client.post(jobs_path(ns), json=job("b"))
    assert ok(ketch("delete", "pytorchjob", "a", "b", "-n", ns)).splitlines() == [
        "pytorchjob/a deleted",
        "pytorchjob/b deleted",
    ]
    bad(ketch("delete", "pytorchjob", "a", "-n", ns), 2, "not found")
    assert ketch("delete", "pytorchjob", "a", "-n", ns, "--ignore-not-found").returncode == 0


def test_logs(ketch: Ketch, server: Server, client: httpx.Client, ns: str) -> None:
    log = server.home / "logs" / "test" / ns / "master.log"  # where a controller writes logs
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("epoch 1 loss 0.5\n")
    # an object no controller writes the status of, so only the logPaths below are there
    client.post(runtimes_path(ns), json=runtime("lg"))
    server.store().update_status("TrainingRuntime", ns, "lg", {"logPaths": {"master-0": str(log)}})
    assert ok(ketch("logs", "trainingruntime", "lg", "-n", ns)) == "epoch 1 loss 0.5\n"
    assert (
        ok(ketch("logs", "trainingruntime", "lg", "-n", ns, "--replica", "master-0"))
        == "epoch 1 loss 0.5\n"
    )
    bad(ketch("logs", "trainingruntime", "lg", "-n", ns, "--replica", "worker-3"), 2, "worker-3")


def test_wait(ketch: Ketch, client: httpx.Client, ns: str) -> None:
    client.post(runtimes_path(ns), json=runtime("w"))  # no controller writes its status
    started = time.monotonic()
    timed_out = ketch(
        "wait", "trainingruntime", "w", "-n", ns, "--for", "condition=Succeeded", "--timeout", "1"
    )
    assert time.monotonic() - started >= 1
    bad(timed_out, 1, "timed out after 1s", "Succeeded")
    client.put(
        runtimes_path(ns, "w") + "/status",
        json={"status": {"conditions": [{"type": "Succeeded", "status": "True"}]}},
    )
    met = ketch(
        "wait", "trainingruntime", "w", "-n", ns, "--for", "condition=Succeeded", "--timeout", "10"
    )
    assert ok(met).strip() == "trainingruntime/w condition met"
    explicit = ketch(
        "wait",
        "trainingruntime",
        "w",
        "-n",
        ns,
        "--for",
        "condition=succeeded=True",
        "--timeout",
        "5",
    )
    assert ok(explicit).strip() == "trainingruntime/w condition met"
    client.delete(runtimes_path(ns, "w"))
    assert (
        ok(
            ketch("wait", "trainingruntime", "w", "-n", ns, "--for", "delete", "--timeout", "5")
        ).strip()
        == "trainingruntime/w deleted"
    )
    bad(ketch("wait", "trainingruntime", "w", "-n", ns, "--for", "condition=Ready"), 2, "not found")
    bad(ketch("wait", "trainingruntime", "w", "-n", ns, "--for", "ready"), 2, "--for")


def test_bad_input_exits_2_with_one_message(ketch: Ketch, ns: str, tmp_path: Path) -> None:
    malformed = tmp_path / "bad.yaml"
    malformed.write_text("kind: [unclosed\n")
    bad(ketch("apply", "-f", str(malformed)), 2, "malformed YAML", "line")
    bad(
        ketch("apply", "-f", "-", stdin="apiVersion: x/v1\nkind: Gizmo\nmetadata: {name: a}\n"),
        2,
        "unknown kind 'Gizmo'",
    )
    bad(
        ketch(
            "apply",
            "-f",
            "-",
            stdin="apiVersion: kubeflow.org/v2\nkind: PyTorchJob\nmetadata: {name: a}\n",
        ),
        2,
        "apiVersion",
    )
    bad(
        ketch(
            "apply",
            "-f",
            "-",
            stdin="apiVersion: kubeflow.org/v1\nkind: PyTorchJob\nmetadata: {name: Bad_Name}\n",
        ),
        2,
        "RFC 1123",
    )
    bad(ketch("apply", "-f", "-", stdin="- 1\n- 2\n"), 2, "mapping")
    bad(ketch("apply", "-f", str(tmp_path / "missing.yaml")), 2, "does not exist")
    bad(ketch("get", "pytorchjbos"), 2, "unknown kind", "PyTorchJob")
    bad(ketch("get", "pytorchjob", "Bad_Name"), 2, "RFC 1123")
    bad(ketch("get", "pytorchjob", "-n", "Bad_NS"), 2, "--namespace")
    bad(ketch("get", "pytorchjob", "-o", "xml"), 2, "output")
    bad(ketch("describe", "pytorchjob", "nothing-here", "-n", ns), 2, "not found")
    bad(
        ketch("wait", "pytorchjob", "x", "-n", ns, "--for", "condition=Ready", "--timeout", "nan"),
        2,
        "--timeout",
    )


def test_a_malformed_server_url_is_named(tmp_path: Path) -> None:
    import subprocess

    from tests.server.helpers import base_env, ketch_command

    for url in ("http://[bad", "http://127.0.0.1:99999", "ftp://example.com"):
        env = {**base_env(tmp_path), "KETCH_URL": url}
        result = subprocess.run(
            [*ketch_command(), "get", "kinds"], capture_output=True, text=True, env=env, timeout=60
        )
        bad(result, 2, "KETCH_URL", url)


def test_apply_keeps_going_after_a_server_side_error(ketch: Ketch, ns: str) -> None:
    spec = MANIFESTS.split("---")[0].split("spec:", 1)[1]
    documents = (
        f"apiVersion: kubeflow.org/v1\nkind: PyTorchJob\nmetadata: {{name: good}}\nspec:{spec}---\n"
        f"apiVersion: kubeflow.org/v1\nkind: PyTorchJob\nmetadata: {{name: bad, labels: {{a: 1}}}}\nspec:{spec}---\n"
        f"apiVersion: kubeflow.org/v1\nkind: PyTorchJob\nmetadata: {{name: also-good}}\nspec:{spec}"
    )
    result = ketch("apply", "-f", "-", "-n", ns, stdin=documents)
    assert result.returncode == 1  # some applied, one refused
    assert result.stdout.splitlines() == ["pytorchjob/good created", "pytorchjob/also-good created"]
    assert "<stdin> (document 2)" in result.stderr
    assert "pytorchjob/bad" in result.stderr and "metadata.labels" in result.stderr
