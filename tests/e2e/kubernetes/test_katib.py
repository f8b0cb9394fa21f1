"""The Katib SDK's ``KatibClient`` against ``ketch up``: an Experiment built from the
SDK's models, created, read, run to its optimum, and its budget and trial logs."""

from __future__ import annotations

import pytest

from tests.e2e.kubernetes.sdk import Sdk

# A trial program printing its objective the way Katib's StdOut collector reads it.
OBJECTIVE = (
    "import sys\n"
    "x, y = float(sys.argv[1]), float(sys.argv[2])\n"
    "print(f'epoch 1: score={-(x - 0.3) ** 2 - (y - 0.7) ** 2:.6f}')\n"
)

EXPERIMENT_MODEL = """
from kubernetes import client
from kubeflow.katib import KatibClient, models

katib = KatibClient(namespace=ns)
names = ["x", "y"]
experiment = models.V1beta1Experiment(
    api_version="kubeflow.org/v1beta1",
    kind="Experiment",
    metadata=client.V1ObjectMeta(name=name, namespace=ns),
    spec=models.V1beta1ExperimentSpec(
        objective=models.V1beta1ObjectiveSpec(type="maximize", objective_metric_name="score"),
        algorithm=models.V1beta1AlgorithmSpec(algorithm_name="random"),
        parallel_trial_count=2,
        max_trial_count=2,
        max_failed_trial_count=1,
        resume_policy="LongRunning",
        parameters=[
            models.V1beta1ParameterSpec(
                name=n,
                parameter_type="double",
                feasible_space=models.V1beta1FeasibleSpace(min="0", max="1"),
            )
            for n in names
        ],
        trial_template=models.V1beta1TrialTemplate(
            primary_container_name="training-container",
            trial_parameters=[models.V1beta1TrialParameterSpec(name=n, reference=n) for n in names],
            trial_spec={
                "apiVersion": "batch/v1",
                "kind": "Job",
                "spec": {
                    "template": {
                        "spec": {
                            "containers": [
                                {
                                    "name": "training-container",
                                    "image": "docker.io/kubeflowkatib/pytorch-mnist-cpu:latest",
                                    "command": [
                                        "python", "-c", objective,
                                        "${trialParameters.x}", "${trialParameters.y}",
                                    ],
                                }
                            ],
                            "restartPolicy": "Never",
                        }
                    }
                },
            },
        ),
    ),
)
"""
CREATE = """
katib.create_experiment(experiment, namespace=ns)
"""
EXPERIMENT = EXPERIMENT_MODEL + CREATE

CREATE_GET = (
    EXPERIMENT
    + """
got = katib.get_experiment(name, namespace=ns)
result = {
    "type": type(got).__name__,
    "name": got.metadata.name,
    "namespace": got.metadata.namespace,
    "max_trial_count": got.spec.max_trial_count,
    "metric": got.spec.objective.objective_metric_name,
    "parameters": [p.name for p in got.spec.parameters],
}
katib.delete_experiment(name, namespace=ns)
"""
)


def test_create_and_get_experiment(sdk: Sdk, ns: str) -> None:
    out = sdk.run(CREATE_GET, ns=ns, name="tune-xy", objective=OBJECTIVE)
    assert out == {
        "type": "V1beta1Experiment",
        "name": "tune-xy",
        "namespace": ns,
        "max_trial_count": 2,
        "metric": "score",
        "parameters": ["x", "y"],
    }


RUN_TO_OPTIMUM = (
    EXPERIMENT
    + """
katib.wait_for_experiment_condition(name, namespace=ns, timeout=120, polling_interval=1)
optimal = katib.get_optimal_hyperparameters(name, namespace=ns)
trials = katib.list_trials(name, namespace=ns)
suggestion = katib.get_suggestion(name, namespace=ns)
result = {
    "succeeded": katib.is_experiment_succeeded(name, namespace=ns),
    "best_trial": optimal.best_trial_name,
    "assigned": sorted(p.name for p in optimal.parameter_assignments),
    "metrics": [m.name for m in optimal.observation.metrics],
    "trials": sorted(t.metadata.name for t in trials),
    "suggestion": suggestion.metadata.name,
}
katib.delete_experiment(name, namespace=ns)
"""
)


