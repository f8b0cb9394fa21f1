"""Katib Experiments and Trials in the CLI: get, describe and the live --watch view.

The Experiment and its Trials are written straight through the resource API (the
objects, then their status subresource, in Katib v1beta1's shapes), then real
``ketch`` subprocesses read them over HTTP. The API server runs without its
controllers, so what a test writes is what the CLI shows: a tuning controller would
otherwise start trials of its own for these experiments.
"""

from __future__ import annotations

import os
import pty
import queue
import subprocess
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.server.helpers import ThreadServer, base_env, ketch_command

Ketch = Callable[..., subprocess.CompletedProcess[str]]
LABEL = "katib.kubeflow.org/experiment"
BASE = "/apis/kubeflow.org/v1beta1/namespaces/{ns}/{plural}"
NOW = datetime.now(UTC)


def stamp(seconds_ago: float) -> str:
    return (NOW - timedelta(seconds=seconds_ago)).isoformat().replace("+00:00", "Z")


@pytest.fixture(scope="module")
def api_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """``(url, database url)`` of a real API server on 127.0.0.1 that runs no controllers."""
    from ketch.capabilities import create_app

    database = f"sqlite:///{tmp_path_factory.mktemp('ketch-views') / 'ketch.db'}"
    with ThreadServer(create_app(database_url=database, background=False)) as server:
        yield server.url, database


@pytest.fixture
def api(api_server: tuple[str, str]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api_server[0], timeout=30.0) as http:
        yield http


@pytest.fixture
def env(api_server: tuple[str, str], tmp_path: Path) -> dict[str, str]:
    environment = base_env(tmp_path / "client-home")
    environment["KETCH_URL"] = api_server[0]
    return environment


@pytest.fixture
def ketch(env: dict[str, str], tmp_path: Path) -> Ketch:
    def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*ketch_command(), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            cwd=tmp_path,
        )

    return run


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    return result.stdout


# -- objects in Katib's shapes ------------------------------------------------------------


def experiment(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "kubeflow.org/v1beta1",
        "kind": "Experiment",
        "metadata": {"name": name},
        "spec": {
            "objective": {
                "type": "maximize",
                "goal": 0.99,
                "objectiveMetricName": "accuracy",
                "additionalMetricNames": ["loss"],
                "metricStrategies": [
                    {"name": "accuracy", "value": "max"},
                    {"name": "loss", "value": "min"},
                ],
            },
            "algorithm": {"algorithmName": "random"},
            "parallelTrialCount": 2,
            "maxTrialCount": 6,
            "maxFailedTrialCount": 3,
            "parameters": [
                {
                    "name": "lr",
                    "parameterType": "double",
                    "feasibleSpace": {"min": "0.001", "max": "0.3"},
                },
                {
                    "name": "optimizer",
                    "parameterType": "categorical",
                    "feasibleSpace": {"list": ["sgd", "adam"]},
                },
            ],
            "trialTemplate": {
                "primaryContainerName": "training-container",
                "trialParameters": [
                    {"name": "learningRate", "reference": "lr"},
                    {"name": "optimizer", "reference": "optimizer"},
                ],
                "trialSpec": job_spec(
                    "${trialParameters.learningRate}", "${trialParameters.optimizer}"
                ),
            },
        },
    }


def job_spec(lr: str, optimizer: str) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "training-container",
                            "image": "python:3.11",
                            "command": [
                                "python",
                                "-c",
                                f"print('accuracy=0.9 lr={lr} opt={optimizer}')",
                            ],
                        }
                    ],
                    "restartPolicy": "Never",
                }
            }
        },
    }


def condition(type_: str, reason: str, seconds_ago: float, status: str = "True") -> dict[str, Any]:
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": f"Trial is {type_.lower()}",
        "lastUpdateTime": stamp(seconds_ago),
        "lastTransitionTime": stamp(seconds_ago),
    }


