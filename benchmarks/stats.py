"""What the benchmarks share: how they summarize their samples."""

from __future__ import annotations


def percentile(values: list[float], q: float) -> float:
    """The sample at the ``q``-th percentile of ``values`` (nearest rank)."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]
