"""Prometheus metrics of the model server, in the text exposition format.

Cheap on the hot path: a counter is a dict increment, a histogram observation a
``bisect`` and two additions. Each worker process keeps its own numbers.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable

LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)

Labels = tuple[tuple[str, str], ...]


class Histogram:
    __slots__ = ("bounds", "counts", "sum", "count")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1


def _labels(labels: Labels, extra: str = "") -> str:
    parts = [f'{k}="{_escape(v)}"' for k, v in labels]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


class Metrics:
    """Request counts, latencies, batch sizes, queue depth and rejections per model."""

    def __init__(self) -> None:
        self.requests: dict[Labels, int] = {}
        self.latency: dict[Labels, Histogram] = {}
        self.batch_size: dict[Labels, Histogram] = {}
        self.rejected: dict[Labels, int] = {}
        self._gauges: dict[str, Callable[[], dict[str, int]]] = {}

    def observe_request(self, model: str, protocol: str, code: int, seconds: float) -> None:
        key = (("model", model), ("protocol", protocol), ("code", str(code)))
        self.requests[key] = self.requests.get(key, 0) + 1
        lkey = (("model", model), ("protocol", protocol))
        histogram = self.latency.get(lkey)
        if histogram is None:
            histogram = self.latency[lkey] = Histogram(LATENCY_BUCKETS)
        histogram.observe(seconds)

    def observe_batch(self, model: str, size: int) -> None:
        key = (("model", model),)
        histogram = self.batch_size.get(key)
        if histogram is None:
            histogram = self.batch_size[key] = Histogram(BATCH_BUCKETS)
        histogram.observe(size)

    def observe_rejected(self, model: str) -> None:
        key = (("model", model),)
        self.rejected[key] = self.rejected.get(key, 0) + 1

    def gauge(self, name: str, read: Callable[[], dict[str, int]]) -> None:
        """Register a gauge read at scrape time: ``read()`` gives a value per model."""
        self._gauges[name] = read

    def render(self) -> bytes:
        lines: list[str] = []
        lines += _counter(
            "ketch_serving_requests_total", "Inference requests by model, protocol and status code.",
            self.requests,
        )  # fmt: skip
        lines += _histograms(
            "ketch_serving_request_duration_seconds", "Inference request latency.", self.latency
        )
        lines += _histograms(
            "ketch_serving_batch_size", "Requests (rows) per model call.", self.batch_size
        )
        lines += _counter(
            "ketch_serving_rejected_total", "Requests refused with 503 (queue full).", self.rejected
        )
        for name, read in self._gauges.items():
            lines.append(f"# HELP {name} Requests admitted and not yet answered, per model.")
            lines.append(f"# TYPE {name} gauge")
            for model, value in sorted(read().items()):
                lines.append(f'{name}{{model="{_escape(model)}"}} {value}')
        return ("\n".join(lines) + "\n").encode()


def _counter(name: str, help_text: str, values: dict[Labels, int]) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} counter"]
    lines += [f"{name}{_labels(k)} {v}" for k, v in sorted(values.items())]
    return lines


def _histograms(name: str, help_text: str, values: dict[Labels, Histogram]) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} histogram"]
    for labels, histogram in sorted(values.items()):
        cumulative = 0
        for bound, count in zip(histogram.bounds, histogram.counts, strict=False):
            cumulative += count
            le = 'le="' + _number(bound) + '"'
            lines.append(f"{name}_bucket{_labels(labels, le)} {cumulative}")
        inf = 'le="+Inf"'
        lines.append(f"{name}_bucket{_labels(labels, inf)} {histogram.count}")
        lines.append(f"{name}_sum{_labels(labels)} {_number(histogram.sum)}")
        lines.append(f"{name}_count{_labels(labels)} {histogram.count}")
    return lines
