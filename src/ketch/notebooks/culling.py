"""Culling idle notebooks, as Kubeflow's culler does it (its ``culling_controller.go``
since Kubeflow 1.5), on the Notebook's annotations:

1. A stopped notebook (``kubeflow-resource-stopped`` set), or one whose pod is missing,
   loses both activity annotations, and nothing else happens.
2. Otherwise an activity annotation that is missing is set to now:
   ``notebooks.kubeflow.org/last-activity`` and
   ``notebooks.kubeflow.org/last_activity_check_timestamp``.
3. Once per ``IDLENESS_CHECK_PERIOD`` (since the check timestamp) the server's
   ``/api/kernels`` is read: a kernel whose ``execution_state`` is not ``idle`` makes the
   last activity now; all idle, it is the newest kernel's ``last_activity``; no kernels,
   or no answer, leaves it as it is. The check timestamp becomes now.
4. A notebook whose last activity is more than ``CULL_IDLE_TIME`` ago is stopped: its
   ``kubeflow-resource-stopped`` annotation is set to now.

Times are RFC 3339 in UTC, to the second, as Kubeflow writes them.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from ketch.core.timestamps import format_time, time_or_none, utcnow
from ketch.notebooks.settings import Culling
from ketch.notebooks.spec import STOPPED

LAST_ACTIVITY = "notebooks.kubeflow.org/last-activity"
LAST_CHECK = "notebooks.kubeflow.org/last_activity_check_timestamp"

#: reads the server's kernels (``None``: no answer)
Kernels = Callable[[], list[dict[str, Any]] | None]


def rfc3339(moment: datetime) -> str:
    return format_time(moment.replace(microsecond=0))


def now() -> datetime:
    return utcnow()


def clear(annotations: dict[str, str]) -> bool:
    """Step 1: drop the activity annotations; whether any was there."""
    found = [key for key in (LAST_ACTIVITY, LAST_CHECK) if key in annotations]
    for key in found:
        del annotations[key]
    return bool(found)


def kernels_activity(kernels: list[dict[str, Any]], moment: datetime) -> datetime | None:
    """The last activity ``kernels`` show (``None``: there are none)."""
    if not kernels:
        return None
    if any(str(k.get("execution_state") or "") != "idle" for k in kernels):
        return moment
    times = [t for t in (time_or_none(k.get("last_activity")) for k in kernels) if t]
    return max(times) if times else None


def due(annotations: dict[str, str], settings: Culling, moment: datetime) -> float:
    """Seconds until the next check of the kernels is due (0: now)."""
    checked = time_or_none(annotations.get(LAST_CHECK))
    if checked is None:
        return 0.0
    left = (checked + timedelta(seconds=settings.check_seconds) - moment).total_seconds()
    return max(0.0, left)


def cull(
    annotations: dict[str, str], settings: Culling, kernels: Kernels, moment: datetime
) -> bool:
    """Steps 2 to 4 on ``annotations`` (changed in place) of a running notebook; whether
    the notebook was culled (its stop annotation set)."""
    stamp = rfc3339(moment)
    for key in (LAST_ACTIVITY, LAST_CHECK):
        if time_or_none(annotations.get(key)) is None:
            annotations[key] = stamp
    if due(annotations, settings, moment) <= 0:
        found = kernels()
        activity = kernels_activity(found, moment) if found is not None else None
        if activity is not None:
            annotations[LAST_ACTIVITY] = rfc3339(activity)
        annotations[LAST_CHECK] = stamp
    last = time_or_none(annotations.get(LAST_ACTIVITY)) or moment
    if moment > last + timedelta(seconds=settings.idle_seconds):
        annotations[STOPPED] = stamp
        return True
    return False
