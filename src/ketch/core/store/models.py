"""Core's tables: resources and their events, the pods Ketch runs, the store's
revision and its change journal, and the declarative ``Base`` every capability's
tables share (one metadata, one database).

A capability keeps its own tables in its ``tables.py`` (pipelines:
:mod:`ketch.pipelines.tables`), built on this ``Base``. Any schema change needs an
Alembic migration: core's in ``migrations/versions``, a capability's in its own
version folder (``Capability.migrations``); see :mod:`ketch.core.store.db`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class ResourceRow(Base):
    """A declarative resource: the Kubeflow manifest plus its status."""

    __tablename__ = "resources"
    __table_args__ = (
        UniqueConstraint("kind", "namespace", "name", name="uq_resources_kind_ns_name"),
        Index("ix_resources_kind_ns", "kind", "namespace"),
    )

    uid: Mapped[str] = mapped_column(String(36), primary_key=True)
    api_version: Mapped[str] = mapped_column(String(253))
    kind: Mapped[str] = mapped_column(String(63))
    namespace: Mapped[str] = mapped_column(String(63))
    name: Mapped[str] = mapped_column(String(253))
    generation: Mapped[int] = mapped_column(Integer, default=1)
    resource_version: Mapped[int] = mapped_column(Integer, default=1)
    labels: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    annotations: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    owner_references: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, nullable=True)
    # metadata.managedFields: which field manager owns which fields (server-side apply)
    managed_fields: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, nullable=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class ResourceEventRow(Base):
    """A Kubernetes-style event about a resource (Normal/Warning, reason, message)."""

    __tablename__ = "resource_events"
    __table_args__ = (Index("ix_resource_events_uid", "resource_uid"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    resource_uid: Mapped[str] = mapped_column(String(36))
    kind: Mapped[str] = mapped_column(String(63))
    namespace: Mapped[str] = mapped_column(String(63))
    name: Mapped[str] = mapped_column(String(253))
    type: Mapped[str] = mapped_column(String(16), default="Normal")
    reason: Mapped[str] = mapped_column(String(128))
    message: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # Repeats of the same event (same object, type, reason and message) are counted.
    count: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    last_seen_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # The store's revision at the event's last write (its first, or a repeat counted).
    resource_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class RevisionRow(Base):
    """The store's revision (one row, ``id`` 1): the number of the last write to a
    resource, a pod or an event, as etcd's revision is for Kubernetes. Every create,
    update, status write and delete takes the next one, in the order the writes commit
    (see :mod:`ketch.core.store.resources`), and it becomes the object's
    ``metadata.resourceVersion``. ``compacted``: the journal holds every change after
    it, none at or before it (a watch from an older version is answered 410)."""

    __tablename__ = "resource_revision"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    revision: Mapped[int] = mapped_column(BigInteger, default=0)
    compacted: Mapped[int] = mapped_column(BigInteger, default=0)


class ChangeRow(Base):
    """One write to a resource, a pod or an event, in the change journal watches read:
    ``ADDED``, ``MODIFIED`` or ``DELETED``, and the object as written (a deleted one as
    it was, with the revision of its deletion)."""

    __tablename__ = "resource_changes"
    __table_args__ = (Index("ix_resource_changes_kind_revision", "kind", "revision"),)

    revision: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    kind: Mapped[str] = mapped_column(String(63))
    namespace: Mapped[str] = mapped_column(String(63))
    name: Mapped[str] = mapped_column(String(253))
    uid: Mapped[str] = mapped_column(String(36))
    type: Mapped[str] = mapped_column(String(16))
    object: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class PodRow(Base):
    """A pod (:mod:`ketch.core.store.pods`): its manifest's parts, its owner, its
    containers' logs (server-owned: never part of what is served) and how a
    ``DELETE`` of it is answered. ``resource_version``: the store's revision at its
    last write."""

    __tablename__ = "pods"
    __table_args__ = (
        UniqueConstraint("namespace", "name", name="uq_pods_ns_name"),
        Index("ix_pods_owner_uid", "owner_uid"),
    )

    uid: Mapped[str] = mapped_column(String(36), primary_key=True)
    namespace: Mapped[str] = mapped_column(String(63))
    name: Mapped[str] = mapped_column(String(253))
    owner_api_version: Mapped[str] = mapped_column(String(253))
    owner_kind: Mapped[str] = mapped_column(String(63))
    owner_name: Mapped[str] = mapped_column(String(253))
    owner_uid: Mapped[str] = mapped_column(String(36))
    labels: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    annotations: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    logs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    deletion: Mapped[str] = mapped_column(String(16), default="owner")
    refusal: Mapped[str] = mapped_column(Text, default="")
    resource_version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    deletion_requested_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True
    )
