"""Every search and early-stopping algorithm, every trial kind and every metrics
collector, end to end: Katib Experiment manifests run to the end in this process
through the real controllers, each trial a real process (or a gang of them)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import pytest

from ketch.core.errors import InvalidSpec
from ketch.tuning.client import TuningClient
from ketch.tuning.trialfiles import trial_dir
from tests.tuning.conftest import experiment, finished_reason, run_local, stored_trials

XY = ["${trialParameters.x}", "${trialParameters.y}"]
X_ONLY = [{"name": "x", "parameterType": "double", "feasibleSpace": {"min": "0", "max": "1"}}]

HYPERBAND_BRACKET = "tuning.ketch.dev/hyperband-bracket"
HYPERBAND_RUNG = "tuning.ketch.dev/hyperband-rung"
HYPERBAND_PARENT = "tuning.ketch.dev/hyperband-parent"
PBT_GENERATION = "pbt.suggestion.katib.kubeflow.org/generation"
PBT_PARENT = "pbt.suggestion.katib.kubeflow.org/parent"


def _score(trial: Any) -> float:
    return float(trial.metrics["score"]["max"])


def _state(trial: dict[str, Any]) -> str:
    from ketch.tuning.states import trial_state

    return trial_state(trial.get("status") or {})


def _assignments(trial: dict[str, Any]) -> dict[str, str]:
    return {a["name"]: a["value"] for a in trial["spec"]["parameterAssignments"]}


def _metric(trial: dict[str, Any], name: str, which: str = "latest") -> float:
    metrics = trial["status"]["observation"]["metrics"]
    return float(next(m[which] for m in metrics if m["name"] == name))


# -- the search algorithms -----------------------------------------------------------


@pytest.mark.parametrize(
    ("algorithm", "settings"),
    [
        ("random", {"random_state": 7}),
        ("tpe", {"n_startup_trials": 2}),
        ("multivariate-tpe", {"n_startup_trials": 2}),
        pytest.param(
            "bayesianoptimization", {"n_initial_points": 2}, marks=pytest.mark.slow
        ),  # Optuna's Gaussian process fits with torch
        ("cmaes", {"sigma": 0.3}),
        ("sobol", {}),
    ],
)
def test_search_algorithm_runs_an_experiment_to_the_end(
    local: TuningClient, algorithm: str, settings: dict[str, Any]
) -> None:
    name = f"alg-{algorithm}"
    done = run_local(
        local, experiment(name, algorithm=algorithm, settings=settings, max_trials=5, parallel=2)
    )
    assert done.succeeded, done.status
    assert finished_reason(done.status) == "ExperimentMaxTrialsReached"
    assert done.status["trials"] == done.status["trialsSucceeded"] == 5
    trials = local.list_trials(name)
    assert len(trials) == 5 and {t.state for t in trials} == {"Succeeded"}
    points = set()
    for trial in trials:  # each trial ran the program with its own assignment
        x, y = float(trial.parameters["x"]), float(trial.parameters["y"])
        assert 0 <= x <= 1 and 0 <= y <= 1
        assert _score(trial) == pytest.approx(-((x - 0.3) ** 2) - (y - 0.7) ** 2, abs=1e-5)
        points.add((trial.parameters["x"], trial.parameters["y"]))
    assert len(points) == 5
    best = max(trials, key=_score)
    assert local.get_optimal_hyperparameters(name)["bestTrialName"] == best.name


def test_sobol_hands_out_the_first_points_of_the_sobol_sequence(local: TuningClient) -> None:
    done = run_local(local, experiment("sobol-seq", algorithm="sobol", max_trials=4, parallel=2))
    assert done.succeeded, done.status
    points = {
        (float(t.parameters["x"]), float(t.parameters["y"])) for t in local.list_trials("sobol-seq")
    }
    # the first four points of the unscrambled two-dimensional Sobol sequence
    assert points == {(0.0, 0.0), (0.5, 0.5), (0.75, 0.25), (0.25, 0.75)}


GRID_PROGRAM = (
    "import sys\n"
    "x, opt = float(sys.argv[1]), sys.argv[2]\n"
    "assert opt in ('sgd', 'adam'), opt\n"
    "score = -(x - 0.2) ** 2 + (0.1 if opt == 'adam' else 0.0)\n"
    "print(f'score={score:.6f} loss={(x - 0.2) ** 2:.6f}')\n"
)
GRID = [
    {
        "name": "x",
        "parameterType": "double",
        "feasibleSpace": {"min": "0.1", "max": "0.3", "step": "0.1"},
    },
    {"name": "opt", "parameterType": "categorical", "feasibleSpace": {"list": ["sgd", "adam"]}},
]


def test_grid_runs_every_point_once_and_ends_with_the_suggestions(local: TuningClient) -> None:
    manifest = experiment(
        "grid",
        algorithm="grid",
        parameters=GRID,
        parallel=2,
        command=["python", "-c", GRID_PROGRAM, "${trialParameters.x}", "${trialParameters.opt}"],
    )
    del manifest["spec"]["maxTrialCount"]  # the grid decides: 3 x 2 points
    done = run_local(local, manifest)
    assert done.succeeded, done.status
    assert finished_reason(done.status) == "ExperimentSuggestionEndReached"
    trials = local.list_trials("grid")
    assert {t.state for t in trials} == {"Succeeded"}
    points = [(t.parameters["x"], t.parameters["opt"]) for t in trials]
    assert len(points) == len(set(points)) == 6  # never the same point twice
    assert {x for x, _ in points} == {"0.1", "0.2", "0.3"}  # the step's values, as text
    assert {opt for _, opt in points} == {"sgd", "adam"}
    optimal = local.get_optimal_hyperparameters("grid")
    assigned = {a["name"]: a["value"] for a in optimal["parameterAssignments"]}
    assert float(assigned["x"]) == pytest.approx(0.2) and assigned["opt"] == "adam"


def test_grid_with_more_trials_than_points_is_refused(
    local: TuningClient,
) -> None:
    """Katib refuses a grid smaller than ``maxTrialCount`` when the experiment is
    created; so does Ketch (the experiment is never stored)."""
    manifest = experiment("grid-big", algorithm="grid", parameters=GRID, max_trials=7)
    with pytest.raises(InvalidSpec) as info:
        local.create_experiment(manifest)
    assert info.value.field == "spec.maxTrialCount"
    assert "6" in str(info.value)
    assert local.list_experiments() == []


# -- Hyperband -------------------------------------------------------------------------

#: a Katib-style training program: ``--num-epochs`` is Hyperband's resource
EPOCHS_PROGRAM = (
    "import argparse\n"
    "parser = argparse.ArgumentParser()\n"
    "parser.add_argument('--lr', type=float, required=True)\n"
    "parser.add_argument('--num-epochs', type=int, required=True)\n"
    "args = parser.parse_args()\n"
    "accuracy = 0.0\n"
    "for epoch in range(1, args.num_epochs + 1):\n"
    "    accuracy = 1 - (1 - accuracy) * (1 - args.lr * 10)\n"
    "    print(f'epoch={epoch} Validation-accuracy={accuracy:.6f}')\n"
    "print(f'epochs-run={args.num_epochs}')\n"
)


def test_hyperband_runs_brackets_and_rungs_with_their_resources(local: TuningClient) -> None:
    manifest = experiment(
        "hyperband",
        algorithm="hyperband",
        settings={"resource_name": "num-epochs", "eta": 3, "r_l": 3},
        parameters=[
            {
                "name": "lr",
                "parameterType": "double",
                "feasibleSpace": {"min": "0.01", "max": "0.03"},
            },
            {
                "name": "num-epochs",
                "parameterType": "int",
                "feasibleSpace": {"min": "1", "max": "3"},
            },
        ],
        parallel=2,
        command=[
            "python",
            "-c",
            EPOCHS_PROGRAM,
            "--lr=${trialParameters.learningRate}",
            "--num-epochs=${trialParameters.numberEpochs}",
        ],
    )
    spec = manifest["spec"]
    del spec["maxTrialCount"]  # Hyperband's schedule decides
    spec["objective"] = {
        "type": "maximize",
        "objectiveMetricName": "Validation-accuracy",
        "additionalMetricNames": ["epochs-run"],
    }
    spec["trialTemplate"]["trialParameters"] = [
        {"name": "learningRate", "description": "Learning rate", "reference": "lr"},
        {"name": "numberEpochs", "description": "Epochs to train", "reference": "num-epochs"},
    ]
    done = run_local(local, manifest)
    assert done.succeeded, done.status
    assert finished_reason(done.status) == "ExperimentSuggestionEndReached"
    trials = stored_trials("hyperband")
    assert {_state(t) for t in trials} == {"Succeeded"}
    # r_l=3, eta=3: bracket 1 runs 3 configurations for 1 epoch and the best of them
    # for 3; bracket 0 runs 2 new configurations for 3 epochs
    by_place: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for trial in trials:
        labels = trial["metadata"]["labels"]
        by_place.setdefault((labels[HYPERBAND_BRACKET], labels[HYPERBAND_RUNG]), []).append(trial)
        epochs = int(_assignments(trial)["num-epochs"])
        assert _metric(trial, "epochs-run") == epochs  # the program got the resource
    assert {place: len(group) for place, group in by_place.items()} == {
        ("1", "0"): 3,
        ("1", "1"): 1,
        ("0", "0"): 2,
    }
    assert {int(_assignments(t)["num-epochs"]) for t in by_place["1", "0"]} == {1}
    assert {
        int(_assignments(t)["num-epochs"]) for t in by_place["1", "1"] + by_place["0", "0"]
    } == {3}
    [promoted] = by_place["1", "1"]
    first_rung = {t["metadata"]["name"]: t for t in by_place["1", "0"]}
    parent = promoted["metadata"]["labels"][HYPERBAND_PARENT]
    best = max(first_rung.values(), key=lambda t: _metric(t, "Validation-accuracy", "max"))
    assert parent == best["metadata"]["name"]  # the best of the rung goes on
    assert _assignments(promoted)["lr"] == _assignments(best)["lr"]


# -- PBT -------------------------------------------------------------------------------

#: a PBT trial: resumes from the checkpoint in its directory, trains, saves
PBT_PROGRAM = (
    "import json, os, sys\n"
    "lr = float(sys.argv[1])\n"
    "folder = os.environ['KETCH_CHECKPOINT_DIR']\n"
    "path = os.path.join(folder, 'checkpoint.json')\n"
    "state = {'trial': None, 'steps': 0, 'accuracy': 0.0}\n"
    "if os.path.exists(path):\n"
    "    with open(path) as f:\n"
    "        state = json.load(f)\n"
    "accuracy = state['accuracy'] + lr\n"
    "saved = {'trial': os.environ['KATIB_TRIAL_NAME'], 'resumed_from': state['trial'],\n"
    "         'steps': state['steps'] + 1, 'accuracy': accuracy}\n"
    "with open(path, 'w') as f:\n"
    "    json.dump(saved, f)\n"
    "print(f'Validation-accuracy={accuracy:.6f} steps={saved[\"steps\"]}')\n"
)


def _pbt(name: str, command: list[str], max_trials: int) -> dict[str, Any]:
    manifest = experiment(
        name,
        algorithm="pbt",
        settings={
            "suggestion_trial_dir": "/var/log/katib/checkpoints/",
            "n_population": 5,
            "truncation_threshold": 0.4,
        },
        parameters=[
            {
                "name": "lr",
                "parameterType": "double",
                "feasibleSpace": {"min": "0.01", "max": "0.05", "step": "0.0001"},
            }
        ],
        max_trials=max_trials,
        parallel=2,
        command=command,
    )
    manifest["spec"]["objective"] = {
        "type": "maximize",
        "objectiveMetricName": "Validation-accuracy",
        "additionalMetricNames": ["steps"],
    }
    manifest["spec"]["trialTemplate"]["trialParameters"] = [
        {"name": "learningRate", "description": "Learning rate", "reference": "lr"}
    ]
    return manifest


def test_pbt_advances_generations_from_the_parents_checkpoints(local: TuningClient) -> None:
    manifest = _pbt("pbt", ["python", "-c", PBT_PROGRAM, "${trialParameters.learningRate}"], 8)
    done = run_local(local, manifest)
    assert done.succeeded, done.status
    assert finished_reason(done.status) == "ExperimentMaxTrialsReached"
    trials = stored_trials("pbt")
    assert len(trials) == 8 and {_state(t) for t in trials} == {"Succeeded"}
    generations: dict[str, list[dict[str, Any]]] = {}
    for trial in trials:
        generations.setdefault(trial["metadata"]["labels"][PBT_GENERATION], []).append(trial)
    assert sorted(generations) == ["0", "1"]
    assert len(generations["0"]) == 5 and len(generations["1"]) == 3
    first = {t["metadata"]["name"]: t for t in generations["0"]}
    ranked = sorted(first, key=lambda n: -_metric(first[n], "Validation-accuracy"))
    for trial in generations["0"]:
        assert PBT_PARENT not in trial["metadata"]["labels"]
        assert _metric(trial, "steps") == 1
    for trial in generations["1"]:
        name = trial["metadata"]["name"]
        parent = trial["metadata"]["labels"][PBT_PARENT]
        # the bottom two of five exploit the top two; the others go on from their own
        assert parent in ranked[:3]
        lr, parent_lr = float(_assignments(trial)["lr"]), float(_assignments(first[parent])["lr"])
        if parent == ranked[2]:
            assert lr == parent_lr
        else:  # its own line, or a copy of it, perturbed (and kept within the bounds)
            perturbed = [min(max(parent_lr * f, 0.01), 0.05) for f in (1.0, 0.8, 1.2)]
            assert min(abs(lr - p) for p in perturbed) <= 1e-4
        # the trial's checkpoint directory held its parent's checkpoint when it started
        folder = Path(trial["spec"]["env"]["KETCH_CHECKPOINT_DIR"])
        assert folder.name == name
        saved = json.loads((folder / "checkpoint.json").read_text())
        assert saved["trial"] == name and saved["resumed_from"] == parent
        assert saved["steps"] == 2 and _metric(trial, "steps") == 2
        resumed = _metric(first[parent], "Validation-accuracy") + float(_assignments(trial)["lr"])
        assert _metric(trial, "Validation-accuracy") == pytest.approx(resumed, abs=1e-5)
        # and the parent's own checkpoint is still its own
        parent_dir = Path(first[parent]["spec"]["env"]["KETCH_CHECKPOINT_DIR"])
        assert json.loads((parent_dir / "checkpoint.json").read_text())["trial"] == parent


#: Katib's simple-pbt passes ``--checkpoint=<suggestion_trial_dir>`` as an argument
KATIB_PBT_PROGRAM = (
    "import os, sys\n"
    "folder = sys.argv[2].split('=', 1)[1]\n"
    "if folder.startswith('/var/log/katib'):\n"
    "    sys.exit('the checkpoint path was not made local: ' + folder)\n"
    "os.makedirs(folder, exist_ok=True)\n"
    "path = os.path.join(folder, 'checkpoint.txt')\n"
    "steps = int(open(path).read()) if os.path.exists(path) else 0\n"
    "open(path, 'w').write(str(steps + 1))\n"
    "print(f'Validation-accuracy={float(sys.argv[1]) * (steps + 1):.6f} steps={steps + 1}')\n"
)


def test_pbt_suggestion_trial_dir_in_the_command_is_the_trials_checkpoint_dir(
    local: TuningClient,
) -> None:
    """Katib mounts each trial's checkpoint directory at ``suggestion_trial_dir``;
    Ketch puts the trial's own directory where the template names that path."""
    command = [
        "python",
        "-c",
        KATIB_PBT_PROGRAM,
        "${trialParameters.learningRate}",
        "--checkpoint=/var/log/katib/checkpoints/",
    ]
    manifest = _pbt("katib-pbt", command, 6)
    manifest["spec"]["maxFailedTrialCount"] = 0
    done = run_local(local, manifest)
    assert done.succeeded, done.status
    trials = stored_trials("katib-pbt")
    assert len(trials) == 6
    for trial in trials:
        folder = trial["spec"]["env"]["KETCH_CHECKPOINT_DIR"]
        [container] = trial["spec"]["runSpec"]["spec"]["template"]["spec"]["containers"]
        assert container["command"][-1] == f"--checkpoint={folder}/"
        assert (Path(folder) / "checkpoint.txt").is_file()
    [child] = [t for t in trials if t["metadata"]["labels"][PBT_GENERATION] == "1"]
    assert _metric(child, "steps") == 2  # it went on from its parent's checkpoint


