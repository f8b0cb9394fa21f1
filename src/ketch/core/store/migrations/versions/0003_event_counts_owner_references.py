"""Events are aggregated as Kubernetes aggregates them: a repeat of the same event
about the same object raises its ``count`` and ``last_seen_at`` instead of adding a row.
Resources keep ``metadata.ownerReferences`` (a Katib Suggestion names its Experiment).

Core's branch: this revision follows the shared base ``0001`` directly. (It once
followed ``0002``, the KFP catalog, in a single line; that revision is now the first
of the ``pipelines`` branch, and a database stamped ``0003`` from then is given its
``0002`` row when the pipelines folder is migrated: see that revision.)

Revision ID: 0003
Revises: 0001
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = ("core",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("resources") as batch:
        batch.add_column(sa.Column("owner_references", sa.JSON(), nullable=True))
    with op.batch_alter_table("resource_events") as batch:
        batch.add_column(sa.Column("count", sa.Integer(), nullable=False, server_default="1"))
        batch.add_column(sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("resource_events") as batch:
        batch.drop_column("last_seen_at")
        batch.drop_column("count")
    with op.batch_alter_table("resources") as batch:
        batch.drop_column("owner_references")
