"""GPU requests on this machine: ``nvidia.com/gpu`` in a container's limits (or
requests) are counted against the NVIDIA GPUs the host has.

The local backend does not schedule GPUs. A job asking for more than the machine
has still runs (on the CPU, when there is no GPU at all), and its controller
records a Warning event saying so, rather than ignoring the request silently.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from pathlib import Path

from ketch.core.backend import parse_cpu
from ketch.core.errors import KetchError
from ketch.training.spec import Container

GPU = "nvidia.com/gpu"
REASON = "GPUNotAvailable"
_DEVICE = re.compile(r"nvidia\d+")


@functools.cache
def host_gpus() -> int:
    """How many NVIDIA GPUs this machine has (its driver's device list)."""
    driver = Path("/proc/driver/nvidia/gpus")
    try:
        found = sum(1 for _ in driver.iterdir())
    except OSError:
        found = 0
    if found:
        return found
    try:
        return sum(1 for p in Path("/dev").iterdir() if _DEVICE.fullmatch(p.name))
    except OSError:
        return 0


def requested(container: Container) -> float:
    """The GPUs ``container`` asks for (its limit, else its request; 0 for none)."""
    resources = container.resources
    value = resources.limits.get(GPU, resources.requests.get(GPU))
    if value is None:
        return 0.0
    try:
        return parse_cpu(value)  # a plain count: "1", 2
    except KetchError:
        return 0.0


def warning(requests: Iterable[tuple[str, float]], available: int | None = None) -> str | None:
    """The Warning to record when ``requests`` (``(who, gpus)``) ask for GPUs this
    machine does not have; ``None`` when they fit (or ask for none)."""
    asked = [(who, count) for who, count in requests if count > 0]
    if not asked:
        return None
    have = host_gpus() if available is None else available
    total = sum(count for _who, count in asked)
    if total <= have:
        return None
    who = ", ".join(f"{name} ({count:g})" for name, count in asked[:5])
    more = f" and {len(asked) - 5} more" if len(asked) > 5 else ""
    if have == 0:
        return (
            f"{GPU} requested by {who}{more} but this machine has no NVIDIA GPU; "
            "the job runs on the CPU"
        )
    return (
        f"{GPU} requested by {who}{more}: {total:g} in all, but this machine has {have}; "
        "the processes share the GPUs there are"
    )
