"""How the dashboard writes values: ages as ``kubectl`` prints them (the server's own
formatting, :func:`ketch.server.tables.human_duration`), objects as YAML, and states
as a word with a class a stylesheet colours by."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import yaml

from ketch.core.timestamps import parse_time, utcnow
from ketch.server.tables import human_duration

_GOOD = {"succeeded", "ready", "true", "complete", "completed", "running", "active", "created"}
_BAD = {"failed", "error", "false", "canceled", "cancelled", "terminated", "crashloopbackoff"}
_WAITING = {"pending", "starting", "waiting", "suspended", "stopped", "unknown", "paused"}


def age(value: Any, now: datetime | None = None) -> str:
    """The time since ``value`` (an RFC 3339 time), as ``kubectl`` prints ages; ``""``
    for none."""
    if not value:
        return ""
    try:
        moment = parse_time(value)
    except (TypeError, ValueError):
        return str(value)
    return human_duration(((now or utcnow()) - moment).total_seconds())


def epoch_age(value: Any, now: datetime | None = None) -> str:
    """The time since ``value``, milliseconds since the epoch as the Model Registry
    writes times (a string or a number); ``""`` for none."""
    try:
        millis = int(str(value))
    except (TypeError, ValueError):
        return ""
    moment = datetime.fromtimestamp(millis / 1000, tz=UTC)
    return human_duration(((now or utcnow()) - moment).total_seconds())


def state_class(value: Any) -> str:
    """``good``, ``bad``, ``waiting`` or ``""``: how a state is coloured."""
    word = str(value or "").strip().lower()
    if word in _BAD:
        return "bad"
    if word in ("running", "active", "created"):
        return "busy"
    if word in _GOOD:
        return "good"
    if word in _WAITING:
        return "waiting"
    return ""


def to_yaml(value: Any) -> str:
    """``value`` as YAML, keys in the order the API gave them."""
    text: str = yaml.safe_dump(value, sort_keys=False, default_flow_style=False, width=100)
    return text


FILTERS: dict[str, Callable[..., Any]] = {
    "age": age,
    "epoch_age": epoch_age,
    "state_class": state_class,
    "to_yaml": to_yaml,
}