def trial_status(
    state: str, accuracy: tuple[str, str] | None = None, loss: str | None = None
) -> dict[str, Any]:
    """A Trial's status: ``accuracy`` is (max, latest); Running trials have no completion."""
    conditions = [condition("Created", "TrialCreated", 40)]
    status: dict[str, Any] = {"startTime": stamp(30)}
    if state == "Running":
        conditions.append(condition("Running", "TrialRunning", 30))
    else:
        conditions.append(condition("Running", "TrialRunning", 18, status="False"))
        conditions.append(condition(state, f"Trial{state}", 18))
        status["completionTime"] = stamp(18)
    status["conditions"] = conditions
    metrics = []
    if accuracy is not None:
        metrics.append(
            {"name": "accuracy", "min": "0.5", "max": accuracy[0], "latest": accuracy[1]}
        )
    if loss is not None:
        metrics.append({"name": "loss", "min": loss, "max": "2.5", "latest": loss})
    if metrics:
        status["observation"] = {"metrics": metrics}
    return status


# name suffix, lr, optimizer, state, accuracy (max, latest), loss (min)
TRIALS = [
    ("aaaaaaaa", "0.01", "sgd", "Succeeded", ("0.91", "0.9"), "0.31"),
    ("bbbbbbbb", "0.05", "adam", "Succeeded", ("0.97", "0.95"), "0.12"),
    ("cccccccc", "0.1", "sgd", "Succeeded", ("0.85", "0.85"), "0.44"),
    ("dddddddd", "0.2", "adam", "Failed", None, None),
    ("eeeeeeee", "0.03", "sgd", "Running", None, None),
]


def create_experiment(
    api: httpx.Client, ns: str, name: str, pareto: list[str] | None = None
) -> dict[str, Any]:
    """The Experiment, its five Trials with their status, then the Experiment's status."""
    created = api.post(BASE.format(ns=ns, plural="experiments"), json=experiment(name))
    assert created.status_code == 201, created.text
    owner = created.json()["metadata"]
    spec = experiment(name)["spec"]
    names: dict[str, list[str]] = {}
    for suffix, lr, optimizer, state, accuracy, loss in TRIALS:
        trial_name = f"{name}-{suffix}"
        trial = {
            "apiVersion": "kubeflow.org/v1beta1",
            "kind": "Trial",
            "metadata": {
                "name": trial_name,
                "labels": {LABEL: name},
                "ownerReferences": [
                    {
                        "apiVersion": "kubeflow.org/v1beta1",
                        "kind": "Experiment",
                        "name": name,
                        "uid": owner["uid"],
                        "controller": True,
                    }
                ],
            },
            "spec": {
                "parameterAssignments": [
                    {"name": "lr", "value": lr},
                    {"name": "optimizer", "value": optimizer},
                ],
                "objective": spec["objective"],
                "runSpec": {**job_spec(lr, optimizer), "metadata": {"name": trial_name}},
                "primaryContainerName": "training-container",
                "metricsCollector": {"collector": {"kind": "StdOut"}},
            },
        }
        response = api.post(BASE.format(ns=ns, plural="trials"), json=trial)
        assert response.status_code == 201, response.text
        put_status(api, ns, "trials", trial_name, trial_status(state, accuracy, loss))
        names.setdefault(state, []).append(trial_name)
    best = f"{name}-bbbbbbbb"
    status: dict[str, Any] = {
        "startTime": stamp(45),
        "conditions": [
            {
                "type": "Created",
                "status": "True",
                "reason": "ExperimentCreated",
                "message": "Experiment is created",
                "lastTransitionTime": stamp(45),
            },
            {
                "type": "Running",
                "status": "True",
                "reason": "ExperimentRunning",
                "message": "Experiment is running",
                "lastTransitionTime": stamp(44),
            },
        ],
        "currentOptimalTrial": {
            "bestTrialName": best,
            "parameterAssignments": [
                {"name": "lr", "value": "0.05"},
                {"name": "optimizer", "value": "adam"},
            ],
            "observation": {
                "metrics": [
                    {"name": "accuracy", "min": "0.5", "max": "0.97", "latest": "0.95"},
                    {"name": "loss", "min": "0.12", "max": "2.5", "latest": "0.12"},
                ]
            },
        },
        "succeededTrialList": names["Succeeded"],
        "failedTrialList": names["Failed"],
        "runningTrialList": names["Running"],
        "trials": 5,
        "trialsSucceeded": 3,
        "trialsFailed": 1,
        "trialsRunning": 1,
    }
    if pareto is not None:
        status["paretoFront"] = [f"{name}-{suffix}" for suffix in pareto]
    return put_status(api, ns, "experiments", name, status)


