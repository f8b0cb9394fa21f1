"""The Experiment spec: Katib's validation, its webhook defaults and the value helpers."""

from __future__ import annotations

from typing import Any

import pytest

from ketch.core.errors import InvalidSpec
from ketch.tuning.parameters import ParameterSpec
from ketch.tuning.spec import parse_experiment
from tests.tuning.spec_builders import raw_spec


def parse(spec: dict[str, Any], name: str = "exp"):  # noqa: ANN201 - the parsed spec
    return parse_experiment(spec, name=name)


def rejected(spec: dict[str, Any], name: str = "exp") -> InvalidSpec:
    with pytest.raises(InvalidSpec) as caught:
        parse(spec, name)
    return caught.value


def test_katib_webhook_defaults() -> None:
    spec = parse(
        raw_spec(
            objective={
                "type": "maximize",
                "objectiveMetricName": "accuracy",
                "additionalMetricNames": ["loss"],
            }
        )
    )
    assert spec.parallelTrialCount == 3
    assert spec.resumePolicy == "Never"
    assert spec.metricsCollectorSpec.collector.kind == "StdOut"
    # objective by its type, additional metrics by the objective's type (Katib's webhook)
    assert spec.metric_strategy("accuracy") == "max"
    assert spec.metric_strategy("loss") == "max"
    assert spec.metric_names == ["accuracy", "loss"]
    assert all(p.feasibleSpace.distribution == "uniform" for p in spec.parameters[1:3])
    template = spec.trialTemplate
    assert template.successCondition == 'status.conditions.#(type=="Complete")#|#(status=="True")#'
    assert template.failureCondition == 'status.conditions.#(type=="Failed")#|#(status=="True")#'


def test_given_strategies_and_counts_are_kept() -> None:
    spec = parse(
        raw_spec(
            objective={
                "type": "minimize",
                "objectiveMetricName": "loss",
                "additionalMetricNames": ["acc"],
                "metricStrategies": [{"name": "loss", "value": "latest"}],
            },
            parallelTrialCount=2,
            maxTrialCount=10,
            maxFailedTrialCount=1,
            resumePolicy="LongRunning",
        )
    )
    assert spec.metric_strategy("loss") == "latest"
    assert spec.metric_strategy("acc") == "min"
    assert (spec.parallelTrialCount, spec.maxTrialCount, spec.maxFailedTrialCount) == (2, 10, 1)
    assert spec.resumePolicy == "LongRunning"


def test_default_parallelism_never_exceeds_max_trials() -> None:
    assert parse(raw_spec(maxTrialCount=2)).parallelTrialCount == 2
    error = rejected(raw_spec(maxTrialCount=2, parallelTrialCount=3))
    assert error.field == "spec.parallelTrialCount"


def test_kubeflow_job_defaults() -> None:
    spec = raw_spec()
    spec["trialTemplate"]["trialSpec"]["kind"] = "PyTorchJob"
    spec["trialTemplate"]["trialSpec"]["apiVersion"] = "kubeflow.org/v1"
    template = parse(spec).trialTemplate
    assert template.primaryPodLabels == {"training.kubeflow.org/job-role": "master"}
    assert template.successCondition == 'status.conditions.#(type=="Succeeded")#|#(status=="True")#'


