"""Trial templates: substitution, environment, and Katib's GJSON conditions."""

from __future__ import annotations

import pytest

from ketch.core.errors import InvalidSpec
from ketch.tuning import trials

JOB = {
    "apiVersion": "batch/v1",
    "kind": "Job",
    "metadata": {"labels": {"team": "a"}},
    "spec": {
        "template": {
            "spec": {
                "containers": [
                    {
                        "name": "training-container",
                        "command": [
                            "python",
                            "train.py",
                            "--lr=${trialParameters.learningRate}",
                            "--name=${trialParameters.trialName}",
                            "--team=${trialParameters.team}",
                        ],
                    },
                    {"name": "sidecar", "command": ["sleep", "1"]},
                ],
            }
        }
    },
}
PARAMETERS = [
    {"name": "learningRate", "reference": "lr"},
    {"name": "trialName", "reference": "${trialSpec.Name}"},
    {"name": "team", "reference": "${trialSpec.Labels[team]}"},
]


def test_render_substitutes_parameters_and_metadata() -> None:
    manifest = trials.render(
        JOB, PARAMETERS, {"lr": "0.05"}, name="exp-abc", namespace="ns", experiment="exp"
    )
    command = manifest["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[2:] == ["--lr=0.05", "--name=exp-abc", "--team=a"]
    assert manifest["metadata"]["name"] == "exp-abc"
    assert manifest["metadata"]["namespace"] == "ns"
    assert manifest["metadata"]["labels"][trials.EXPERIMENT_LABEL] == "exp"
    assert manifest["metadata"]["labels"][trials.TRIAL_LABEL] == "exp-abc"
    assert JOB["metadata"] == {"labels": {"team": "a"}}  # the template is not changed


def test_render_rejects_undeclared_and_unknown_references() -> None:
    with pytest.raises(InvalidSpec, match="not declared"):
        trials.render(JOB, PARAMETERS[:1], {"lr": "1"}, name="t", namespace="n", experiment="e")
    with pytest.raises(InvalidSpec) as info:
        trials.render(
            JOB,
            [{"name": "learningRate", "reference": "nope"}, *PARAMETERS[1:]],
            {"lr": "1"},
            name="t",
            namespace="n",
            experiment="e",
        )
    assert info.value.field == "spec.trialTemplate.trialParameters[0].reference"


def test_inject_env_goes_to_the_primary_container_only() -> None:
    manifest = trials.render(JOB, PARAMETERS, {"lr": "1"}, name="t", namespace="n", experiment="e")
    trials.inject_env(manifest, {"KATIB_TRIAL_NAME": "t"}, "training-container")
    containers = manifest["spec"]["template"]["spec"]["containers"]
    assert containers[0]["env"] == [{"name": "KATIB_TRIAL_NAME", "value": "t"}]
    assert "env" not in containers[1]
    train_job = {"kind": "TrainJob", "spec": {"trainer": {"env": [{"name": "A", "value": "1"}]}}}
    trials.inject_env(train_job, {"B": "2"}, "node")
    assert train_job["spec"]["trainer"]["env"] == [
        {"name": "A", "value": "1"},
        {"name": "B", "value": "2"},
    ]


def _job(*conditions: tuple[str, str]) -> dict:
    return {"status": {"conditions": [{"type": t, "status": s} for t, s in conditions]}}


def test_default_conditions_follow_katib() -> None:
    success, failure = trials.conditions_for("Job", None, None)
    assert trials.matches(_job(("Complete", "True")), success)
    assert not trials.matches(_job(("Complete", "False")), success)
    assert not trials.matches(_job(), success)
    assert trials.matches(_job(("Failed", "True")), failure)
    success, _ = trials.conditions_for("PyTorchJob", None, None)
    assert trials.matches(_job(("Running", "False"), ("Succeeded", "True")), success)
    with pytest.raises(InvalidSpec, match="successCondition"):
        trials.conditions_for("Pod", None, None)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("status.succeeded", True),
        ("status.failed", False),
        ("status.active", True),
        ('status.conditions.#(type=="Complete")', True),
        ('status.conditions.#(type=="Complete").status', True),
        ('status.conditions.#(type=="Nope")#', False),
        ("status.conditions.#", True),
        ('status.conditions.#(reason%"Back*")#', True),
        ('status.conditions.#(type!="Complete")#|#(status=="True")#', False),
    ],
)
def test_gjson_subset(expression: str, expected: bool) -> None:
    document = {
        "status": {
            "succeeded": 1,
            "active": 0,
            "conditions": [
                {"type": "Complete", "status": "True", "reason": "BackoffLimit"},
                {"type": "Suspended", "status": "False"},
            ],
        }
    }
    assert trials.matches(document, expression) is expected


def test_primary_log_prefers_the_master() -> None:
    paths = {"j-worker-0": "w0", "j-master-0": "m0", "j-worker-1": "w1"}
    assert trials.primary_log("PyTorchJob", paths) == "m0"
    assert trials.primary_log("Job", {"j-0": "a", "j-1": "b", "j-0/side": "c"}) == "b"
    assert trials.primary_log("Job", {}) is None


def test_replace_path_moves_whole_segments_and_keeps_what_it_is_told() -> None:
    manifest = {
        "args": [
            "--checkpoint=/var/log/katib",
            "/var/log/katib/ckpt",
            "/var/log/katibx",
            "--metrics=/var/log/katib/metrics.log",
        ]
    }
    moved = trials.replace_path(
        manifest, "/var/log/katib/", "/tmp/t1", keep=("/var/log/katib/metrics.log",)
    )
    assert moved["args"] == [
        "--checkpoint=/tmp/t1",
        "/tmp/t1/ckpt",
        "/var/log/katibx",
        "--metrics=/var/log/katib/metrics.log",
    ]
