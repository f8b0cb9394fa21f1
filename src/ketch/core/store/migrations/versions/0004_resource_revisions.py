"""One revision for the whole store and a change journal, as Kubernetes has them.

``resource_revision`` holds the store's revision (one row): every write to a resource
takes the next number, which becomes its ``metadata.resourceVersion``.
``resource_changes`` journals each write (ADDED, MODIFIED, DELETED and the object as
written), so a watch can resume from a resourceVersion.

A database from before keeps its objects and their resourceVersions (each object's
own count of its writes). The revision starts above every one of them and the journal
is empty, marked compacted at that revision: a watch resumed from a version issued
before the upgrade is answered 410 (the client lists again), and the next write to
any object gives it a number no object had.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-10
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    counter = op.create_table(
        "resource_revision",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.Column("compacted", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "resource_changes",
        sa.Column("revision", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("kind", sa.String(length=63), nullable=False),
        sa.Column("namespace", sa.String(length=63), nullable=False),
        sa.Column("name", sa.String(length=253), nullable=False),
        sa.Column("uid", sa.String(length=36), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("object", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("revision"),
    )
    op.create_index("ix_resource_changes_kind_revision", "resource_changes", ["kind", "revision"])
    resources = sa.table("resources", sa.column("resource_version", sa.Integer()))
    highest = op.get_bind().scalar(sa.select(sa.func.max(resources.c.resource_version))) or 0
    start = int(highest) + 1 if highest else 0  # a new store starts at 0, as etcd does
    op.bulk_insert(counter, [{"id": 1, "revision": start, "compacted": start}])


def downgrade() -> None:
    op.drop_index("ix_resource_changes_kind_revision", table_name="resource_changes")
    op.drop_table("resource_changes")
    op.drop_table("resource_revision")
