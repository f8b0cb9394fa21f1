"""Pods: what runs for an object (a job's replicas, a batch Job's pods, a TrainJob's
nodes, an InferenceService's replicas, a pipeline's tasks), recorded by the
capabilities that run them and served as core/v1 ``Pod`` objects
(:mod:`ketch.core.store.pods`).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-11
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "pods",
        sa.Column("uid", sa.String(length=36), nullable=False),
        sa.Column("namespace", sa.String(length=63), nullable=False),
        sa.Column("name", sa.String(length=253), nullable=False),
        sa.Column("owner_api_version", sa.String(length=253), nullable=False),
        sa.Column("owner_kind", sa.String(length=63), nullable=False),
        sa.Column("owner_name", sa.String(length=253), nullable=False),
        sa.Column("owner_uid", sa.String(length=36), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("annotations", sa.JSON(), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("status", sa.JSON(), nullable=False),
        sa.Column("logs", sa.JSON(), nullable=False),
        sa.Column("deletion", sa.String(length=16), nullable=False),
        sa.Column("refusal", sa.Text(), nullable=False),
        sa.Column("resource_version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deletion_requested_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("uid"),
        sa.UniqueConstraint("namespace", "name", name="uq_pods_ns_name"),
    )
    op.create_index("ix_pods_owner_uid", "pods", ["owner_uid"])


def downgrade() -> None:
    op.drop_index("ix_pods_owner_uid", table_name="pods")
    op.drop_table("pods")