#: writes its metrics to the path given after ``--metrics=`` (a File collector's path)
PBT_FILE_PROGRAM = (
    "import os, sys\n"
    "path = sys.argv[2].split('=', 1)[1]\n"
    "if path.startswith('/var/log/katib'):\n"
    "    sys.exit('the metrics path was not made local: ' + path)\n"
    "with open(path, 'w') as f:\n"
    "    f.write(f'Validation-accuracy={sys.argv[1]} steps=1\\n')\n"
)


def test_pbt_with_a_file_collector_under_the_suggestion_trial_dir(local: TuningClient) -> None:
    path = "/var/log/katib/metrics.log"
    command = ["python", "-c", PBT_FILE_PROGRAM, "${trialParameters.learningRate}"]
    manifest = _pbt("pbt-file", [*command, f"--metrics={path}"], 5)
    manifest["spec"]["algorithm"]["algorithmSettings"][0]["value"] = "/var/log/katib"
    manifest["spec"]["maxFailedTrialCount"] = 0
    manifest["spec"]["metricsCollectorSpec"] = {
        "collector": {"kind": "File"},
        "source": {"fileSystemPath": {"path": path, "kind": "File", "format": "TEXT"}},
    }
    done = run_local(local, manifest)
    assert done.succeeded, done.status
    assert done.status["trialsSucceeded"] == 5


