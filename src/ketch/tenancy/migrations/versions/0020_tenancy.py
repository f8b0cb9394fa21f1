"""Tenancy: users, API tokens, browser sessions, failed sign-ins, the audit log and
the server's keys. The first revision of the ``tenancy`` branch, on core's ``0001``.

Revision ID: 0020
Revises: 0001
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = ("tenancy",)
depends_on: str | Sequence[str] | None = None

_WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "tenancy_users",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("email", sa.String(254), nullable=False, unique=True),
        sa.Column("password_hash", sa.String(256), nullable=True),
        sa.Column("admin", sa.Boolean(), nullable=False),
        sa.Column("created_at", _WHEN, nullable=False),
    )
    for table in ("tenancy_tokens", "tenancy_sessions"):
        extra: list[sa.Column[object]] = (
            [
                sa.Column("prefix", sa.String(16), nullable=False),
                sa.Column("name", sa.String(128), nullable=False),
                sa.Column("expires_at", _WHEN, nullable=True),
                sa.Column("revoked_at", _WHEN, nullable=True),
            ]
            if table == "tenancy_tokens"
            else [
                sa.Column("csrf", sa.String(64), nullable=False),
                sa.Column("expires_at", _WHEN, nullable=False),
            ]
        )
        op.create_table(
            table,
            sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
            sa.Column(
                "user_id",
                sa.Integer(),
                sa.ForeignKey("tenancy_users.id", ondelete="CASCADE"),
                nullable=False,
            ),
            sa.Column("digest", sa.String(64), nullable=False, unique=True),
            sa.Column("created_at", _WHEN, nullable=False),
            *extra,
        )
        op.create_index(f"ix_{table}_user", table, ["user_id"])
    op.create_table(
        "tenancy_attempts",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(300), nullable=False),
        sa.Column("at", _WHEN, nullable=False),
    )
    op.create_index("ix_tenancy_attempts_key", "tenancy_attempts", ["key", "at"])
    op.create_table(
        "tenancy_audit",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("at", _WHEN, nullable=False),
        sa.Column("user", sa.String(254), nullable=False),
        sa.Column("method", sa.String(8), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("verb", sa.String(32), nullable=False),
        sa.Column("resource", sa.String(256), nullable=False),
        sa.Column("namespace", sa.String(63), nullable=False),
        sa.Column("name", sa.String(253), nullable=False),
        sa.Column("code", sa.Integer(), nullable=False),
    )
    op.create_index("ix_tenancy_audit_at", "tenancy_audit", ["at"])
    op.create_index("ix_tenancy_audit_user", "tenancy_audit", ["user"])
    op.create_table(
        "tenancy_keys",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.String(128), nullable=False),
    )


def downgrade() -> None:
    for table in (
        "tenancy_keys",
        "tenancy_audit",
        "tenancy_attempts",
        "tenancy_sessions",
        "tenancy_tokens",
        "tenancy_users",
    ):
        op.drop_table(table)
