"""What ``ketch get``/``describe`` say of InferenceServices that fail, and ``ketch logs
--replica`` with a replica's short name, against real services and real jobs."""

from __future__ import annotations

import signal
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import httpx
import pytest

from tests.cli.helpers import Ketch, bad, ok
from tests.server.fixtures import job, jobs_path, runtime, runtimes_path
from tests.server.helpers import Server, base_env, ketch_command

ISVC = """\
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata: {{name: {name}}}
spec:
  predictor:
    model:
      modelFormat: {{name: sklearn}}
      storageUri: {uri}
"""


def test_version_prints_the_installed_version(tmp_path: Path) -> None:
    for flag in ("--version", "-V"):
        result = subprocess.run(
            [*ketch_command(), flag],
            capture_output=True,
            text=True,
            timeout=60,
            env=base_env(tmp_path),
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == f"ketch {version('ketch')}"


def _sklearn_model(folder: Path) -> Path:
    joblib = pytest.importorskip("joblib")
    linear_model = pytest.importorskip("sklearn.linear_model")
    folder.mkdir(parents=True)
    model = linear_model.LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])
    joblib.dump(model, folder / "model.joblib")
    return folder / "model.joblib"


def test_get_isvc_shows_a_failed_service_as_failed_with_its_reason(
    ketch: Ketch, ns: str, tmp_path: Path
) -> None:
    model = _sklearn_model(tmp_path / "model")
    manifests = (
        ISVC.format(name="good", uri=model.as_uri())
        + "---\n"
        + ISVC.format(name="broken", uri=(tmp_path / "missing" / "model.joblib").as_uri())
    )
    ok(ketch("apply", "-f", "-", "-n", ns, stdin=manifests))
    try:
        ok(
            ketch(
                "wait",
                "isvc",
                "broken",
                "-n",
                ns,
                "--for",
                "condition=Ready=False",
                "--timeout",
                "120",
                timeout=150,
            )
        )
        ok(
            ketch(
                "wait",
                "isvc",
                "good",
                "-n",
                ns,
                "--for",
                "condition=Ready",
                "--timeout",
                "120",
                timeout=150,
            )
        )
        table = ok(ketch("get", "isvc", "-n", ns))
        assert "IngressReady" not in table
        header, *rows = [line.split() for line in table.splitlines()]
        assert header == ["NAME", "URL", "STATE", "READY", "REASON", "AGE"]
        by_name = {row[0]: row for row in rows}
        assert by_name["broken"][2:5] == ["Failed", "False", "RevisionFailed"]
        assert by_name["good"][2:5] == ["Ready", "True", "-"]
        assert by_name["good"][1].startswith("http://")
        wide = ok(ketch("get", "isvc", "broken", "-n", ns, "-o", "wide"))
        assert "MESSAGE" in wide and "revision broken-predictor" in " ".join(
            wide.split()
        )  # may wrap
        described = ok(ketch("describe", "isvc", "broken", "-n", ns))
        state = next(line for line in described.splitlines() if line.startswith("State:"))
        assert state.split()[1] == "Failed" and "RevisionFailed" in state
    finally:
        ketch("delete", "isvc", "good", "broken", "-n", ns, "--ignore-not-found")


JOB = """\
apiVersion: kubeflow.org/v1
kind: PyTorchJob
metadata: {{name: {name}}}
spec:
  pytorchReplicaSpecs:
    Master:
      replicas: 1
      template: {{spec: {{containers: [{{name: pytorch, image: example/trainer, command: {command}}}]}}}}
    Worker:
      replicas: 2
      template: {{spec: {{containers: [{{name: pytorch, image: example/trainer, command: {command}}}]}}}}
"""

# Prints twice with a pause between, so a follower sees a log that is still growing.
SCRIPT = (
    "import os, time; print('first from rank', os.environ['RANK'], flush=True); "
    "time.sleep(1); print('last from rank', os.environ['RANK'], flush=True)"
)