def test_metrics_collector_defaults() -> None:
    spec = parse(raw_spec(metricsCollectorSpec={"collector": {"kind": "File"}}))
    path = spec.metricsCollectorSpec.source.fileSystemPath
    assert (path.path, path.kind, path.format) == ("/var/log/katib/metrics.log", "File", "TEXT")
    spec = parse(raw_spec(metricsCollectorSpec={"collector": {"kind": "TensorFlowEvent"}}))
    path = spec.metricsCollectorSpec.source.fileSystemPath
    assert (path.path, path.kind) == ("/var/log/katib/tfevent/", "Directory")
    spec = parse(raw_spec(metricsCollectorSpec={"collector": {"kind": "PrometheusMetric"}}))
    http = spec.metricsCollectorSpec.source.httpGet
    assert (http.path, http.port) == ("/metrics", 8080)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (
            lambda s: s["parameters"][1]["feasibleSpace"].update(max="-2"),
            "spec.parameters[1].feasibleSpace.max",
        ),
        (
            lambda s: s["parameters"][1]["feasibleSpace"].pop("max"),
            "spec.parameters[1].feasibleSpace.max",
        ),
        (
            lambda s: s["parameters"][1]["feasibleSpace"].update(min="abc"),
            "spec.parameters[1].feasibleSpace.min",
        ),
        (
            lambda s: s["parameters"][2]["feasibleSpace"].update(step="0.5"),
            "spec.parameters[2].feasibleSpace.step",
        ),
        (
            lambda s: s["parameters"][2]["feasibleSpace"].update(list=["1"]),
            "spec.parameters[2].feasibleSpace.list",
        ),
        (
            lambda s: s["parameters"][4]["feasibleSpace"].update(min="1"),
            "spec.parameters[4].feasibleSpace.min",
        ),
        (
            lambda s: s["parameters"][5]["feasibleSpace"].update(list=["16", "big"]),
            "spec.parameters[5].feasibleSpace.list[1]",
        ),
        (
            lambda s: s["parameters"][0]["feasibleSpace"].update(min="0"),
            "spec.parameters[0].feasibleSpace.min",
        ),
        (
            lambda s: s["parameters"][1].update(parameterType="float"),
            "spec.parameters[1].parameterType",
        ),
        (
            lambda s: s["parameters"][1]["feasibleSpace"].update(distribution="beta"),
            "spec.parameters[1].feasibleSpace.distribution",
        ),
        (lambda s: s["parameters"][3].update(name="lr"), "spec.parameters[3].name"),
        (lambda s: s.update(parameters=[]), "spec.parameters"),
        (lambda s: s["objective"].update(type="best"), "spec.objective.type"),
        (lambda s: s["objective"].pop("objectiveMetricName"), "spec.objective.objectiveMetricName"),
        (
            lambda s: s["objective"].update(additionalMetricNames=["loss"]),
            "spec.objective.additionalMetricNames[0]",
        ),
        (lambda s: s.pop("algorithm"), "spec.algorithm"),
        (lambda s: s["algorithm"].update(algorithmName=""), "spec.algorithm.algorithmName"),
        (lambda s: s.update(maxTrialCount=0), "spec.maxTrialCount"),
        (lambda s: s.update(maxTrialCount=3, maxFailedTrialCount=4), "spec.maxFailedTrialCount"),
        (lambda s: s.update(resumePolicy="Sometimes"), "spec.resumePolicy"),
        (
            lambda s: s["trialTemplate"]["trialParameters"][0].update(reference="nope"),
            "spec.trialTemplate.trialParameters[0].reference",
        ),
        (
            lambda s: s["trialTemplate"]["trialParameters"].append(
                {"name": "extra", "reference": "lr"}
            ),
            "spec.trialTemplate.trialParameters[6].reference",
        ),
        (
            lambda s: s["trialTemplate"]["trialParameters"].pop(),
            "spec.trialTemplate.trialParameters",
        ),
        (
            lambda s: s["trialTemplate"]["trialSpec"].update(metadata={"name": "fixed"}),
            "spec.trialTemplate.trialSpec.metadata",
        ),
        (lambda s: s["trialTemplate"].pop("trialSpec"), "spec.trialTemplate.trialSpec"),
        (
            lambda s: s.update(metricsCollectorSpec={"collector": {"kind": "Carrier"}}),
            "spec.metricsCollectorSpec.collector.kind",
        ),
        (
            lambda s: s.update(
                metricsCollectorSpec={
                    "collector": {"kind": "File"},
                    "source": {"fileSystemPath": {"path": "rel.log"}},
                }
            ),
            "spec.metricsCollectorSpec.source.fileSystemPath.path",
        ),
        (
            lambda s: s.update(
                metricsCollectorSpec={
                    "collector": {"kind": "StdOut"},
                    "source": {"filter": {"metricsFormat": ["([a-z]+)=.*"]}},
                }
            ),
            "spec.metricsCollectorSpec.source.filter.metricsFormat[0]",
        ),
    ],
)
def test_invalid_specs_name_the_field(change: Any, field: str) -> None:
    spec = raw_spec()
    change(spec)
    assert rejected(spec).field == field


