"""The crash-loop back-off of restarted replicas and containers."""

from __future__ import annotations

from ketch.core.workloads.backoff import Backoff


def test_backoff_delays_are_kubernetes() -> None:
    backoff = Backoff()
    assert [backoff.delay(n) for n in range(1, 8)] == [10, 20, 40, 80, 160, 300, 300]
    assert backoff.failures_after(5, ran_for=30) == 6
    assert backoff.failures_after(5, ran_for=600) == 1  # ran 10 minutes: forgotten
