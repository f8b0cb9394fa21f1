"""Pods and events take the store's revision, as resources do: every write to a pod
or an event takes the next number of ``resource_revision`` and is journaled in
``resource_changes``, so their lists answer a point in the store's history and a
watch of them resumes from a resourceVersion exactly.

``resource_events`` gets a ``resource_version`` column. The pods and events already
stored are given the store's revision as it is (each was last written at or before
it; 1 for a store with no write yet), and when there are any, the journal is marked
compacted at that revision: their writes before the upgrade were never journaled,
so a watch resumed from an earlier version is answered 410 (the client lists again)
rather than missing them.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-12
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("resource_events") as batch:
        batch.add_column(
            sa.Column("resource_version", sa.Integer(), nullable=False, server_default="0")
        )
    bind = op.get_bind()
    pods = sa.table("pods", sa.column("resource_version", sa.Integer()))
    events = sa.table("resource_events", sa.column("resource_version", sa.Integer()))
    stored = sum(
        int(bind.scalar(sa.select(sa.func.count()).select_from(table)) or 0)
        for table in (pods, events)
    )
    if not stored:
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
    bind.execute(sa.update(pods).values(resource_version=at))
    bind.execute(sa.update(events).values(resource_version=at))


def downgrade() -> None:
    with op.batch_alter_table("resource_events") as batch:
        batch.drop_column("resource_version")
