"""The registry's tables: every entity of Kubeflow's Model Registry in one table (as
ML Metadata keeps contexts and artifacts), their custom properties as typed rows (what
``filterQuery`` compares), experiment runs' metric history, and the lineage links from
a model's artifacts to what produced them.

Any change here needs an Alembic migration in :data:`MIGRATIONS` (branch ``registry``).
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from ketch.core.store.models import Base

MIGRATIONS = Path(__file__).resolve().parent / "migrations" / "versions"


class EntityRow(Base):
    """A registered model, model version, artifact, serving environment, inference
    service, serve model, experiment or experiment run of one namespace (profile).

    ``parent_id`` is the entity it belongs to (a version's model, an artifact's
    version or experiment run, an inference service's serving environment, a serve
    model's inference service, a run's experiment; 0 for none): names are unique among
    the children of one parent. ``body`` holds the kind's other fields (JSON, as the
    API writes them, custom properties included)."""

    __tablename__ = "registry_entities"
    __table_args__ = (
        UniqueConstraint("namespace", "kind", "parent_id", "name", name="uq_registry_name"),
        Index("ix_registry_created", "namespace", "kind", "parent_id", "created", "id"),
        Index("ix_registry_updated", "namespace", "kind", "parent_id", "updated", "id"),
        Index("ix_registry_kind_id", "namespace", "kind", "id"),
        Index("ix_registry_parent_id", "namespace", "kind", "parent_id", "id"),
        Index("ix_registry_external", "namespace", "kind", "external_id"),
        # equality lookups only: a hash index on PostgreSQL (URIs may be long)
        Index("ix_registry_uri", "uri", postgresql_using="hash"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    namespace: Mapped[str] = mapped_column(String(63))
    kind: Mapped[str] = mapped_column(String(32))
    #: an artifact's ``artifactType`` ("model-artifact", "doc-artifact", ...); else ""
    subtype: Mapped[str] = mapped_column(String(32), default="")
    parent_id: Mapped[int] = mapped_column(Integer, default=0)
    name: Mapped[str] = mapped_column(String(255))
    external_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    state: Mapped[str] = mapped_column(String(32), default="")
    #: an artifact's URI ("" for the other kinds): what lineage and deployment look up
    uri: Mapped[str] = mapped_column(Text, default="")
    #: milliseconds since the epoch
    created: Mapped[int] = mapped_column(BigInteger)
    updated: Mapped[int] = mapped_column(BigInteger)
    body: Mapped[str] = mapped_column(Text, default="{}")


class PropertyRow(Base):
    """One custom property of an entity, typed as its ``metadataType`` says."""

    __tablename__ = "registry_properties"
    __table_args__ = (
        Index("ix_registry_property_string", "name", "string_value"),
        Index("ix_registry_property_double", "name", "double_value"),
        Index("ix_registry_property_int", "name", "int_value"),
    )

    entity_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    #: string, int, double, bool, struct or proto
    type: Mapped[str] = mapped_column(String(8))
    string_value: Mapped[str | None] = mapped_column(Text, nullable=True)
    int_value: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    double_value: Mapped[float | None] = mapped_column(Float, nullable=True)
    bool_value: Mapped[bool | None] = mapped_column(Boolean, nullable=True)


class MetricHistoryRow(Base):
    """Every value an experiment run logged for a metric, in the order it came."""

    __tablename__ = "registry_metric_history"
    __table_args__ = (Index("ix_registry_metric_history_run", "run_id", "name", "step"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(255))
    value: Mapped[float | None] = mapped_column(Float, nullable=True)
    step: Mapped[int] = mapped_column(BigInteger, default=0)
    timestamp: Mapped[int] = mapped_column(BigInteger, default=0)
    created: Mapped[int] = mapped_column(BigInteger)
    body: Mapped[str] = mapped_column(Text, default="{}")


class LineageRow(Base):
    """An ML Metadata event that links a registered artifact to what made it: the
    pipeline run and task (or training job, or Katib trial) whose output it is, with
    that run's inputs and parameters as they were (``detail``, JSON)."""

    __tablename__ = "registry_lineage"
    __table_args__ = (Index("ix_registry_lineage_entity", "entity_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    entity_id: Mapped[int] = mapped_column(Integer)
    #: OUTPUT (the producer made this artifact) or INPUT (it read it)
    type: Mapped[str] = mapped_column(String(8))
    #: "pipelinerun", "trainjob", "pytorchjob", "trial", ...
    source_kind: Mapped[str] = mapped_column(String(32))
    source_namespace: Mapped[str] = mapped_column(String(63))
    source_name: Mapped[str] = mapped_column(String(255))
    task: Mapped[str] = mapped_column(String(255), default="")
    created: Mapped[int] = mapped_column(BigInteger)
    detail: Mapped[str] = mapped_column(Text, default="{}")
