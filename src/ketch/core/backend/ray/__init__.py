"""The Ray backend: every ProcessSpec runs on a node of a Ray cluster (see
:mod:`ketch.core.backend.ray.backend`). Importing this package imports Ray: the
composition root imports it only when ``KETCH_BACKEND=ray``."""

from __future__ import annotations

from ketch.core.backend.ray.backend import RayBackend, connect

__all__ = ["RayBackend", "connect"]
