"""Kubernetes-style conditions and the states that end work, for code that holds
plain JSON (controllers, clients, the CLI, the log routes): no models, nothing
heavy to import.

- :class:`Finished`: the condition types that, once True, mean an object's work has
  ended (jobs, trials, experiments, runs as resources). :data:`FINISHED` is the set.
- :class:`RunState`: KFP's run and task states; :data:`TERMINAL_RUN_STATES` the
  final ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any


class Finished(StrEnum):
    """Condition types that, once True, mean the object's work has ended."""

    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    COMPLETE = "Complete"  # batch/v1 Job
    COMPLETED = "Completed"
    CANCELED = "Canceled"
    KILLED = "Killed"  # Katib trials
    EARLY_STOPPED = "EarlyStopped"
    METRICS_UNAVAILABLE = "MetricsUnavailable"


FINISHED: frozenset[str] = frozenset(Finished)


class RunState(StrEnum):
    """KFP v2 run and task states (``V2beta1RuntimeState``)."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    SKIPPED = "SKIPPED"
    FAILED = "FAILED"
    CANCELING = "CANCELING"
    CANCELED = "CANCELED"
    PAUSED = "PAUSED"


TERMINAL_RUN_STATES: frozenset[str] = frozenset(
    {RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELED, RunState.SKIPPED}
)


def conditions(manifest: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``status.conditions`` of ``manifest``, skipping anything that is not a mapping."""
    status = manifest.get("status") or {}
    return status_conditions(status) if isinstance(status, Mapping) else []


def status_conditions(status: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``status["conditions"]``, skipping anything that is not a mapping."""
    found = status.get("conditions")
    return [c for c in found if isinstance(c, dict)] if isinstance(found, list) else []


def get_condition(status: Mapping[str, Any], type: str) -> dict[str, Any] | None:
    """A copy of the condition of ``type`` in ``status["conditions"]``, or ``None``."""
    for condition in status_conditions(status):
        if condition.get("type") == type:
            return dict(condition)
    return None


def is_true(status: Mapping[str, Any], type: str) -> bool:
    """Whether condition ``type`` in ``status["conditions"]`` has status ``"True"``."""
    condition = get_condition(status, type)
    return condition is not None and condition.get("status") == "True"


def true_conditions(status: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The conditions of ``status`` whose status is ``"True"``, in order."""
    return [c for c in status_conditions(status) if c.get("status") == "True"]


def is_finished(manifest: Mapping[str, Any]) -> bool:
    """Whether the object's work has ended: ``status.completionTime`` is set, or a
    :data:`FINISHED` condition is True."""
    status = manifest.get("status") or {}
    if not isinstance(status, Mapping):
        return False
    if status.get("completionTime"):
        return True
    return any(c.get("type") in FINISHED for c in true_conditions(status))