# -- several objectives ----------------------------------------------------------------

TWO_OBJECTIVES = (
    "import sys\n"
    "x, y = float(sys.argv[1]), float(sys.argv[2])\n"
    "print(f'score={x + y:.6f}')\n"
    "print(f'loss={x * x + 2 * y:.6f}')\n"
)


def _dominates(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """(score to maximize, loss to minimize): a is no worse in both and better in one."""
    return a[0] >= b[0] and a[1] <= b[1] and a != b


@pytest.mark.parametrize("algorithm", ["tpe", "nsga2", "random"])
def test_multi_objective_experiment_reports_the_pareto_front(
    local: TuningClient, algorithm: str
) -> None:
    name = f"pareto-{algorithm}"
    manifest = experiment(
        name,
        algorithm=algorithm,
        max_trials=6,
        parallel=2,
        command=["python", "-c", TWO_OBJECTIVES, *XY],
    )
    manifest["spec"]["objective"] = {
        "type": "maximize",
        "objectiveMetricName": "score",
        "objectives": [
            {"objectiveMetricName": "score", "type": "maximize"},
            {"objectiveMetricName": "loss", "type": "minimize"},
        ],
    }
    done = run_local(local, manifest)
    assert done.succeeded, done.status
    trials = local.list_trials(name)
    assert len(trials) == 6 and {t.state for t in trials} == {"Succeeded"}
    values = {
        t.name: (float(t.metrics["score"]["max"]), float(t.metrics["loss"]["min"])) for t in trials
    }
    for t in trials:
        x, y = float(t.parameters["x"]), float(t.parameters["y"])
        assert values[t.name] == pytest.approx((x + y, x * x + 2 * y), abs=1e-5)
    front = done.status["paretoFront"]
    assert front and set(front) <= set(values)
    expected = {n for n, v in values.items() if not any(_dominates(w, v) for w in values.values())}
    assert set(front) == expected
    assert done.status["currentOptimalTrial"]["bestTrialName"] == max(
        values, key=lambda n: values[n][0]
    )


# -- early stopping ----------------------------------------------------------------------

#: each trial claims the next slot in a shared folder: the later a trial starts, the
#: worse its loss at every step (so the pruners have something to prune, whatever the
#: sampler draws); it reports six steps, a little apart, as training does
STEPPED_PROGRAM = (
    "import os, sys, time\n"
    "folder, x = sys.argv[1], float(sys.argv[2])\n"
    "slot = 0\n"
    "while True:\n"
    "    try:\n"
    "        os.close(os.open(os.path.join(folder, f'slot-{slot}'), os.O_CREAT | os.O_EXCL))\n"
    "        break\n"
    "    except FileExistsError:\n"
    "        slot += 1\n"
    "for step in range(1, 7):\n"
    "    print(f'epoch={step} loss={slot + x / step:.6f}', flush=True)\n"
    "    time.sleep(0.25)\n"
)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("pruner", "settings"),
    [
        ("successivehalving", {"min_resource": 1, "reduction_factor": 2}),
        ("hyperband", {"min_resource": 1, "max_resource": 4, "reduction_factor": 2}),
    ],
)
def test_pruners_stop_trials_early(
    local: TuningClient, tmp_path: Path, pruner: str, settings: dict[str, Any]
) -> None:
    slots = tmp_path / f"slots-{pruner}"
    slots.mkdir()
    name = f"prune-{pruner}"
    manifest = experiment(
        name,
        algorithm="random",
        parameters=X_ONLY,
        max_trials=8,
        parallel=2,
        command=["python", "-c", STEPPED_PROGRAM, str(slots), "${trialParameters.x}"],
        earlyStopping={
            "algorithmName": pruner,
            "algorithmSettings": [{"name": k, "value": str(v)} for k, v in settings.items()],
        },
    )
    manifest["spec"]["objective"] = {"type": "minimize", "objectiveMetricName": "loss"}
    done = run_local(local, manifest)
    assert done.succeeded, done.status
    assert finished_reason(done.status) == "ExperimentMaxTrialsReached"
    trials = stored_trials(name)
    states = [_state(t) for t in trials]
    assert len(trials) == 8 and set(states) <= {"Succeeded", "EarlyStopped"}
    stopped = [t for t in trials if _state(t) == "EarlyStopped"]
    assert stopped and "Succeeded" in states
    assert done.status["trialsEarlyStopped"] == len(stopped)
    assert sorted(done.status["earlyStoppedTrialList"]) == sorted(
        t["metadata"]["name"] for t in stopped
    )
    last_steps = {}
    for trial in trials:
        last_steps[trial["metadata"]["name"]] = max(
            int(s) for s, _ in trial["status"]["ketch"]["history"]
        )
        loss = _metric(trial, "loss", "min")
        if _state(trial) == "Succeeded":
            assert last_steps[trial["metadata"]["name"]] == 6
        else:  # stopped with what it reported so far; never the first trial, the best
            assert loss >= 1
            condition = next(
                c for c in trial["status"]["conditions"] if c["type"] == "EarlyStopped"
            )
            assert condition["reason"] == "TrialEarlyStopped"
    [first] = [t for t in trials if _metric(t, "loss", "min") < 1]
    assert _state(first) == "Succeeded"
    assert done.status["currentOptimalTrial"]["bestTrialName"] == first["metadata"]["name"]
    # the rungs are at steps 1, 2 and 4: trials are stopped before they end
    assert min(last_steps[t["metadata"]["name"]] for t in stopped) < 6
    assert len(os.listdir(slots)) == 8


