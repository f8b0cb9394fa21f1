"""The kind the pipelines capability serves, ``PipelineRun`` (pipelines.ketch.dev/v1),
and the labels and annotation its objects carry: light to import (the CLI names the
kind without loading the store)."""

from __future__ import annotations

from ketch.core.kinds import Column, Kind

PIPELINE_RUN = Kind(
    "PipelineRun",
    "pipelines.ketch.dev",
    ("v1",),
    "pipelineruns",
    short_names=("run", "runs", "pr"),
    columns=(
        Column("Display Name", ".metadata.annotations.pipelines\\.ketch\\.dev/display-name"),
        Column("State", ".status.state"),
    ),
    categories=("all", "kubeflow"),
)

DISPLAY_NAME = "pipelines.ketch.dev/display-name"
LABEL_PIPELINE = "pipelines.ketch.dev/pipeline"
LABEL_STATE = "pipelines.ketch.dev/state"
LABEL_EXPERIMENT = "pipelines.ketch.dev/experiment-id"
LABEL_RECURRING = "pipelines.ketch.dev/recurring-run-id"