def test_unsupported_features_say_what_to_do() -> None:
    error = rejected(raw_spec(nasConfig={"graphConfig": {"numLayers": 8}}))
    assert error.field == "spec.nasConfig" and "spec.parameters" in error.message
    spec = raw_spec()
    spec["trialTemplate"]["configMap"] = {"configMapName": "templates", "templatePath": "job.yaml"}
    error = rejected(spec)
    assert error.field == "spec.trialTemplate.configMap" and "trialSpec" in error.message


def test_experiment_name_follows_katib() -> None:
    assert rejected(raw_spec(), name="Bad_Name").field == "metadata.name"
    assert rejected(raw_spec(), name="x" * 41).field == "metadata.name"


def test_numbers_written_without_quotes_are_read_as_katib_text() -> None:
    spec = raw_spec()
    spec["parameters"][1]["feasibleSpace"] = {"min": -1, "max": 1.5, "step": 0.25}
    spec["parameters"][5]["feasibleSpace"] = {"list": [16, 32]}
    parsed = parse(spec)
    assert parsed.parameters[1].feasibleSpace.max == "1.5"
    assert parsed.parameters[5].choices == ["16", "32"]


def test_coerce_and_format_round_trip() -> None:
    double = ParameterSpec(
        name="lr", parameterType="double", feasibleSpace={"min": "0", "max": "1"}
    )
    integer = ParameterSpec(name="n", parameterType="int", feasibleSpace={"min": "1", "max": "9"})
    discrete = ParameterSpec(
        name="bs", parameterType="discrete", feasibleSpace={"list": ["16", "0.5"]}
    )
    categorical = ParameterSpec(
        name="opt", parameterType="categorical", feasibleSpace={"list": ["sgd", "3"]}
    )
    assert integer.format(3) == "3" and integer.coerce("3") == 3 and integer.coerce("3.0") == 3
    with pytest.raises(ValueError):
        integer.coerce("3.5")
    for value in (0.1 + 0.2, 1e-7, 1 / 3, 123456.789):
        assert double.coerce(double.format(value)) == value  # no precision lost
    assert discrete.coerce("16") == 16 and discrete.format(16) == "16"
    assert discrete.coerce("0.5") == 0.5 and discrete.format(0.5) == "0.5"
    assert categorical.coerce("3") == "3" and categorical.format("sgd") == "sgd"
    assert integer.contains(9) and not integer.contains(10) and not integer.contains(2.5)
    assert discrete.contains(16) and not discrete.contains(17)


def test_goal_reached_follows_the_objective_type() -> None:
    minimize = parse(
        raw_spec(objective={"type": "minimize", "objectiveMetricName": "loss", "goal": 0.1})
    )
    assert (
        minimize.goal_reached(0.1)
        and minimize.goal_reached(0.05)
        and not minimize.goal_reached(0.2)
    )
    maximize = parse(
        raw_spec(objective={"type": "maximize", "objectiveMetricName": "acc", "goal": 0.9})
    )
    assert maximize.goal_reached(0.95) and not maximize.goal_reached(0.5)
    assert not parse(raw_spec()).goal_reached(0.0)  # no goal


def test_multi_objective_field() -> None:
    spec = parse(
        raw_spec(
            objective={
                "objectives": [
                    {"objectiveMetricName": "loss", "type": "minimize"},
                    {"objectiveMetricName": "latency", "type": "minimize"},
                ],
                "additionalMetricNames": ["acc"],
            }
        )
    )
    assert spec.multi_objective
    assert spec.objective.objectiveMetricName == "loss" and spec.objective.type == "minimize"
    assert [o.objectiveMetricName for o in spec.objectives] == ["loss", "latency"]
    assert spec.metric_names == ["loss", "latency", "acc"]
    assert spec.metric_strategy("latency") == "min"
    # the primary objective is put first when it is not listed
    spec = parse(
        raw_spec(
            objective={
                "type": "maximize",
                "objectiveMetricName": "acc",
                "objectives": [{"objectiveMetricName": "latency", "type": "minimize"}],
            }
        )
    )
    assert [(o.objectiveMetricName, o.type) for o in spec.objectives] == [
        ("acc", "maximize"),
        ("latency", "minimize"),
    ]
    error = rejected(
        raw_spec(
            objective={
                "type": "maximize",
                "objectiveMetricName": "acc",
                "objectives": [{"objectiveMetricName": "acc", "type": "minimize"}],
            }
        )
    )
    assert error.field == "spec.objective.objectives[0].type"
