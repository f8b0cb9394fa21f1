"""The pipelines capability's tables: pipeline runs and tasks, lineage (artifacts,
executions and the events between them, as ML Metadata models them), the cross-run
task cache, and the KFP catalog (pipelines and their versions, experiments,
recurring runs, run fields).

They share core's declarative ``Base`` (one metadata, one database). Any change
here needs an Alembic migration in this capability's version folder,
:data:`MIGRATIONS` (``migrations/versions``, branch ``pipelines``). The tables were
first created by core's base revision ``0001`` (pipeline runs, tasks, lineage,
cache) and by ``0002`` here (the KFP catalog); ``0008`` gave runs their revision.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from ketch.core.store.models import Base

#: This capability's Alembic version folder (its ``Capability.migrations``): every
#: caller that migrates the store for pipelines passes it to ``Database.migrate``.
MIGRATIONS = Path(__file__).resolve().parent / "migrations" / "versions"


class PipelineRunRow(Base):
    __tablename__ = "pipeline_runs"
    __table_args__ = (
        Index("ix_pipeline_runs_created", "created_at"),
        Index("ix_pipeline_runs_experiment", "experiment_id"),
        Index("ix_pipeline_runs_state", "state"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(256))
    pipeline_name: Mapped[str] = mapped_column(String(256))
    namespace: Mapped[str] = mapped_column(String(63), default="default")
    experiment_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    pipeline_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    pipeline_version_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    recurring_run_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    # Who executes the run: "server" (resumed by the server after a restart) or
    # "process:<host>:<pid>" (a `ketch run`; marked failed if that process is gone).
    owner: Mapped[str | None] = mapped_column(String(128), nullable=True)
    state: Mapped[str] = mapped_column(String(16))  # KFP run states
    storage_state: Mapped[str] = mapped_column(String(16), default="AVAILABLE")
    pipeline_spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    pipeline_root: Mapped[str] = mapped_column(Text)
    enable_caching: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    outputs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # The store's revision at the last write that changed what the run's PipelineRun
    # manifest shows (its metadata.resourceVersion; see ketch.pipelines.manifests).
    resource_version: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class PipelineTaskRow(Base):
    """One node of a run: a container/importer task, a DAG, a loop or an iteration."""

    __tablename__ = "pipeline_tasks"
    __table_args__ = (
        UniqueConstraint("run_id", "path", name="uq_pipeline_tasks_run_path"),
        Index("ix_pipeline_tasks_run", "run_id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("pipeline_runs.id", ondelete="CASCADE"))
    path: Mapped[str] = mapped_column(String(1024))  # "for-loop-2[3]/inc"
    name: Mapped[str] = mapped_column(String(256))  # task name in its DAG ("inc")
    display_name: Mapped[str] = mapped_column(String(256))
    parent_path: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    type: Mapped[str] = mapped_column(String(16))  # container | importer | dag | loop | iteration
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    cached: Mapped[bool] = mapped_column(Boolean, default=False)
    cache_key: Mapped[str | None] = mapped_column(String(64), nullable=True)
    inputs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    outputs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    log_path: Mapped[str | None] = mapped_column(Text, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class ArtifactRow(Base):
    """An ML Metadata artifact: a typed URI with metadata."""

    __tablename__ = "artifacts"
    __table_args__ = (Index("ix_artifacts_uri", "uri"), Index("ix_artifacts_run", "run_id"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    name: Mapped[str] = mapped_column(String(256))
    type: Mapped[str] = mapped_column(String(128))  # "system.Dataset"
    uri: Mapped[str] = mapped_column(Text)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    state: Mapped[str] = mapped_column(String(16), default="LIVE")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ExecutionRow(Base):
    """An ML Metadata execution: one run of a task (or a DAG)."""

    __tablename__ = "executions"
    __table_args__ = (Index("ix_executions_run", "run_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(36))
    task_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    type: Mapped[str] = mapped_column(
        String(64)
    )  # system.ContainerExecution, system.DAGExecution, ...
    state: Mapped[str] = mapped_column(String(16))  # NEW RUNNING COMPLETE FAILED CACHED CANCELED
    properties: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class LineageEventRow(Base):
    """An ML Metadata event: an execution used (INPUT) or made (OUTPUT) an artifact."""

    __tablename__ = "lineage_events"
    __table_args__ = (
        Index("ix_lineage_events_execution", "execution_id"),
        Index("ix_lineage_events_artifact", "artifact_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    execution_id: Mapped[int] = mapped_column(ForeignKey("executions.id", ondelete="CASCADE"))
    artifact_id: Mapped[int] = mapped_column(ForeignKey("artifacts.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(8))  # INPUT | OUTPUT
    key: Mapped[str] = mapped_column(String(256))  # input/output name
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class CacheEntryRow(Base):
    """A finished task's outputs, found again by its cache key in any later run."""

    __tablename__ = "cache_entries"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    pipeline_name: Mapped[str] = mapped_column(String(256))
    task_name: Mapped[str] = mapped_column(String(256))
    run_id: Mapped[str] = mapped_column(String(36))
    outputs: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


