"""CPU limits through Linux control groups, where the OS allows it.

A CPU *rate* limit (``cpu: "500m"``) is what Kubernetes enforces with the CFS
quota. Where this process may write to the cgroup CPU controller (v2 with the
``cpu`` controller enabled, or the v1 ``cpu`` hierarchy), each limited process
gets a group of its own with ``quota = limit x period``; its children inherit it.
Elsewhere the limit is recorded only.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

log = logging.getLogger(__name__)

PERIOD_US = 100_000


@lru_cache(maxsize=1)
def _root() -> tuple[Path, str] | None:
    """(folder for Ketch's groups, "v1" or "v2"), or None when CPU groups are unavailable."""
    candidates = []
    unified = Path("/sys/fs/cgroup")
    if (unified / "cgroup.controllers").exists():
        candidates.append((unified / "ketch", "v2"))
    for v1 in (Path("/sys/fs/cgroup/cpu"), Path("/sys/fs/cgroup/cpu,cpuacct")):
        if (v1 / "cpu.cfs_quota_us").exists():
            candidates.append((v1 / "ketch", "v1"))
    for folder, version in candidates:
        try:
            folder.mkdir(exist_ok=True)
            if version == "v2":
                controllers = (folder.parent / "cgroup.subtree_control").read_text()
                if "cpu" not in controllers.split():
                    (folder.parent / "cgroup.subtree_control").write_text("+cpu")
                (folder / "cgroup.subtree_control").write_text("+cpu")
            probe = folder / f"probe-{os.getpid()}"
            probe.mkdir(exist_ok=True)
            probe.rmdir()
            return folder, version
        except OSError:
            continue
    return None


def available() -> bool:
    return _root() is not None


def limit_cpu(pid: int, cores: float) -> Callable[[], None] | None:
    """Put ``pid`` in a group limited to ``cores`` CPUs; return the cleanup, or None."""
    found = _root()
    if found is None or cores <= 0:
        return None
    folder, version = found
    group = folder / f"task-{pid}-{uuid.uuid4().hex[:6]}"
    quota = max(1000, int(cores * PERIOD_US))
    try:
        group.mkdir()
        if version == "v2":
            (group / "cpu.max").write_text(f"{quota} {PERIOD_US}")
        else:
            (group / "cpu.cfs_period_us").write_text(str(PERIOD_US))
            (group / "cpu.cfs_quota_us").write_text(str(quota))
        (group / "cgroup.procs").write_text(str(pid))
    except OSError as exc:
        log.debug("cannot limit the CPU of %s: %s", pid, exc)
        _remove(group)
        return None
    return lambda: _remove(group)


def _remove(group: Path) -> None:
    try:
        group.rmdir()
    except OSError:
        pass  # still has processes (they end soon) or already gone
