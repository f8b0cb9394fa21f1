"""Ketch: Kubeflow's capabilities from one command, on one machine or a Ray cluster."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:  # pragma: no cover
    from ketch.pipelines.client import Run


def run(pipeline: Any, arguments: dict[str, Any] | None = None, **options: Any) -> Run:
    """Run a KFP pipeline locally and wait for it; see :func:`ketch.pipelines.client.run`."""
    from ketch.pipelines.client import run as _run

    return _run(pipeline, arguments=arguments, **options)


__all__ = ["__version__", "run"]