# -- trial kinds -------------------------------------------------------------------------

#: one replica of a gang: the worker says hello to the master at MASTER_ADDR:MASTER_PORT
#: (so both run at once, as torch's rendezvous needs), then the master (rank 0) prints
#: the metric and the worker a decoy that must not be read
GANG_PROGRAM = (
    "import os, socket, sys, time\n"
    "x, y = float(sys.argv[1]), float(sys.argv[2])\n"
    "rank, world = int(os.environ['RANK']), int(os.environ['WORLD_SIZE'])\n"
    "address = (os.environ['MASTER_ADDR'], int(os.environ['MASTER_PORT']))\n"
    "if rank == 0:\n"
    "    server = socket.create_server(address)\n"
    "    server.settimeout(60)\n"
    "    peers = set()\n"
    "    while len(peers) < world - 1:\n"
    "        conn, _ = server.accept()\n"
    "        with conn:\n"
    "            peers.add(conn.recv(16).decode())\n"
    "    score = -(x - 0.3) ** 2 - (y - 0.7) ** 2\n"
    "    print(f'score={score:.6f} world={world} rank={rank} peers={len(peers)}')\n"
    "else:\n"
    "    deadline = time.monotonic() + 60\n"
    "    while True:\n"
    "        try:\n"
    "            with socket.create_connection(address, timeout=5) as conn:\n"
    "                conn.sendall(str(rank).encode())\n"
    "            break\n"
    "        except OSError:\n"
    "            if time.monotonic() > deadline:\n"
    "                raise\n"
    "            time.sleep(0.05)\n"
    "    print(f'score=-999 world={world} rank={rank} peers=0')\n"
)


