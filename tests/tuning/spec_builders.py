"""Experiment specs for the algorithm tests: a trial template that uses every parameter."""

from __future__ import annotations

import copy
from typing import Any

from ketch.tuning.spec import ExperimentSpec, parse_experiment

MIXED = [
    {
        "name": "lr",
        "parameterType": "double",
        "feasibleSpace": {"min": "0.001", "max": "0.1", "distribution": "logUniform"},
    },
    {
        "name": "x",
        "parameterType": "double",
        "feasibleSpace": {"min": "-1", "max": "1", "step": "0.25"},
    },
    {"name": "n", "parameterType": "int", "feasibleSpace": {"min": "1", "max": "9"}},
    {
        "name": "z",
        "parameterType": "double",
        "feasibleSpace": {"min": "0", "max": "10", "distribution": "normal"},
    },
    {"name": "opt", "parameterType": "categorical", "feasibleSpace": {"list": ["sgd", "adam"]}},
    {"name": "bs", "parameterType": "discrete", "feasibleSpace": {"list": ["16", "32", "64"]}},
]

GRID = [
    {
        "name": "x",
        "parameterType": "double",
        "feasibleSpace": {"min": "0.1", "max": "0.3", "step": "0.1"},
    },
    {"name": "n", "parameterType": "int", "feasibleSpace": {"min": "1", "max": "4", "step": "2"}},
    {"name": "opt", "parameterType": "categorical", "feasibleSpace": {"list": ["sgd", "adam"]}},
]


def raw_spec(
    algorithm: str = "random",
    settings: dict[str, Any] | None = None,
    *,
    parameters: list[dict[str, Any]] | None = None,
    objective: dict[str, Any] | None = None,
    early_stopping: tuple[str, dict[str, Any]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    parameters = copy.deepcopy(parameters if parameters is not None else MIXED)
    names = [p["name"] for p in parameters]
    spec: dict[str, Any] = {
        "objective": objective or {"type": "minimize", "objectiveMetricName": "loss"},
        "algorithm": {
            "algorithmName": algorithm,
            "algorithmSettings": [
                {"name": k, "value": str(v)} for k, v in (settings or {}).items()
            ],
        },
        "parameters": parameters,
        "trialTemplate": {
            "primaryContainerName": "training-container",
            "trialParameters": [{"name": n, "reference": n} for n in names],
            "trialSpec": {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "spec": {
                    "template": {
                        "spec": {
                            "containers": [
                                {
                                    "name": "training-container",
                                    "command": [
                                        "python",
                                        "train.py",
                                        *[f"--{n}=${{trialParameters.{n}}}" for n in names],
                                    ],
                                }
                            ]
                        }
                    }
                },
            },
        },
        **extra,
    }
    if early_stopping is not None:
        name, values = early_stopping
        spec["earlyStopping"] = {
            "algorithmName": name,
            "algorithmSettings": [{"name": k, "value": str(v)} for k, v in values.items()],
        }
    return spec


def make_spec(
    algorithm: str = "random", settings: dict[str, Any] | None = None, **options: Any
) -> ExperimentSpec:
    return parse_experiment(raw_spec(algorithm, settings, **options), name="exp")