def put_status(
    api: httpx.Client, ns: str, plural: str, name: str, status: dict[str, Any]
) -> dict[str, Any]:
    response = api.put(
        f"{BASE.format(ns=ns, plural=plural)}/{name}/status", json={"status": status}
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def finish(api: httpx.Client, ns: str, name: str, state: str = "Succeeded") -> None:
    """The running trial succeeds; the experiment ends as ``state``."""
    trial = f"{name}-eeeeeeee"
    put_status(api, ns, "trials", trial, trial_status("Succeeded", ("0.93", "0.93"), "0.2"))
    current = api.get(f"{BASE.format(ns=ns, plural='experiments')}/{name}").json()["status"]
    reason, message = (
        (
            "ExperimentMaxTrialsReached",
            "Experiment has succeeded because max trial count has reached",
        )
        if state == "Succeeded"
        else ("ExperimentFailed", "Experiment has failed because max failed count has reached")
    )
    current["conditions"] = [
        *[c for c in current["conditions"] if c["type"] != "Running"],
        {
            "type": "Running",
            "status": "False",
            "reason": "ExperimentRunning",
            "message": "Experiment is running",
            "lastTransitionTime": stamp(0),
        },
        {
            "type": state,
            "status": "True",
            "reason": reason,
            "message": message,
            "lastTransitionTime": stamp(0),
        },
    ]
    current.update(trialsRunning=0, runningTrialList=[], trialsSucceeded=4, completionTime=stamp(0))
    current["succeededTrialList"] = [*current["succeededTrialList"], trial]
    put_status(api, ns, "experiments", name, current)


def table_rows(text: str, prefix: str) -> list[str]:
    """The lines of ``text`` naming an object whose name starts with ``prefix``."""
    return [line for line in text.splitlines() if f"{prefix}-" in line]


# -- get ----------------------------------------------------------------------------------


def test_get_experiments_shows_progress_and_best(ketch: Ketch, api: httpx.Client, ns: str) -> None:
    create_experiment(api, ns, "mnist")
    lines = ok(ketch("get", "experiments", "-n", ns)).splitlines()
    assert lines[0].split() == [
        "NAME",
        "STATE",
        "ALGORITHM",
        "TRIALS",
        "RUNNING",
        "SUCCEEDED",
        "FAILED",
        "BEST",
        "AGE",
    ]
    assert lines[1].split()[:8] == [
        "mnist",
        "Running",
        "random",
        "5/6",
        "1",
        "3",
        "1",
        "accuracy=0.97",
    ]
    wide = ok(ketch("get", "experiment", "mnist", "-n", ns, "-o", "wide"))
    assert "maximize accuracy (goal 0.99)" in wide and "mnist-bbbbbbbb" in wide


def test_get_trials_by_experiment_label(ketch: Ketch, api: httpx.Client, ns: str) -> None:
    create_experiment(api, ns, "mnist")
    create_experiment(api, ns, "other")
    everything = ok(ketch("get", "trials", "-n", ns))
    assert len(table_rows(everything, "mnist")) == 5 and len(table_rows(everything, "other")) == 5
    text = ok(ketch("get", "trials", "-n", ns, "-l", f"{LABEL}=mnist"))
    lines = text.splitlines()
    assert lines[0].split() == ["NAME", "STATE", "PARAMETERS", "OBJECTIVE", "DURATION", "AGE"]
    assert not table_rows(text, "other")
    rows = {line.split()[0]: line for line in table_rows(text, "mnist")}
    assert set(rows) == {f"mnist-{t[0]}" for t in TRIALS}
    best = rows["mnist-bbbbbbbb"].split()
    assert best[1:6] == ["Succeeded", "lr=0.05", "optimizer=adam", "accuracy=0.97", "12.0s"]
    assert rows["mnist-dddddddd"].split()[1:6] == [
        "Failed",
        "lr=0.2",
        "optimizer=adam",
        "-",
        "12.0s",
    ]
    assert rows["mnist-eeeeeeee"].split()[1:5] == ["Running", "lr=0.03", "optimizer=sgd", "-"]
    wide = ok(ketch("get", "trials", "-n", ns, "-l", f"{LABEL}=mnist", "-o", "wide"))
    assert wide.splitlines()[0].split()[-1] == "EXPERIMENT"


# -- describe -----------------------------------------------------------------------------


def trial_section(text: str) -> list[str]:
    """The trial table's lines of ``ketch describe experiment``: header first."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Trials:"))
    end = next(i for i, line in enumerate(lines) if line.startswith("Events:"))
    legend = ("best trial:", "the Pareto front")
    return [
        line
        for line in lines[start + 1 : end]
        if line.strip() and not any(m in line for m in legend)
    ]


def test_describe_ranks_trials_by_the_objective(
    ketch: Ketch, api: httpx.Client, api_server: tuple[str, str], ns: str
) -> None:
    from ketch.core.store.db import Database
    from ketch.core.store.resources import ResourceStore

    create_experiment(api, ns, "mnist")
    with Database(api_server[1]) as database:
        ResourceStore(database).record_event(
            "Experiment", ns, "mnist", reason="ExperimentCreated", message="Experiment is created"
        )
    text = ok(ketch("describe", "experiment", "mnist", "-n", ns))
    assert "Name:        mnist" in text and "objectiveMetricName: accuracy" in text
    assert "currentOptimalTrial" in text and "succeededTrialList" not in text  # the table has them
    section = trial_section(text)
    assert section[0].split() == [
        "TRIAL",
        "lr",
        "optimizer",
        "accuracy",
        "(max)",
        "loss",
        "(min)",
        "STATE",
        "DURATION",
    ]
    rows = table_rows("\n".join(section), "mnist")
    assert [line.split("mnist-")[1][:8] for line in rows] == [
        "bbbbbbbb",
        "aaaaaaaa",
        "cccccccc",
        "eeeeeeee",
        "dddddddd",
    ]
    assert rows[0].startswith("★ best") and all("★" not in line for line in rows[1:])
    assert rows[0].split()[3:9] == ["0.05", "adam", "0.97", "0.12", "Succeeded", "12.0s"]
    assert rows[1].split()[:4] == ["mnist-aaaaaaaa", "0.01", "sgd", "0.91"]  # max, not latest 0.9
    assert rows[4].split() == ["mnist-dddddddd", "0.2", "adam", "-", "-", "Failed", "12.0s"]
    assert "★ best trial: mnist-bbbbbbbb (accuracy=0.97)" in text
    assert "pareto" not in text
    assert text.index("Trials:") < text.index("Events:") and "Experiment is created" in text


def test_describe_marks_the_pareto_front(ketch: Ketch, api: httpx.Client, ns: str) -> None:
    create_experiment(api, ns, "multi", pareto=["bbbbbbbb", "aaaaaaaa"])
    rows = table_rows(
        "\n".join(trial_section(ok(ketch("describe", "experiment", "multi", "-n", ns)))), "multi"
    )
    marked = {line.split("multi-")[1][:8]: line.split("multi-")[0].strip() for line in rows}
    assert marked == {
        "bbbbbbbb": "★ best ◆ pareto",
        "aaaaaaaa": "◆ pareto",
        "cccccccc": "",
        "eeeeeeee": "",
        "dddddddd": "",
    }


def test_describe_without_trials(ketch: Ketch, api: httpx.Client, ns: str) -> None:
    response = api.post(BASE.format(ns=ns, plural="experiments"), json=experiment("empty"))
    assert response.status_code == 201, response.text
    text = ok(ketch("describe", "experiment", "empty", "-n", ns))
    assert "Trials:      <none>" in text and "Events:" in text
    assert ok(ketch("get", "experiments", "-n", ns)).splitlines()[1].split()[:8] == [
        "empty",
        "-",
        "random",
        "0/6",
        "0",
        "0",
        "0",
        "-",
    ]


# -- watch --------------------------------------------------------------------------------


class Watch:
    """``ketch describe experiment NAME --watch`` as a subprocess, its lines in a queue."""

    def __init__(self, env: dict[str, str], cwd: Path, *args: str) -> None:
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self.process = subprocess.Popen(
            [*ketch_command(), "describe", "experiment", *args, "--watch"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=cwd,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def until(self, fragment: str, timeout: float = 60) -> str:
        while True:
            line = self.lines.get(timeout=timeout)
            assert line is not None, f"the watch ended before {fragment!r}: {self.seen}"
            self.seen.append(line)
            if fragment in line:
                return line

    def finish(self, timeout: float = 60) -> tuple[int, str]:
        code = self.process.wait(timeout)
        self._reader.join(timeout)
        while (line := self.lines.get_nowait() if not self.lines.empty() else None) is not None:
            self.seen.append(line)
        assert self.process.stderr is not None
        return code, self.process.stderr.read()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def watches(env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., Watch]]:
    started: list[Watch] = []

    def start(*args: str) -> Watch:
        started.append(Watch(env, tmp_path, *args))
        return started[-1]

    yield start
    for watch in started:
        watch.stop()


@pytest.mark.parametrize("outcome", ["Succeeded", "Failed"])
def test_watch_follows_the_experiment_until_it_ends(
    watches: Callable[..., Watch], api: httpx.Client, ns: str, outcome: str
) -> None:
    create_experiment(api, ns, "live")
    watch = watches("live", "-n", ns)
    # In a pipe the watch prints a line per finished trial, then waits for the rest.
    assert "accuracy=0.97" in watch.until("live-bbbbbbbb")
    assert watch.until("live-dddddddd").split()[0] == "Failed"
    finish(api, ns, "live", outcome)
    line = watch.until("live-eeeeeeee")
    assert line.split()[:3] == ["Succeeded", "live-eeeeeeee", "accuracy=0.93"]
    code, stderr = watch.finish()
    assert code == (0 if outcome == "Succeeded" else 1), (watch.seen, stderr)
    assert "Traceback" not in stderr
    text = "\n".join(watch.seen)
    reason = "ExperimentMaxTrialsReached" if outcome == "Succeeded" else "ExperimentFailed"
    assert f"experiment live {outcome} ({reason}: " in text
    final = [
        line
        for line in table_rows(text[text.index("experiment live  ") :], "live")
        if "best trial:" not in line
    ]
    assert [line.split("live-")[1][:8] for line in final] == [
        "bbbbbbbb",
        "eeeeeeee",
        "aaaaaaaa",
        "cccccccc",
        "dddddddd",
    ]
    assert final[0].startswith("★ best")


def test_watch_on_a_terminal_draws_the_table_in_place(
    env: dict[str, str], api: httpx.Client, ns: str, tmp_path: Path
) -> None:
    create_experiment(api, ns, "tty")
    finish(api, ns, "tty")
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [*ketch_command(), "describe", "experiment", "tty", "-n", ns, "--watch"],
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=follower,
        env={**env, "TERM": "xterm", "LINES": "40"},
        cwd=tmp_path,
    )
    os.close(follower)
    output = b""
    try:
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the other end closed
                break
            if not chunk:
                break
            output += chunk
        assert process.wait(60) == 0, output.decode(errors="replace")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        os.close(leader)
    text = output.decode(errors="replace")
    assert "experiment tty Succeeded (ExperimentMaxTrialsReached" in text and "★ best" in text
    assert "Traceback" not in text


def test_watch_is_for_experiments(ketch: Ketch, ns: str) -> None:
    result = ketch("describe", "pytorchjob", "x", "-n", ns, "--watch")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ") and "--watch" in result.stderr
    missing = ketch("describe", "experiment", "nope", "-n", ns, "--watch")
    assert missing.returncode == 2 and "not found" in missing.stderr
