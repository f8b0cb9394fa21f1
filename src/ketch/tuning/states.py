"""The states of Katib trials and experiments, read from and written to their
conditions.

A trial has ended once one of :data:`TRIAL_ENDS` is True (read in that order, as
Katib does); until then it is ``Running`` or ``Pending``. An experiment ends
``Succeeded`` or ``Failed`` (:data:`EXPERIMENT_ENDS`). :func:`finish` ends either:
its condition True, ``Running`` False, ``completionTime`` set, and an event.
"""

from __future__ import annotations

from typing import Any

from ketch.core.conditions import Finished, is_true
from ketch.core.controller import Events
from ketch.core.resource import set_condition
from ketch.core.timestamps import format_time, utcnow

RUNNING = "Running"
PENDING = "Pending"
#: the conditions that end a trial, in the order :func:`trial_state` reads them
TRIAL_ENDS: tuple[Finished, ...] = (
    Finished.SUCCEEDED,
    Finished.FAILED,
    Finished.KILLED,
    Finished.EARLY_STOPPED,
    Finished.METRICS_UNAVAILABLE,
)
#: the conditions that end an experiment
EXPERIMENT_ENDS: tuple[Finished, ...] = (Finished.SUCCEEDED, Finished.FAILED)
#: the states of a trial that has not ended
ACTIVE = (RUNNING, PENDING)


def trial_state(status: dict[str, Any]) -> str:
    """Succeeded, Failed, Killed, EarlyStopped, MetricsUnavailable, Running or Pending."""
    for end in TRIAL_ENDS:
        if is_true(status, end):
            return end.value
    return RUNNING if is_true(status, RUNNING) else PENDING


def experiment_ended(status: dict[str, Any]) -> bool:
    """Whether the experiment has succeeded or failed."""
    return any(is_true(status, end) for end in EXPERIMENT_ENDS)


def finish(
    status: dict[str, Any], events: Events, condition: str, reason: str, message: str
) -> None:
    """End an experiment or a trial: Running False, then ``condition`` True (the last
    condition, Katib's Type column), completionTime."""
    set_condition(status, RUNNING, "False", reason, message, last=True)
    set_condition(status, condition, "True", reason, message, last=True)
    status["completionTime"] = format_time(utcnow())
    normal = condition in (Finished.SUCCEEDED, Finished.EARLY_STOPPED)
    events.append((reason, message, "Normal" if normal else "Warning"))
