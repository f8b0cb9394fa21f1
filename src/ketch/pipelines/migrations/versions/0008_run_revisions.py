"""PipelineRuns take the store's revision, as resources do: every write that changes
what a run's manifest shows takes the next number of ``resource_revision`` (core's
``0004``) and journals the run in ``resource_changes``, so a watch of PipelineRuns
resumes from a resourceVersion exactly.

``pipeline_runs`` gets a ``resource_version`` column. The runs already stored are
given the store's revision as it is (each was last written at or before it; 1 for a
store with no write yet), and when there are any, the journal is marked compacted at
that revision: their writes before the upgrade were never journaled, so a watch
resumed from an earlier version is answered 410 (the client lists again) rather than
missing them.

Revision ID: 0008
Revises: 0002
Create Date: 2026-12-12
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = "0004"


def upgrade() -> None:
    # a plain ADD COLUMN (SQLite too): the table is not copied, its tasks keep it
    op.add_column(
        "pipeline_runs",
        sa.Column("resource_version", sa.BigInteger(), nullable=False, server_default="0"),
    )
    bind = op.get_bind()
    runs = sa.table("pipeline_runs", sa.column("resource_version", sa.BigInteger()))
    if not bind.scalar(sa.select(sa.func.count()).select_from(runs)):
        return
    counter = sa.table(
        "resource_revision",
        sa.column("id", sa.Integer()),
        sa.column("revision", sa.BigInteger()),
        sa.column("compacted", sa.BigInteger()),
    )
    current = bind.scalar(sa.select(counter.c.revision).where(counter.c.id == 1))
    at = max(int(current or 0), 1)
    if current is None:
        op.bulk_insert(counter, [{"id": 1, "revision": at, "compacted": at}])
    else:
        bind.execute(sa.update(counter).where(counter.c.id == 1).values(revision=at, compacted=at))
    bind.execute(sa.update(runs).values(resource_version=at))


def downgrade() -> None:
    op.drop_column("pipeline_runs", "resource_version")  # not a copy of the table
