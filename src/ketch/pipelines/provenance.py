"""What produced an artifact of a pipeline run: :class:`~ketch.core.provenance.Provenance`
over the run's ML Metadata (its artifacts, executions and events).

An artifact URI a task wrote (an ``OUTPUT`` event of its execution) names that task,
its run (the namespace, the pipeline, the run's parameters), the task's own input
parameters and the artifacts it read (its ``INPUT`` events), as the model registry
records for the models registered from it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from ketch.core.provenance import Origin, uri_forms
from ketch.core.store.db import Database
from ketch.pipelines.tables import (
    MIGRATIONS,
    ArtifactRow,
    ExecutionRow,
    LineageEventRow,
    PipelineRunRow,
    PipelineTaskRow,
)

KIND = "PipelineRun"


class PipelineProvenance:
    """The pipelines' answer to "what made this URI?" (a service with nothing to run)."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def start(self) -> None:
        return None

    def stop(self) -> None:
        return None

    def origin(self, uri: str) -> Origin | None:
        if not uri:
            return None
        self.database.migrate([MIGRATIONS])
        with self.database.session(readonly=True) as s:
            made = s.execute(
                select(ArtifactRow, ExecutionRow)
                .join(LineageEventRow, LineageEventRow.artifact_id == ArtifactRow.id)
                .join(ExecutionRow, ExecutionRow.id == LineageEventRow.execution_id)
                .where(ArtifactRow.uri.in_(uri_forms(uri)), LineageEventRow.type == "OUTPUT")
                .order_by(LineageEventRow.id.desc())
                .limit(1)
            ).first()
            if made is None:
                return None
            artifact, execution = made
            run = s.get(PipelineRunRow, execution.run_id)
            if run is None:
                return None
            task = s.get(PipelineTaskRow, execution.task_id) if execution.task_id else None
            read = s.execute(
                select(LineageEventRow.key, ArtifactRow)
                .join(ArtifactRow, ArtifactRow.id == LineageEventRow.artifact_id)
                .where(
                    LineageEventRow.execution_id == execution.id,
                    LineageEventRow.type == "INPUT",
                )
                .order_by(LineageEventRow.id)
            ).all()
            inputs: dict[str, list[dict[str, Any]]] = {}
            for key, row in read:
                inputs.setdefault(key, []).append(
                    {"name": row.name, "type": row.type, "uri": row.uri, "runId": row.run_id}
                )
            task_inputs = (task.inputs or {}) if task is not None else {}
            return Origin(
                kind=KIND,
                namespace=run.namespace,
                name=run.id,
                task=task.path if task is not None else str(execution.properties.get("path", "")),
                display_name=run.display_name,
                inputs=inputs,
                parameters=dict(task_inputs.get("parameters") or {}),
                detail={
                    "pipeline": run.pipeline_name,
                    "runParameters": dict(run.parameters or {}),
                    "runState": run.state,
                    "artifact": {"name": artifact.name, "type": artifact.type, "uri": artifact.uri},
                    "created": run.created_at.isoformat() if run.created_at else None,
                },
            )
