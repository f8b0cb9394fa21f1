"""A ``batch/v1`` Job's status as Kubernetes writes it: conditions and completed indexes."""

from __future__ import annotations

from typing import Any

from ketch.core.conditions import get_condition, is_true
from ketch.core.timestamps import format_time, utcnow


def set_job_condition(
    status: dict[str, Any], type_: str, value: str, reason: str, message: str
) -> None:
    """Set a Job condition the way the Job controller does: ``lastProbeTime`` is when it
    was last written, ``lastTransitionTime`` when its status last changed."""
    now = format_time(utcnow())
    conditions: list[dict[str, Any]] = status.setdefault("conditions", [])
    for condition in conditions:
        if condition.get("type") != type_:
            continue
        if (condition.get("status"), condition.get("reason"), condition.get("message")) == (
            value,
            reason,
            message,
        ):
            return
        transition = (
            condition.get("lastTransitionTime") if condition.get("status") == value else now
        )
        condition.update(
            status=value,
            lastProbeTime=now,
            lastTransitionTime=transition or now,
            reason=reason,
            message=message,
        )
        return
    conditions.append(
        {
            "type": type_,
            "status": value,
            "lastProbeTime": now,
            "lastTransitionTime": now,
            "reason": reason,
            "message": message,
        }
    )


def is_finished(status: dict[str, Any]) -> bool:
    """Whether the Job's ``Complete`` or ``Failed`` condition is True."""
    return is_true(status, "Complete") or is_true(status, "Failed")


def finished_at(status: dict[str, Any]) -> str | None:
    """When the Job finished: ``completionTime``, or when it was marked Failed."""
    if status.get("completionTime"):
        return str(status["completionTime"])
    failed = get_condition(status, "Failed") if is_true(status, "Failed") else None
    return (
        str(failed["lastTransitionTime"]) if failed and failed.get("lastTransitionTime") else None
    )


def completed_indexes(indexes: set[int]) -> str:
    """``{0, 1, 2, 5}`` -> ``"0-2,5"``, as Kubernetes writes ``status.completedIndexes``."""
    parts: list[str] = []
    ordered = sorted(indexes)
    start = 0
    while start < len(ordered):
        end = start
        while end + 1 < len(ordered) and ordered[end + 1] == ordered[end] + 1:
            end += 1
        first, last = ordered[start], ordered[end]
        parts.append(str(first) if first == last else f"{first}-{last}")
        start = end + 1
    return ",".join(parts)


def parse_indexes(text: str) -> set[int]:
    """The inverse of :func:`completed_indexes` (bad parts are skipped)."""
    out: set[int] = set()
    for part in filter(None, (p.strip() for p in text.split(","))):
        first, _, last = part.partition("-")
        if first.isdigit() and (not last or last.isdigit()):
            out.update(range(int(first), int(last or first) + 1))
    return out
