"""A progress bar for an experiment that ``ketch.tune`` waits for: trials done of
the maximum and the best objective value so far, drawn with rich on stderr when
stderr is a terminal (and nothing otherwise).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

#: the experiment status counts of trials that have ended
_FINISHED_COUNTS = (
    "trialsSucceeded",
    "trialsFailed",
    "trialsKilled",
    "trialsEarlyStopped",
    "trialMetricsUnavailable",
)


class ExperimentProgress:
    """A rich progress bar for an experiment, on an interactive stderr only."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> ExperimentProgress:
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            self._bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[best]}"),
                console=Console(stderr=True),
                transient=False,
            )
            self._bar.start()
            self._task = self._bar.add_task(f"experiment {self.name}", total=None, best="")
        return self

    def show(self, manifest: Mapping[str, Any]) -> None:
        """Show the state of the experiment ``manifest`` (as stored)."""
        if self._bar is None:
            return
        status = manifest.get("status") or {}
        finished = sum(int(status.get(k) or 0) for k in _FINISHED_COUNTS)
        total = (manifest.get("spec") or {}).get("maxTrialCount")
        optimal = status.get("currentOptimalTrial") or {}
        objective = (manifest.get("spec") or {}).get("objective") or {}
        metric = objective.get("objectiveMetricName")
        best = ""
        for entry in (optimal.get("observation") or {}).get("metrics") or []:
            if entry.get("name") == metric:
                pick = "max" if objective.get("type") == "maximize" else "min"
                best = f"best {metric}={entry.get(pick)} ({optimal.get('bestTrialName')})"
        self._bar.update(self._task, completed=finished, total=total, best=best)

    def __exit__(self, *_exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()