def test_logs_replica_short_name_with_and_without_follow(ketch: Ketch, ns: str) -> None:
    command = [sys.executable, "-c", SCRIPT]
    ok(ketch("apply", "-f", "-", "-n", ns, stdin=JOB.format(name="lj", command=command)))
    # Straight after apply: the replica may not have started; --follow waits for it.
    followed = ok(
        ketch(
            "logs", "pytorchjob", "lj", "-n", ns, "--replica", "worker-1", "--follow", timeout=120
        )
    )
    assert followed == "first from rank 2\nlast from rank 2\n"
    ok(
        ketch(
            "wait",
            "pytorchjob",
            "lj",
            "-n",
            ns,
            "--for",
            "condition=Succeeded",
            "--timeout",
            "60",
            timeout=90,
        )
    )
    assert (
        ok(ketch("logs", "pytorchjob", "lj", "-n", ns, "--replica", "worker-1"))
        == "first from rank 2\nlast from rank 2\n"
    )
    assert (
        ok(ketch("logs", "pytorchjob", "lj", "-n", ns, "--replica", "Worker-0"))
        == "first from rank 1\nlast from rank 1\n"
    )
    assert ok(ketch("logs", "pytorchjob", "lj", "-n", ns, "--replica", "lj-master-0")).startswith(
        "first from rank 0\n"
    )
    assert ok(ketch("logs", "pytorchjob", "lj", "-n", ns, "--replica", "master-0", "-f")) == (
        "first from rank 0\nlast from rank 0\n"
    )
    # A replica the job does not have: refused at once, naming the ones it has.
    for follow in ((), ("--follow",)):
        bad(
            ketch("logs", "pytorchjob", "lj", "-n", ns, "--replica", "worker-7", *follow),
            2,
            "worker-7",
            "lj-worker-1",
        )
    bad(ketch("logs", "pytorchjob", "lj", "-n", ns, "--task", "train"), 2, "--task")
    bad(ketch("logs", "pytorchjob", "lj", "-n", ns, "--replica", " "), 2, "--replica")
    bad(
        ketch("logs", "pytorchjob", "nothing-here", "-n", ns, "--replica", "worker-1", "-f"),
        2,
        "not found",
    )


def _interruptible() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_follow_waits_for_a_replica_that_has_not_started(
    server: Server, client: httpx.Client, ns: str, tmp_path: Path
) -> None:
    """A suspended job has no replica yet: --follow says it waits, and Ctrl-C ends it (130)."""
    client.post(jobs_path(ns), json=job("later"))
    env = {**base_env(tmp_path / "client-home"), "KETCH_URL": server.url}
    nothing = subprocess.run(
        [*ketch_command(), "logs", "pytorchjob", "later", "-n", ns],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert (nothing.returncode, nothing.stdout, nothing.stderr) == (
        0,
        "",
        "pytorchjob/later: no log output (yet)\n",
    )
    follower = subprocess.Popen(
        [
            *ketch_command(),
            "logs",
            "pytorchjob",
            "later",
            "-n",
            ns,
            "--replica",
            "master-0",
            "--follow",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        # as a shell starts a foreground command: Ctrl-C at its default, whatever the
        # test process inherited (Python leaves an inherited "ignore" in place)
        preexec_fn=_interruptible,
    )
    try:
        assert follower.stderr is not None
        line = follower.stderr.readline()
        assert (
            line.strip()
            == "waiting for replica master-0 of pytorchjob/later to start (Ctrl-C to stop)"
        )
        follower.send_signal(signal.SIGINT)
        out, err = follower.communicate(timeout=30)
        assert follower.returncode == 130 and out == "" and "Traceback" not in err
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()


def test_a_components_readiness_is_never_shown_as_the_state(
    ketch: Ketch, client: httpx.Client, ns: str
) -> None:
    """On an object whose status no controller writes (a TrainingRuntime), STATE comes
    from Ready when there is one, and a component's *Ready condition is never the state."""
    statuses = {
        "ingress-only": [{"type": "IngressReady", "status": "True"}],
        "not-ready": [
            {
                "type": "IngressReady",
                "status": "True",
                "lastTransitionTime": "2024-01-01T00:02:00Z",
            },
            {
                "type": "Ready",
                "status": "Unknown",
                "reason": "ReplicasStarting",
                "lastTransitionTime": "2024-01-01T00:01:00Z",
            },
        ],
    }
    for name, conditions in statuses.items():
        client.post(runtimes_path(ns), json=runtime(name))
        client.put(runtimes_path(ns, name) + "/status", json={"status": {"conditions": conditions}})
    rows = {
        line.split()[0]: line.split()
        for line in ok(ketch("get", "trainingruntimes", "-n", ns)).splitlines()
    }
    assert rows["NAME"] == ["NAME", "STATE", "READY", "REASON", "AGE"]
    assert rows["ingress-only"][1:4] == ["-", "-", "-"]
    assert rows["not-ready"][1:4] == ["NotReady", "Unknown", "ReplicasStarting"]
