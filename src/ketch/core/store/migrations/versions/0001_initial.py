"""Initial schema: resources and events, pipeline runs and tasks, lineage, task cache.

This revision predates the version folder per capability: it created core's
tables (resources, events) and the pipelines capability's (runs, tasks, lineage,
cache) together. It stays in core as the shared base every branch starts from:
core's own history (label ``core``) and each capability's (``pipelines``, and any
other capability's folder) have their first revision's ``down_revision = "0001"``.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "artifacts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(length=36), nullable=True),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("type", sa.String(length=128), nullable=False),
        sa.Column("uri", sa.Text(), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_artifacts_run", "artifacts", ["run_id"])
    op.create_index("ix_artifacts_uri", "artifacts", ["uri"])

    op.create_table(
        "cache_entries",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("pipeline_name", sa.String(length=256), nullable=False),
        sa.Column("task_name", sa.String(length=256), nullable=False),
        sa.Column("run_id", sa.String(length=36), nullable=False),
        sa.Column("outputs", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "executions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(length=36), nullable=False),
        sa.Column("task_id", sa.String(length=36), nullable=True),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("properties", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_executions_run", "executions", ["run_id"])

    op.create_table(
        "pipeline_runs",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("display_name", sa.String(length=256), nullable=False),
        sa.Column("pipeline_name", sa.String(length=256), nullable=False),
        sa.Column("namespace", sa.String(length=63), nullable=False),
        sa.Column("experiment_id", sa.String(length=36), nullable=True),
        sa.Column("pipeline_id", sa.String(length=36), nullable=True),
        sa.Column("pipeline_version_id", sa.String(length=36), nullable=True),
        sa.Column("recurring_run_id", sa.String(length=36), nullable=True),
        sa.Column("owner", sa.String(length=128), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("storage_state", sa.String(length=16), nullable=False),
        sa.Column("pipeline_spec", sa.JSON(), nullable=False),
        sa.Column("parameters", sa.JSON(), nullable=False),
        sa.Column("pipeline_root", sa.Text(), nullable=False),
        sa.Column("enable_caching", sa.Boolean(), nullable=True),
        sa.Column("outputs", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_pipeline_runs_created", "pipeline_runs", ["created_at"])
    op.create_index("ix_pipeline_runs_experiment", "pipeline_runs", ["experiment_id"])
    op.create_index("ix_pipeline_runs_state", "pipeline_runs", ["state"])

    op.create_table(
        "resource_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("resource_uid", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=63), nullable=False),
        sa.Column("namespace", sa.String(length=63), nullable=False),
        sa.Column("name", sa.String(length=253), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=128), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_resource_events_uid", "resource_events", ["resource_uid"])

    op.create_table(
        "resources",
        sa.Column("uid", sa.String(length=36), nullable=False),
        sa.Column("api_version", sa.String(length=253), nullable=False),
        sa.Column("kind", sa.String(length=63), nullable=False),
        sa.Column("namespace", sa.String(length=63), nullable=False),
        sa.Column("name", sa.String(length=253), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("resource_version", sa.Integer(), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("annotations", sa.JSON(), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("status", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("uid"),
        sa.UniqueConstraint("kind", "namespace", "name", name="uq_resources_kind_ns_name"),
    )
    op.create_index("ix_resources_kind_ns", "resources", ["kind", "namespace"])

    op.create_table(
        "lineage_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("execution_id", sa.Integer(), nullable=False),
        sa.Column("artifact_id", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(length=8), nullable=False),
        sa.Column("key", sa.String(length=256), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["artifact_id"], ["artifacts.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["execution_id"], ["executions.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_lineage_events_artifact", "lineage_events", ["artifact_id"])
    op.create_index("ix_lineage_events_execution", "lineage_events", ["execution_id"])

    op.create_table(
        "pipeline_tasks",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("run_id", sa.String(length=36), nullable=False),
        sa.Column("path", sa.String(length=1024), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("display_name", sa.String(length=256), nullable=False),
        sa.Column("parent_path", sa.String(length=1024), nullable=True),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("cached", sa.Boolean(), nullable=False),
        sa.Column("cache_key", sa.String(length=64), nullable=True),
        sa.Column("inputs", sa.JSON(), nullable=False),
        sa.Column("outputs", sa.JSON(), nullable=False),
        sa.Column("log_path", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["run_id"], ["pipeline_runs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("run_id", "path", name="uq_pipeline_tasks_run_path"),
    )
    op.create_index("ix_pipeline_tasks_run", "pipeline_tasks", ["run_id"])


def downgrade() -> None:
    op.drop_table("pipeline_tasks")
    op.drop_table("lineage_events")
    op.drop_table("resources")
    op.drop_table("resource_events")
    op.drop_table("pipeline_runs")
    op.drop_table("executions")
    op.drop_table("cache_entries")
    op.drop_table("artifacts")
