"""Registry: entities, their custom properties, experiment runs' metric history and
lineage links. The first revision of the ``registry`` branch, on core's ``0001``.

Revision ID: 0030
Revises: 0001
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0030"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = ("registry",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "registry_entities",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("namespace", sa.String(63), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("subtype", sa.String(32), nullable=False),
        sa.Column("parent_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("external_id", sa.String(255), nullable=True),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("uri", sa.Text(), nullable=False),
        sa.Column("created", sa.BigInteger(), nullable=False),
        sa.Column("updated", sa.BigInteger(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.UniqueConstraint("namespace", "kind", "parent_id", "name", name="uq_registry_name"),
    )
    for index, columns in (
        ("ix_registry_created", ["namespace", "kind", "parent_id", "created", "id"]),
        ("ix_registry_updated", ["namespace", "kind", "parent_id", "updated", "id"]),
        ("ix_registry_kind_id", ["namespace", "kind", "id"]),
        ("ix_registry_parent_id", ["namespace", "kind", "parent_id", "id"]),
        ("ix_registry_external", ["namespace", "kind", "external_id"]),
        ("ix_registry_uri", ["uri"]),
    ):
        if index == "ix_registry_uri" and op.get_context().dialect.name == "postgresql":
            # a btree on unbounded text: hash it on PostgreSQL (equality lookups only)
            op.create_index(index, "registry_entities", ["uri"], postgresql_using="hash")
        else:
            op.create_index(index, "registry_entities", columns)
    op.create_table(
        "registry_properties",
        sa.Column("entity_id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("type", sa.String(8), nullable=False),
        sa.Column("string_value", sa.Text(), nullable=True),
        sa.Column("int_value", sa.BigInteger(), nullable=True),
        sa.Column("double_value", sa.Float(), nullable=True),
        sa.Column("bool_value", sa.Boolean(), nullable=True),
    )
    op.create_index("ix_registry_property_string", "registry_properties", ["name", "string_value"])
    op.create_index("ix_registry_property_double", "registry_properties", ["name", "double_value"])
    op.create_index("ix_registry_property_int", "registry_properties", ["name", "int_value"])
    op.create_table(
        "registry_metric_history",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("step", sa.BigInteger(), nullable=False),
        sa.Column("timestamp", sa.BigInteger(), nullable=False),
        sa.Column("created", sa.BigInteger(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
    )
    op.create_index(
        "ix_registry_metric_history_run", "registry_metric_history", ["run_id", "name", "step"]
    )
    op.create_table(
        "registry_lineage",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("entity_id", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(8), nullable=False),
        sa.Column("source_kind", sa.String(32), nullable=False),
        sa.Column("source_namespace", sa.String(63), nullable=False),
        sa.Column("source_name", sa.String(255), nullable=False),
        sa.Column("task", sa.String(255), nullable=False),
        sa.Column("created", sa.BigInteger(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
    )
    op.create_index("ix_registry_lineage_entity", "registry_lineage", ["entity_id"])


def downgrade() -> None:
    op.drop_table("registry_lineage")
    op.drop_table("registry_metric_history")
    op.drop_table("registry_properties")
    op.drop_table("registry_entities")
