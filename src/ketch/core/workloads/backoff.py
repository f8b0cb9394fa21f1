"""The delay before a failed container is started again, as the kubelet's crash-loop
back-off: 10 s after a failure, doubling with each further failure up to 5 minutes,
and forgotten once the container has run for 10 minutes.

A gang's replicas (restartPolicy ``OnFailure``, ``ExitCode``, ``Always``: training
jobs, TrainJobs) and the containers of a batch Job's pods (``OnFailure``) are
restarted after it. The base
and the cap may be shortened for tests through ``KETCH_RESTART_BACKOFF_BASE`` and
``KETCH_RESTART_BACKOFF_CAP`` (seconds, read when a controller is created); the
defaults are Kubernetes'.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

BASE = 10.0
CAP = 300.0
RESET_AFTER = 600.0


def _seconds(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        return default
    return value if value >= 0 else default


@dataclass(frozen=True)
class Backoff:
    base: float = BASE
    cap: float = CAP
    reset_after: float = RESET_AFTER

    @classmethod
    def from_env(cls) -> Backoff:
        return cls(
            base=_seconds("KETCH_RESTART_BACKOFF_BASE", BASE),
            cap=_seconds("KETCH_RESTART_BACKOFF_CAP", CAP),
        )

    def delay(self, failures: int) -> float:
        """Seconds to wait after the ``failures``-th failure in a row (1, 2, ...)."""
        return min(self.base * 2 ** max(0, failures - 1), self.cap)

    def failures_after(self, failures: int, ran_for: float) -> int:
        """The count of failures in a row once a run of ``ran_for`` seconds failed."""
        return 1 if ran_for >= self.reset_after else failures + 1


def describe(seconds: float) -> str:
    """``10s``, ``2m40s``: a delay as the kubelet writes it."""
    whole = round(seconds)
    if seconds < 1:
        return f"{seconds:.3g}s"
    minutes, secs = divmod(whole, 60)
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"
