"""What a suggestion algorithm hands out and what the controller stores per trial."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

TrialState = Literal["running", "succeeded", "failed", "early_stopped", "killed"]
FINISHED: tuple[TrialState, ...] = ("succeeded", "failed", "early_stopped", "killed")

#: label prefix of the labels Ketch's algorithms put on trials
LABEL_PREFIX = "tuning.ketch.dev/"


@dataclass
class Suggestion:
    """One trial's assignments (typed values keyed by parameter name), the labels to
    put on the trial (PBT generation and parent, Hyperband bracket and rung) and extra
    environment for it (PBT's checkpoint directory)."""

    parameters: dict[str, Any]
    labels: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class TrialRecord:
    """A trial as the controller stores it and replays it into a new suggester on restart.

    ``values``: the objective value(s), one per objective in order, once finished;
    ``intermediate``: ``(step, objective value)`` reports while it ran.
    """

    name: str
    parameters: dict[str, Any]
    state: TrialState = "running"
    values: list[float] | None = None
    intermediate: list[tuple[int, float]] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
