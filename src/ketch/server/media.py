"""``Accept`` headers, as the Kubernetes API server reads them: discovery, the
OpenAPI documents and Tables each pick what they answer from the same ranges."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MediaRange:
    """One entry of an ``Accept`` header: ``type/subtype`` and its parameters."""

    type: str
    params: dict[str, str]
    quality: float = 1.0

    def matches(self, media_type: str) -> bool:
        """Whether this range allows ``media_type`` (``*/*`` and ``application/*`` too)."""
        if self.type in ("*/*", media_type):
            return True
        major = media_type.split("/", 1)[0]
        return self.type == f"{major}/*"


def parse_accept(header: str | None) -> list[MediaRange]:
    """The ranges of an ``Accept`` header, most preferred first (by ``q``, then order);
    ranges with ``q=0`` (or a ``q`` that is no number) are left out and a missing
    header accepts anything."""
    if not header or not header.strip():
        return [MediaRange("*/*", {})]
    ranges: list[MediaRange] = []
    for entry in header.split(","):
        parts = [p.strip() for p in entry.split(";")]
        if not parts[0]:
            continue
        params: dict[str, str] = {}
        for part in parts[1:]:
            key, _, value = part.partition("=")
            if key.strip():
                params[key.strip().lower()] = value.strip().strip('"')
        quality = 1.0
        if "q" in params:
            try:
                quality = float(params.pop("q"))
            except ValueError:
                quality = 0.0
        if quality > 0:
            ranges.append(MediaRange(parts[0].lower(), params, quality))
    return sorted(ranges, key=lambda r: -r.quality)  # sorted() is stable
