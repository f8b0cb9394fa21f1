"""A trainer's progress and metrics, reported into a TrainJob's ``status.trainerStatus``.

Kubeflow Trainer's proposal for TrainJob progress (KEP-2779) has the runtime
report a ``TrainerStatus``. Here a trainer writes it as JSON to the file named by
``KUBEFLOW_TRAINER_STATUS_FILE`` (replacing the file, e.g. write a temporary
file and rename it); the controller reads it while the job runs and once more
when it ends::

    {"progressPercentage": 45, "estimatedRemainingSeconds": 120,
     "metrics": [{"name": "loss", "value": "0.2347"}]}

``{"trainerStatus": {...}}`` (the shape Trainer's status endpoint takes) is read
too, and ``metrics`` may be a mapping ``{"loss": 0.23}``. Values become strings;
``lastUpdatedTime`` defaults to when the file was written. A file that does not
parse (half written) is read again on the next look.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ketch.core.timestamps import format_time

MAX_METRICS = 256


def read(path: Path) -> dict[str, Any] | None:
    """``status.trainerStatus`` from the file at ``path``, or ``None`` (no usable file)."""
    try:
        stat = path.stat()
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if isinstance(data, dict) and isinstance(data.get("trainerStatus"), dict):
        data = data["trainerStatus"]
    if not isinstance(data, dict):
        return None
    out: dict[str, Any] = {}
    progress = _number(data.get("progressPercentage"))
    if progress is not None:
        out["progressPercentage"] = max(0, min(100, int(progress)))
    remaining = _number(data.get("estimatedRemainingSeconds"))
    if remaining is not None:
        out["estimatedRemainingSeconds"] = max(0, int(remaining))
    metrics = _metrics(data.get("metrics"))
    if metrics:
        out["metrics"] = metrics
    updated = data.get("lastUpdatedTime")
    if not isinstance(updated, str) or not updated:
        updated = format_time(datetime.fromtimestamp(stat.st_mtime, UTC).replace(microsecond=0))
    out["lastUpdatedTime"] = updated
    return out


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _metrics(value: Any) -> list[dict[str, str]]:
    pairs: list[tuple[Any, Any]] = []
    if isinstance(value, dict):
        pairs = list(value.items())
    elif isinstance(value, list):
        pairs = [(m.get("name"), m.get("value")) for m in value if isinstance(m, dict)]
    out = []
    for name, metric in pairs[:MAX_METRICS]:
        if name in (None, "") or metric is None:
            continue
        out.append({"name": str(name)[:64], "value": str(metric)[:64]})
    return out
