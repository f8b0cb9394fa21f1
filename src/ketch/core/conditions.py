"""Reading a manifest's Kubernetes-style conditions, for code that holds plain JSON
(the CLI, the log routes): no models, nothing heavy to import."""

from __future__ import annotations

from typing import Any

# Condition types that, once True, mean the object's work has ended.
FINISHED_CONDITIONS = ("Succeeded", "Failed", "Complete", "Completed", "Canceled")


def conditions(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """``status.conditions`` of ``manifest``, skipping anything that is not a mapping."""
    status = manifest.get("status") or {}
    found = status.get("conditions") if isinstance(status, dict) else None
    return [c for c in found if isinstance(c, dict)] if isinstance(found, list) else []


def is_finished(manifest: dict[str, Any]) -> bool:
    """Whether the object's work has ended: ``status.completionTime`` is set, or a
    :data:`FINISHED_CONDITIONS` condition is True."""
    status = manifest.get("status") or {}
    if isinstance(status, dict) and status.get("completionTime"):
        return True
    return any(
        c.get("type") in FINISHED_CONDITIONS and c.get("status") == "True"
        for c in conditions(manifest)
    )