# ---------------------------------------------------------------- KFP catalog
#
# What the KFP v2beta1 API keeps beside runs: pipelines and their versions,
# experiments, recurring runs, and the few run fields KFP has that a run row
# lacks. Migration 0002 (migrations/versions/0002_kfp_catalog.py) creates these
# tables and indexes.


class KfpPipelineRow(Base):
    """A KFP pipeline: a named group of pipeline versions."""

    __tablename__ = "kfp_pipelines"
    __table_args__ = (
        UniqueConstraint("namespace", "name", name="uq_kfp_pipelines_ns_name"),
        Index("ix_kfp_pipelines_created", "created_at", "id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(256))
    display_name: Mapped[str] = mapped_column(String(256))
    description: Mapped[str] = mapped_column(Text, default="")
    namespace: Mapped[str] = mapped_column(String(63), default="default")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class KfpPipelineVersionRow(Base):
    """One version of a KFP pipeline: its PipelineSpec (and platform spec, if any)."""

    __tablename__ = "kfp_pipeline_versions"
    __table_args__ = (
        UniqueConstraint("pipeline_id", "name", name="uq_kfp_pipeline_versions_pipeline_name"),
        Index("ix_kfp_pipeline_versions_pipeline_created", "pipeline_id", "created_at", "id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    pipeline_id: Mapped[str] = mapped_column(ForeignKey("kfp_pipelines.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(256))
    display_name: Mapped[str] = mapped_column(String(256))
    description: Mapped[str] = mapped_column(Text, default="")
    pipeline_spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    platform_spec: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    package_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    code_source_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class KfpExperimentRow(Base):
    """A KFP experiment: a named group of runs in a namespace."""

    __tablename__ = "kfp_experiments"
    __table_args__ = (
        UniqueConstraint("namespace", "display_name", name="uq_kfp_experiments_ns_name"),
        Index("ix_kfp_experiments_created", "created_at", "id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(256))
    description: Mapped[str] = mapped_column(Text, default="")
    namespace: Mapped[str] = mapped_column(String(63), default="default")
    storage_state: Mapped[str] = mapped_column(String(16), default="AVAILABLE")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class KfpRecurringRunRow(Base):
    """A KFP recurring run: a pipeline, its arguments and a cron or periodic trigger.

    ``last_scheduled_at`` is the schedule time of the newest run fired;
    ``pending_since`` is set while a fire is committed but its run not yet
    created, so a restart finishes that fire instead of repeating or losing it.
    """

    __tablename__ = "kfp_recurring_runs"
    __table_args__ = (
        Index("ix_kfp_recurring_runs_created", "created_at", "id"),
        Index("ix_kfp_recurring_runs_mode", "mode"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(256))
    description: Mapped[str] = mapped_column(Text, default="")
    namespace: Mapped[str] = mapped_column(String(63), default="default")
    experiment_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    pipeline_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    pipeline_version_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    pipeline_spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    pipeline_root: Mapped[str | None] = mapped_column(Text, nullable=True)
    service_account: Mapped[str] = mapped_column(String(256), default="")
    max_concurrency: Mapped[int] = mapped_column(Integer, default=1)
    cron: Mapped[str | None] = mapped_column(String(256), nullable=True)
    interval_second: Mapped[int | None] = mapped_column(Integer, nullable=True)
    start_time: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    end_time: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    mode: Mapped[str] = mapped_column(String(16), default="ENABLE")  # ENABLE | DISABLE
    no_catchup: Mapped[bool] = mapped_column(Boolean, default=False)
    last_scheduled_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True
    )
    pending_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class KfpRunMetaRow(Base):
    """KFP run fields a ``pipeline_runs`` row does not hold (stored only when set)."""

    __tablename__ = "kfp_run_meta"

    run_id: Mapped[str] = mapped_column(
        ForeignKey("pipeline_runs.id", ondelete="CASCADE"), primary_key=True
    )
    description: Mapped[str] = mapped_column(Text, default="")
    service_account: Mapped[str] = mapped_column(String(256), default="")
    scheduled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


# Indexes on pipeline_runs that serve the KFP list pages (ordered by creation
# time within a namespace, an experiment or a recurring run).
Index("ix_pipeline_runs_created_id", PipelineRunRow.created_at, PipelineRunRow.id)
Index(
    "ix_pipeline_runs_ns_created",
    PipelineRunRow.namespace,
    PipelineRunRow.created_at,
    PipelineRunRow.id,
)
Index(
    "ix_pipeline_runs_experiment_created",
    PipelineRunRow.experiment_id,
    PipelineRunRow.created_at,
    PipelineRunRow.id,
)
Index("ix_pipeline_runs_recurring_state", PipelineRunRow.recurring_run_id, PipelineRunRow.state)