def test_pytorchjob_trials_run_as_a_gang_and_report_from_the_master(local: TuningClient) -> None:
    def replica(replicas: int) -> dict[str, Any]:
        return {
            "replicas": replicas,
            "restartPolicy": "OnFailure",
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "pytorch",
                            "image": "docker.io/kubeflowkatib/pytorch-mnist-cpu:latest",
                            "command": ["python", "-c", GANG_PROGRAM, *XY],
                        }
                    ]
                }
            },
        }

    manifest = experiment("torchjob", max_trials=2, parallel=2, maxFailedTrialCount=0)
    template = manifest["spec"]["trialTemplate"]
    template["primaryContainerName"] = "pytorch"
    template["trialSpec"] = {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "spec": {"pytorchReplicaSpecs": {"Master": replica(1), "Worker": replica(1)}},
    }
    manifest["spec"]["objective"]["additionalMetricNames"] = ["world", "rank", "peers"]
    done = run_local(local, manifest)
    assert done.succeeded, done.status
    trials = local.list_trials("torchjob")
    assert len(trials) == 2 and {t.state for t in trials} == {"Succeeded"}
    for trial in trials:
        x, y = float(trial.parameters["x"]), float(trial.parameters["y"])
        assert _score(trial) == pytest.approx(-((x - 0.3) ** 2) - (y - 0.7) ** 2, abs=1e-5)
        assert float(trial.metrics["world"]["latest"]) == 2
        assert float(trial.metrics["rank"]["latest"]) == 0  # the master's log
        assert float(trial.metrics["peers"]["latest"]) == 1  # the worker met it


