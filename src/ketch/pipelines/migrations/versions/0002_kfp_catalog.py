"""KFP catalog: pipelines, pipeline versions, experiments, recurring runs, run fields;
indexes on pipeline_runs for the KFP list pages.

The first revision of the ``pipelines`` branch, on core's shared base ``0001``
(which created the pipeline run, task, lineage and cache tables).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = ("pipelines",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Before the store had a version folder per capability, this revision sat in
    # one line between core's 0001 and 0003: a database stamped 0003 alone (from
    # then) has these tables already, though core's 0003 now follows 0001 directly.
    # Such a database only needs this revision recorded, not run again.
    if sa.inspect(op.get_bind()).has_table("kfp_pipelines"):
        return
    op.create_table(
        "kfp_pipelines",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("display_name", sa.String(length=256), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("namespace", sa.String(length=63), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("namespace", "name", name="uq_kfp_pipelines_ns_name"),
    )
    op.create_index("ix_kfp_pipelines_created", "kfp_pipelines", ["created_at", "id"])

    op.create_table(
        "kfp_pipeline_versions",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("pipeline_id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("display_name", sa.String(length=256), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("pipeline_spec", sa.JSON(), nullable=False),
        sa.Column("platform_spec", sa.JSON(), nullable=True),
        sa.Column("package_url", sa.Text(), nullable=True),
        sa.Column("code_source_url", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["pipeline_id"], ["kfp_pipelines.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("pipeline_id", "name", name="uq_kfp_pipeline_versions_pipeline_name"),
    )
    op.create_index(
        "ix_kfp_pipeline_versions_pipeline_created",
        "kfp_pipeline_versions",
        ["pipeline_id", "created_at", "id"],
    )

    op.create_table(
        "kfp_experiments",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("display_name", sa.String(length=256), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("namespace", sa.String(length=63), nullable=False),
        sa.Column("storage_state", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("namespace", "display_name", name="uq_kfp_experiments_ns_name"),
    )
    op.create_index("ix_kfp_experiments_created", "kfp_experiments", ["created_at", "id"])

    op.create_table(
        "kfp_recurring_runs",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("display_name", sa.String(length=256), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("namespace", sa.String(length=63), nullable=False),
        sa.Column("experiment_id", sa.String(length=36), nullable=True),
        sa.Column("pipeline_id", sa.String(length=36), nullable=True),
        sa.Column("pipeline_version_id", sa.String(length=36), nullable=True),
        sa.Column("pipeline_spec", sa.JSON(), nullable=False),
        sa.Column("parameters", sa.JSON(), nullable=False),
        sa.Column("pipeline_root", sa.Text(), nullable=True),
        sa.Column("service_account", sa.String(length=256), nullable=False),
        sa.Column("max_concurrency", sa.Integer(), nullable=False),
        sa.Column("cron", sa.String(length=256), nullable=True),
        sa.Column("interval_second", sa.Integer(), nullable=True),
        sa.Column("start_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("end_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("no_catchup", sa.Boolean(), nullable=False),
        sa.Column("last_scheduled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("pending_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_kfp_recurring_runs_created", "kfp_recurring_runs", ["created_at", "id"])
    op.create_index("ix_kfp_recurring_runs_mode", "kfp_recurring_runs", ["mode"])

    op.create_table(
        "kfp_run_meta",
        sa.Column("run_id", sa.String(length=36), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("service_account", sa.String(length=256), nullable=False),
        sa.Column("scheduled_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["run_id"], ["pipeline_runs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id"),
    )

    op.create_index("ix_pipeline_runs_created_id", "pipeline_runs", ["created_at", "id"])
    op.create_index(
        "ix_pipeline_runs_ns_created", "pipeline_runs", ["namespace", "created_at", "id"]
    )
    op.create_index(
        "ix_pipeline_runs_experiment_created",
        "pipeline_runs",
        ["experiment_id", "created_at", "id"],
    )
    op.create_index(
        "ix_pipeline_runs_recurring_state", "pipeline_runs", ["recurring_run_id", "state"]
    )


def downgrade() -> None:
    op.drop_index("ix_pipeline_runs_recurring_state", table_name="pipeline_runs")
    op.drop_index("ix_pipeline_runs_experiment_created", table_name="pipeline_runs")
    op.drop_index("ix_pipeline_runs_ns_created", table_name="pipeline_runs")
    op.drop_index("ix_pipeline_runs_created_id", table_name="pipeline_runs")
    op.drop_table("kfp_run_meta")
    op.drop_table("kfp_recurring_runs")
    op.drop_table("kfp_experiments")
    op.drop_table("kfp_pipeline_versions")
    op.drop_table("kfp_pipelines")
