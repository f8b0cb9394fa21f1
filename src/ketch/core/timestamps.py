"""Timestamps as Kubernetes and KFP write them: RFC 3339, UTC, a ``Z`` suffix.

The one place Ketch turns text into a ``datetime`` and back, so every capability,
client and the CLI read ``2026-01-02T03:04:05Z``, ``...+00:00``, fractional seconds
and a lowercase ``z`` the same way.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


def format_time(value: datetime) -> str:
    """RFC 3339 in UTC with a ``Z`` suffix, as Kubernetes writes timestamps."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_time(value: str | datetime) -> datetime:
    """``value`` (RFC 3339 text or a ``datetime``) as an aware ``datetime`` in UTC.

    A naive value is taken as UTC. ``ValueError`` says what was wrong with the text.
    """
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        text = value.strip()
        if text[-1:] in ("Z", "z"):
            text = text[:-1] + "+00:00"
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(
                f"{value!r} is not an RFC 3339 timestamp (e.g. 2026-01-02T03:04:05Z)"
            ) from None
    else:
        raise ValueError(f"a timestamp must be text, got {type(value).__name__}")
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def time_or_none(value: Any) -> datetime | None:
    """``value`` read as :func:`parse_time` reads it; ``None`` when it is missing or
    is not a timestamp (a manifest's optional times, read leniently)."""
    if not value:
        return None
    try:
        return parse_time(value)
    except ValueError:
        return None
