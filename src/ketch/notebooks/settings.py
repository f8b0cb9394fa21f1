"""The notebook controller's settings, read from the server's environment as Kubeflow's
notebook controller reads its own: ``ENABLE_CULLING`` (``true`` turns the culler on;
off by default), ``CULL_IDLE_TIME`` (minutes without kernel activity before a notebook
is stopped; 1440) and ``IDLENESS_CHECK_PERIOD`` (minutes between two looks at a
notebook's kernels; 1). Minutes may be fractional (``0.05`` is three seconds), which
Kubeflow's whole minutes are not.

The names of Kubeflow's culler before 1.5 (``IDLE_TIME``, ``CULLING_CHECK_PERIOD``)
are not read: a server started with them and without the new names logs a warning
saying which to use (they are a common reason a notebook is culled after a day).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass

log = logging.getLogger("ketch.notebooks")

ENABLE = "ENABLE_CULLING"
IDLE_TIME = "CULL_IDLE_TIME"
CHECK_PERIOD = "IDLENESS_CHECK_PERIOD"
DEFAULT_IDLE_MINUTES = 1440.0
DEFAULT_CHECK_MINUTES = 1.0
_OLD_NAMES = {"IDLE_TIME": IDLE_TIME, "CULLING_CHECK_PERIOD": CHECK_PERIOD}


def _minutes(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        log.warning("%s=%r is not a number of minutes; using %g", name, raw, default)
        return default
    if value <= 0:
        log.warning("%s=%r must be more than 0 minutes; using %g", name, raw, default)
        return default
    return value


@dataclass(frozen=True)
class Culling:
    """When idle notebooks are stopped (see the module)."""

    enabled: bool = False
    idle_seconds: float = DEFAULT_IDLE_MINUTES * 60
    check_seconds: float = DEFAULT_CHECK_MINUTES * 60

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Culling:
        env = os.environ if env is None else env
        for old, new in _OLD_NAMES.items():
            if old in env and new not in env:
                log.warning(
                    "%s is the name Kubeflow's culler read before 1.5 and is ignored; set %s",
                    old,
                    new,
                )
        return cls(
            enabled=env.get(ENABLE, "").strip().lower() == "true",
            idle_seconds=_minutes(env, IDLE_TIME, DEFAULT_IDLE_MINUTES) * 60,
            check_seconds=_minutes(env, CHECK_PERIOD, DEFAULT_CHECK_MINUTES) * 60,
        )