#: a TrainJob node: node 0 prints the metric, the others a decoy
TRAINJOB_PROGRAM = (
    "import os, sys\n"
    "x, y = float(sys.argv[1]), float(sys.argv[2])\n"
    "rank, nodes = int(os.environ['PET_NODE_RANK']), int(os.environ['PET_NNODES'])\n"
    "score = -(x - 0.3) ** 2 - (y - 0.7) ** 2 if rank == 0 else -999\n"
    "print(f'score={score:.6f} nodes={nodes} rank={rank}')\n"
)


def test_trainjob_trials_run_on_the_torch_runtime(local: TuningClient) -> None:
    manifest = experiment("trainjob", max_trials=2, parallel=2, maxFailedTrialCount=0)
    template = manifest["spec"]["trialTemplate"]
    template["primaryContainerName"] = "node"
    template["trialSpec"] = {
        "apiVersion": "trainer.kubeflow.org/v1alpha1",
        "kind": "TrainJob",
        "spec": {
            "runtimeRef": {"name": "torch-distributed"},
            "trainer": {"numNodes": 2, "command": ["python", "-c", TRAINJOB_PROGRAM, *XY]},
        },
    }
    manifest["spec"]["objective"]["additionalMetricNames"] = ["nodes", "rank"]
    done = run_local(local, manifest)
    assert done.succeeded, done.status
    trials = local.list_trials("trainjob")
    assert len(trials) == 2 and {t.state for t in trials} == {"Succeeded"}
    for trial in trials:
        x, y = float(trial.parameters["x"]), float(trial.parameters["y"])
        assert _score(trial) == pytest.approx(-((x - 0.3) ** 2) - (y - 0.7) ** 2, abs=1e-5)
        assert float(trial.metrics["nodes"]["latest"]) == 2
        assert float(trial.metrics["rank"]["latest"]) == 0


