"""Replica counts from requests in flight (``scaleMetric: concurrency``).

Scaling up follows the observed concurrency at once: ``ceil(in flight /
scaleTarget)``, counting requests waiting for a replica. Scaling down waits:
the count is the largest recommendation of the last ``window`` seconds (the
Knative stable window, annotation ``autoscaling.knative.dev/window``). With
``minReplicas: 0`` a revision idle for a whole window goes to zero replicas,
and a request arriving at zero brings one back.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field

from ketch.serving.components import Scaling
from ketch.serving.router import RevisionStats


@dataclass
class Autoscaler:
    """Recommendations for one revision."""

    history: deque[tuple[float, int]] = field(default_factory=deque)

    def desired(
        self, scaling: Scaling, stats: RevisionStats | None, current: int, now: float | None = None
    ) -> int:
        now = time.monotonic() if now is None else now
        if stats is None:
            observed = 0.0
            pending = 0
            idle = float("inf")
        else:
            observed = max(stats.average_inflight, float(stats.inflight))
            pending = stats.pending
            idle = stats.idle_for
        if scaling.metric == "concurrency":
            want = math.ceil((observed + pending) / scaling.target - 1e-9)
        else:  # other metrics are not measured locally: hold the current count
            want = current
        if pending and want < 1:
            want = 1
        self.history.append((now, want))
        while self.history and self.history[0][0] < now - scaling.window:
            self.history.popleft()
        recommended = max(w for _, w in self.history)
        if recommended == 0 and idle < scaling.window:
            recommended = max(current, 1) if current else 0
        return max(scaling.min_replicas, min(scaling.max_replicas, recommended))
