"""Experiments through a real ``ketch up``: apply, early stopping, resume after kill -9."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.server.helpers import Server, base_env, ketch_command
from tests.tuning.conftest import experiment
from tests.waiting import wait_for

API = "/apis/kubeflow.org/v1beta1/namespaces/default"

pytestmark = pytest.mark.slow


def _finished(http: httpx.Client, name: str) -> dict[str, Any] | None:
    body = http.get(f"{API}/experiments/{name}").json()
    for condition in body.get("status", {}).get("conditions", []):
        if condition["type"] in ("Succeeded", "Failed") and condition["status"] == "True":
            return body
    return None


def _trials(http: httpx.Client, name: str) -> list[dict[str, Any]]:
    params = {"labelSelector": f"katib.kubeflow.org/experiment={name}"}
    return http.get(f"{API}/trials", params=params).json()["items"]


def _state(trial: dict[str, Any]) -> str:
    held = [
        c["type"]
        for c in trial.get("status", {}).get("conditions", [])
        if c["status"] == "True" and c["type"] not in ("Created",)
    ]
    return held[-1] if held else "Pending"


def test_apply_refuses_an_impossible_grid(tmp_path: Path) -> None:
    manifest = experiment("grid-bad", algorithm="grid")  # continuous doubles, no step
    path = tmp_path / "exp.yaml"
    import yaml

    path.write_text(yaml.safe_dump(manifest))
    server = Server(tmp_path / "home").start()
    try:
        env = base_env(tmp_path / "home") | {"KETCH_URL": server.url}
        done = subprocess.run(
            [*ketch_command(), "apply", "-f", str(path)], env=env, capture_output=True, text=True
        )
        assert done.returncode != 0
        assert "grid" in (done.stdout + done.stderr).lower()
        assert "Traceback" not in done.stderr
        with server.client() as http:
            assert http.get(f"{API}/experiments/grid-bad").status_code == 404
    finally:
        assert server.stop() == 0


def test_medianstop_stops_trials_worse_than_the_median(tmp_path: Path) -> None:
    program = (
        "import sys, time\n"
        "level = 0.9 if sys.argv[1] == 'good' else 0.1\n"
        "for step in range(8):\n"
        "    print(f'accuracy={level + step * 0.001}', flush=True)\n"
        "    time.sleep(0.15)\n"
    )
    manifest = experiment(
        "median",
        parameters=[
            {
                "name": "q",
                "parameterType": "categorical",
                "feasibleSpace": {"list": ["good", "bad"]},
            }
        ],
        settings={"random_state": 7},
        max_trials=8,
        parallel=1,
        command=["python", "-c", program, "${trialParameters.q}"],
        earlyStopping={
            "algorithmName": "medianstop",
            "algorithmSettings": [
                {"name": "min_trials_required", "value": "2"},
                {"name": "start_step", "value": "2"},
            ],
        },
    )
    manifest["spec"]["objective"] = {"type": "maximize", "objectiveMetricName": "accuracy"}
    server = Server(tmp_path / "home").start()
    try:
        with server.client() as http:
            assert http.post(f"{API}/experiments", json=manifest).status_code == 201
            done = wait_for(
                lambda: _finished(http, "median"), 120, 0.1, what="experiment median finished"
            )
            trials = _trials(http, "median")
            name = trials[0]["metadata"]["name"]
            log = http.get(f"{API}/trials/{name}/log")  # what `ketch logs trial NAME` reads
            assert log.status_code == 200 and "accuracy=" in log.text, log.text
    finally:
        assert server.stop() == 0
    assert done["status"]["trials"] == 8
    by_state: dict[str, list[str]] = {}
    for trial in trials:
        quality = trial["spec"]["parameterAssignments"][0]["value"]
        by_state.setdefault(_state(trial), []).append(quality)
    assert "good" not in by_state.get("EarlyStopped", [])
    succeeded_good = by_state.get("Succeeded", []).count("good")
    if succeeded_good >= 2:  # with two good trials done, a bad one cannot finish afterwards
        assert by_state.get("EarlyStopped"), by_state
    assert done["status"].get("trialsEarlyStopped", 0) == len(by_state.get("EarlyStopped", []))


def test_resume_after_kill_and_raise_max_trials(tmp_path: Path) -> None:
    program = "import sys, time\ntime.sleep(0.6)\nprint(f'score={float(sys.argv[1])}')\n"
    manifest = experiment(
        "resume",
        algorithm="tpe",
        settings={"random_state": 3},
        parameters=[
            {"name": "x", "parameterType": "double", "feasibleSpace": {"min": "0", "max": "1"}}
        ],
        max_trials=6,
        parallel=2,
        command=["python", "-c", program, "${trialParameters.x}"],
        resumePolicy="LongRunning",
    )
    home = tmp_path / "home"
    server = Server(home).start()
    try:
        with server.client() as http:
            assert http.post(f"{API}/experiments", json=manifest).status_code == 201
            wait_for(
                lambda: sum(_state(t) == "Succeeded" for t in _trials(http, "resume")) >= 2,
                120,
                0.1,
                what="two trials of experiment resume succeeded",
            )
            before = {
                t["metadata"]["name"]: t["spec"]["parameterAssignments"]
                for t in _trials(http, "resume")
                if _state(t) == "Succeeded"
            }
            seed = http.get(f"{API}/experiments/resume").json()["status"]["ketch"]["seed"]
    finally:
        server.stop(signal.SIGKILL)
    server = Server(home).start()
    try:
        with server.client() as http:
            done = wait_for(
                lambda: _finished(http, "resume"), 120, 0.1, what="experiment resume finished"
            )
            trials = _trials(http, "resume")
            assert done["status"]["ketch"]["seed"] == seed
            assert done["status"]["trials"] == 6 == len(trials)
            states = {t["metadata"]["name"]: _state(t) for t in trials}
            bad = [n for n, s in states.items() if s == "MetricsUnavailable"]
            for n in bad:
                print("TRIAL", [t for t in trials if t["metadata"]["name"] == n][0]["status"])
                for f in home.rglob(f"*{n}*"):
                    print("FILE", f, f.read_text() if f.is_file() else "")
            assert set(states.values()) <= {"Succeeded", "Killed", "Failed"}, trials
            after = {t["metadata"]["name"]: t["spec"]["parameterAssignments"] for t in trials}
            for name, assignments in before.items():  # the history is the same
                assert after[name] == assignments
            # a finished experiment continues when maxTrialCount is raised
            current = http.get(f"{API}/experiments/resume").json()
            current["spec"]["maxTrialCount"] = 8
            assert http.put(f"{API}/experiments/resume", json=current).status_code == 200
            wait_for(
                lambda: len(_trials(http, "resume")) == 8,
                120,
                0.1,
                what="experiment resume has 8 trials after maxTrialCount was raised",
            )
            done = wait_for(
                lambda: (
                    (body := _finished(http, "resume")) and body["status"]["trials"] == 8 and body
                ),
                120,
                0.1,
                what="experiment resume finished again with 8 trials",
            )
            assert done["status"]["trialsSucceeded"] >= 7
            # the condition set last is last: the Type column kubectl get shows
            assert done["status"]["conditions"][-1]["type"] == "Succeeded"
    finally:
        assert server.stop() == 0