# -- metrics collectors ------------------------------------------------------------------

#: writes its metrics to the file named by ``--log-path``; stdout carries a decoy
FILE_PROGRAM = (
    "import json, sys\n"
    "x, y = float(sys.argv[1]), float(sys.argv[2])\n"
    "path = sys.argv[3].split('=', 1)[1]\n"
    "if path.startswith('/var/log/katib'):\n"
    "    sys.exit('the metrics path was not made local: ' + path)\n"
    "score = -(x - 0.3) ** 2 - (y - 0.7) ** 2\n"
    "print('score=-999 loss=-999')\n"
    "with open(path, 'w') as f:\n"
    "    for epoch in (1, 2):\n"
    "        if sys.argv[4] == 'JSON':\n"
    "            f.write(json.dumps({'epoch': epoch, 'score': str(score / epoch), 'loss': epoch}) + '\\n')\n"
    "        else:\n"
    "            f.write(f'epoch={epoch} score={score / epoch:.6f} loss={epoch}\\n')\n"
)


@pytest.mark.parametrize("fmt", ["TEXT", "JSON"])
def test_file_collector_reads_the_trials_own_metrics_file(local: TuningClient, fmt: str) -> None:
    name = f"file-{fmt.lower()}"
    path = "/var/log/katib/metrics.log"
    manifest = experiment(
        name,
        max_trials=2,
        parallel=2,
        maxFailedTrialCount=0,
        command=["python", "-c", FILE_PROGRAM, *XY, f"--log-path={path}", fmt],
        metricsCollectorSpec={
            "collector": {"kind": "File"},
            "source": {"fileSystemPath": {"path": path, "kind": "File", "format": fmt}},
        },
    )
    done = run_local(local, manifest)
    assert done.succeeded, done.status
    trials = local.list_trials(name)
    uids = {t["metadata"]["name"]: t["metadata"]["uid"] for t in stored_trials(name)}
    assert len(trials) == 2 and {t.state for t in trials} == {"Succeeded"}
    for trial in trials:
        x, y = float(trial.parameters["x"]), float(trial.parameters["y"])
        score = -((x - 0.3) ** 2) - (y - 0.7) ** 2
        assert float(trial.metrics["score"]["max"]) == pytest.approx(
            max(score, score / 2), abs=1e-5
        )
        assert float(trial.metrics["score"]["latest"]) == pytest.approx(score / 2, abs=1e-5)
        assert float(trial.metrics["loss"]["latest"]) == 2
        # the program wrote to the trial's own copy of the path
        folder = trial_dir("default", trial.name, uids[trial.name])
        assert (folder / "fs" / path.lstrip("/")).is_file()


