"""The kind the API server itself serves, beside those of the capabilities: a
pipeline run as a resource. (``Kind`` and ``KindRegistry`` live in
:mod:`ketch.core.kinds`; they are named here too for the modules that import them
from the server.)"""

from __future__ import annotations

from ketch.core.kinds import Kind, KindRegistry

PIPELINE_RUN = Kind(
    "PipelineRun",
    "pipelines.ketch.dev",
    ("v1",),
    "pipelineruns",
    short_names=("run", "runs", "pr"),
)

__all__ = ["PIPELINE_RUN", "Kind", "KindRegistry"]