def test_experiment_runs_to_its_optimum(sdk: Sdk, ns: str) -> None:
    out = sdk.run(RUN_TO_OPTIMUM, ns=ns, name="tune-run", objective=OBJECTIVE, timeout=180)
    assert out["succeeded"] is True
    assert len(out["trials"]) == 2
    assert out["best_trial"] in out["trials"]
    assert out["assigned"] == ["x", "y"]
    assert out["metrics"] == ["score"]
    assert out["suggestion"] == "tune-run"


EDIT_BUDGET = (
    EXPERIMENT
    + """
katib.wait_for_experiment_condition(name, namespace=ns, timeout=120, polling_interval=1)
katib.edit_experiment_budget(name, namespace=ns, max_trial_count=3)
result = katib.get_experiment(name, namespace=ns).spec.max_trial_count
katib.delete_experiment(name, namespace=ns)
"""
)


def test_edit_experiment_budget(sdk: Sdk, ns: str) -> None:
    assert sdk.run(EDIT_BUDGET, ns=ns, name="tune-budget", objective=OBJECTIVE, timeout=180) == 3


# Katib deletes the job of a trial that ended, and with it its pods and their logs,
# unless the trial template says retain: this experiment's trials are kept.
TRIAL_LOGS = (
    EXPERIMENT_MODEL
    + "experiment.spec.trial_template.retain = True\n"
    + CREATE
    + """
katib.wait_for_experiment_condition(name, namespace=ns, timeout=120, polling_interval=1)
trial = katib.list_trials(name, namespace=ns)[0].metadata.name
result = list(katib.get_job_logs(name, trial, namespace=ns))
katib.delete_experiment(name, namespace=ns)
"""
)


def test_get_job_logs_of_a_trial(sdk: Sdk, ns: str) -> None:
    lines = sdk.run(TRIAL_LOGS, ns=ns, name="tune-logs", objective=OBJECTIVE, timeout=180)
    assert any("score=" in line for line in lines), lines


TUNE = """
from kubeflow.katib import KatibClient, search


def objective(parameters):
    x = float(parameters["x"])
    print(f"score={-(x - 0.3) ** 2:.6f}")


katib = KatibClient(namespace=ns)
katib.tune(
    name=name,
    objective=objective,
    parameters={"x": search.double(min=0, max=1)},
    objective_metric_name="score",
    max_trial_count=2,
    parallel_trial_count=2,
)
katib.wait_for_experiment_condition(name, namespace=ns, timeout=120, polling_interval=1)
optimal = katib.get_optimal_hyperparameters(name, namespace=ns)
created = katib.get_experiment(name, namespace=ns)
container = created.spec.trial_template.trial_spec["spec"]["template"]["spec"]["containers"][0]
result = {
    "succeeded": katib.is_experiment_succeeded(name, namespace=ns),
    "trials": sorted(t.metadata.name for t in katib.list_trials(name, namespace=ns)),
    "best_trial": optimal.best_trial_name,
    "assigned": {a.name: float(a.value) for a in optimal.parameter_assignments},
    "metrics": {m.name: float(m.latest) for m in optimal.observation.metrics},
    "command": container["command"],
}
katib.delete_experiment(name, namespace=ns)
"""


def test_tune_an_objective_function(sdk: Sdk, ns: str) -> None:
    out = sdk.run(TUNE, ns=ns, name="tune-fn", timeout=180)
    assert out["succeeded"] is True, out
    assert len(out["trials"]) == 2 and out["best_trial"] in out["trials"]
    assert out["command"] == ["bash", "-c"]
    x = out["assigned"]["x"]
    assert 0 <= x <= 1
    assert out["metrics"]["score"] == pytest.approx(-((x - 0.3) ** 2), abs=1e-5)