PUSH_PROGRAM = (
    "import sys\n"
    "from ketch.tuning import report_metrics\n"
    "x, y = float(sys.argv[1]), float(sys.argv[2])\n"
    "print('score=-999 loss=-999')\n"
    "score = -(x - 0.3) ** 2 - (y - 0.7) ** 2\n"
    "for step in (1, 2, 3):\n"
    "    report_metrics({'score': score - 1 / step, 'loss': (x - 0.3) ** 2}, step=step)\n"
)


def test_push_collector_takes_what_the_trial_reports(local: TuningClient) -> None:
    manifest = experiment(
        "push",
        max_trials=2,
        parallel=2,
        maxFailedTrialCount=0,
        command=["python", "-c", PUSH_PROGRAM, *XY],
        metricsCollectorSpec={"collector": {"kind": "Push"}},
    )
    done = run_local(local, manifest)
    assert done.succeeded, done.status
    trials = stored_trials("push")
    assert len(trials) == 2 and {_state(t) for t in trials} == {"Succeeded"}
    for trial in trials:
        values = _assignments(trial)
        x, y = float(values["x"]), float(values["y"])
        score = -((x - 0.3) ** 2) - (y - 0.7) ** 2
        assert _metric(trial, "score", "max") == pytest.approx(score - 1 / 3, abs=1e-9)
        assert _metric(trial, "score", "min") == pytest.approx(score - 1, abs=1e-9)
        assert _metric(trial, "loss") == pytest.approx((x - 0.3) ** 2, abs=1e-9)
        history = trial["status"]["ketch"]["history"]
        assert [int(s) for s, _ in history] == [1, 2, 3]


# -- ketch.tune --------------------------------------------------------------------------


def annotated_objective(parameters: dict[str, Any]) -> None:
    """A user's objective with annotations that name what its module imported."""
    from ketch.tuning import report_metrics

    x: float = parameters["x"]
    report_metrics({"score": -((x - 0.3) ** 2)})


def test_tune_with_an_annotated_objective(local: TuningClient) -> None:
    import ketch

    done = ketch.tune(
        "annotated",
        annotated_objective,
        {"x": ketch.search.double(min=0.0, max=1.0)},
        objective_metric_name="score",
        max_trial_count=2,
        parallel_trial_count=2,
        max_failed_trial_count=0,
        server=False,
        timeout=120,
    )
    assert done.succeeded, done.status
    for trial in done.trials():
        assert trial.state == "Succeeded"
        x = float(trial.parameters["x"])
        assert float(trial.metrics["score"]["latest"]) == pytest.approx(-((x - 0.3) ** 2), abs=1e-9)
    assert math.isfinite(float(done.optimal()["observation"]["metrics"][0]["latest"]))
