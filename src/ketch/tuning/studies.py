"""The live studies of one control plane, and what they learn from trials.

Each running experiment has a :class:`Study`: its Optuna-backed
:class:`~ketch.tuning.algorithms.Suggester` and the trials already told to it.
The Experiment controller asks it for new trials and tells it how trials ended;
the Trial controller reports a running trial's intermediate objective values to
it (early stopping). Both get the same :class:`Studies`, made with them by
:func:`ketch.tuning.controller.controllers`, so nothing is kept at module level.

A study is rebuilt from the stored trials after a restart: :func:`trial_record`
reads a Trial resource as the suggester records it, :func:`trial_values` its
objective values.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ketch.core.conditions import Finished
from ketch.core.controller import Key
from ketch.core.resource import Resource
from ketch.tuning.algorithms import Suggester, TrialRecord, TrialState
from ketch.tuning.observations import objective_value
from ketch.tuning.spec import ExperimentSpec
from ketch.tuning.states import trial_state

#: a trial's state as the suggester records it, by the condition that ended it
_RECORDED: Mapping[str, TrialState] = {
    Finished.SUCCEEDED: "succeeded",
    Finished.FAILED: "failed",
    Finished.METRICS_UNAVAILABLE: "failed",
    Finished.KILLED: "killed",
    Finished.EARLY_STOPPED: "early_stopped",
}


@dataclass
class Study:
    """One experiment's search (``uid``: the experiment object it belongs to)."""

    uid: str | None
    spec: ExperimentSpec
    suggester: Suggester
    told: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)


class Studies:
    """The live studies of one control plane, shared by its Experiment and Trial
    controllers."""

    def __init__(self) -> None:
        self._studies: dict[Key, Study] = {}
        self._lock = threading.Lock()

    def get(self, key: Key) -> Study | None:
        with self._lock:
            return self._studies.get(key)

    def put(self, key: Key, study: Study) -> None:
        with self._lock:
            self._studies[key] = study

    def drop(self, key: Key) -> None:
        with self._lock:
            self._studies.pop(key, None)


def objectives(spec: ExperimentSpec) -> list[tuple[str, str]]:
    """``(metric name, "maximize"|"minimize")`` of every objective, the primary first."""
    return [(o.objectiveMetricName, o.type) for o in spec.objectives]


def trial_values(spec: ExperimentSpec, status: dict[str, Any]) -> list[float] | None:
    """A trial's objective values in objective order, or None while one is missing."""
    metrics = (status.get("observation") or {}).get("metrics") or []
    values = []
    for name, _direction in objectives(spec):
        value = objective_value(metrics, name, spec.metric_strategy(name))
        if value is None:
            return None
        values.append(value)
    return values


def trial_record(spec: ExperimentSpec, trial: Resource) -> TrialRecord:
    """The stored ``trial`` as its experiment's suggester records it."""
    assignments = {
        a.get("name"): a.get("value") for a in trial.spec.get("parameterAssignments") or []
    }
    parameters: dict[str, Any] = {}
    for parameter in spec.parameters:
        if parameter.name in assignments:
            parameters[parameter.name] = parameter.coerce(str(assignments[parameter.name]))
    state = _RECORDED.get(trial_state(trial.status), "running")
    history = [(int(s), float(v)) for s, v in (trial.status.get("ketch") or {}).get("history", [])]
    return TrialRecord(
        name=trial.metadata.name,
        parameters=parameters,
        state=state,
        values=trial_values(spec, trial.status)
        if state in ("succeeded", "early_stopped")
        else None,
        intermediate=history,
        labels={
            k: v
            for k, v in trial.metadata.labels.items()
            if not k.startswith("katib.kubeflow.org/")
        },
    )
