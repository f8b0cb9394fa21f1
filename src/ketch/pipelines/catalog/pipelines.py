"""KFP pipelines and their versions in the store."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ketch.core.errors import Conflict, InvalidSpec, NotFound
from ketch.core.timestamps import utcnow
from ketch.pipelines.catalog.store import (
    CatalogPart,
    FailedPrecondition,
    Page,
    existing,
    namespace_or_default,
    new_id,
    page_of,
    write_in,
)
from ketch.pipelines.filters import Field, ListOptions
from ketch.pipelines.tables import KfpPipelineRow, KfpPipelineVersionRow

P = KfpPipelineRow
PIPELINE_FIELDS: dict[str, Field] = {
    "pipeline_id": Field(P.id),
    "id": Field(P.id),
    "name": Field(P.name),
    "display_name": Field(P.display_name),
    "description": Field(P.description),
    "namespace": Field(P.namespace),
    "created_at": Field(P.created_at, "time"),
}
V = KfpPipelineVersionRow
VERSION_FIELDS: dict[str, Field] = {
    "pipeline_version_id": Field(V.id),
    "id": Field(V.id),
    "pipeline_id": Field(V.pipeline_id),
    "name": Field(V.name),
    "display_name": Field(V.display_name),
    "description": Field(V.description),
    "created_at": Field(V.created_at, "time"),
}


class PipelineCatalog(CatalogPart):
    """KFP pipelines and pipeline versions."""

    def create_pipeline(
        self,
        name: str,
        display_name: str | None,
        description: str | None,
        namespace: str | None,
        version: dict[str, Any] | None = None,
    ) -> tuple[KfpPipelineRow, KfpPipelineVersionRow | None]:
        """Create a pipeline, and with ``version`` (create_version's arguments) its first version."""
        name = (name or display_name or "").strip()
        if not name:
            raise InvalidSpec("a pipeline needs a name or display_name", field="name")
        ns = namespace_or_default(namespace)
        row = KfpPipelineRow(
            id=new_id(),
            name=name,
            display_name=(display_name or name).strip(),
            description=description or "",
            namespace=ns,
            created_at=utcnow(),
        )
        vrow = (
            self._version_row(row.id, **{"name": name, **version}) if version is not None else None
        )

        def write(s: Session) -> tuple[KfpPipelineRow, KfpPipelineVersionRow | None]:
            s.add(row)
            s.flush()
            if vrow is not None:
                s.add(vrow)
                s.flush()
            return row, vrow

        try:
            return write_in(self.database, write)
        except IntegrityError:
            raise Conflict(
                f"a pipeline named {name!r} already exists in namespace {ns!r}; "
                "upload a new version of it instead",
                field="name",
            ) from None

    def get_pipeline(self, pipeline_id: str) -> KfpPipelineRow:
        with self.database.session(readonly=True) as s:
            return existing(s, P, pipeline_id, "pipeline")

    def get_pipeline_by_name(self, name: str, namespace: str | None) -> KfpPipelineRow:
        ns = namespace_or_default(namespace)
        with self.database.session(readonly=True) as s:
            row = s.execute(select(P).where(P.namespace == ns, P.name == name)).scalar_one_or_none()
        if row is None:
            raise NotFound(f"pipeline named {name!r} not found in namespace {ns!r}")
        return row

    def list_pipelines(self, opts: ListOptions, namespace: str | None) -> Page:
        with self.database.session(readonly=True) as s:
            return page_of(
                s,
                P,
                PIPELINE_FIELDS,
                opts,
                [P.namespace == namespace_or_default(namespace)],
                resource="pipelines",
            )

    def delete_pipeline(self, pipeline_id: str, cascade: bool) -> None:
        def write(s: Session) -> None:
            existing(s, P, pipeline_id, "pipeline")
            versions = s.execute(
                select(func.count()).select_from(V).where(V.pipeline_id == pipeline_id)
            ).scalar_one()
            if versions and not cascade:
                raise FailedPrecondition(
                    f"pipeline {pipeline_id!r} has {versions} version(s); delete them first "
                    "or pass cascade=true",
                )
            s.execute(delete(V).where(V.pipeline_id == pipeline_id))
            s.execute(delete(P).where(P.id == pipeline_id))

        write_in(self.database, write)

    @staticmethod
    def _version_row(
        pipeline_id: str,
        *,
        name: str,
        spec: dict[str, Any],
        platform_spec: dict[str, Any] | None = None,
        display_name: str | None = None,
        description: str | None = None,
        package_url: str | None = None,
        code_source_url: str | None = None,
    ) -> KfpPipelineVersionRow:
        name = (name or display_name or "").strip()
        if not name:
            raise InvalidSpec("a pipeline version needs a name or display_name", field="name")
        return KfpPipelineVersionRow(
            id=new_id(),
            pipeline_id=pipeline_id,
            name=name,
            display_name=(display_name or name).strip(),
            description=description or "",
            pipeline_spec=spec,
            platform_spec=platform_spec,
            package_url=package_url or None,
            code_source_url=code_source_url or None,
            created_at=utcnow(),
        )

    def create_version(self, pipeline_id: str, **version: Any) -> KfpPipelineVersionRow:
        row = self._version_row(pipeline_id, **version)

        def write(s: Session) -> KfpPipelineVersionRow:
            existing(s, P, pipeline_id, "pipeline", field="pipeline_id")
            s.add(row)
            s.flush()
            return row

        try:
            return write_in(self.database, write)
        except IntegrityError:
            raise Conflict(
                f"pipeline {pipeline_id!r} already has a version named {row.name!r}", field="name"
            ) from None

    def get_version(self, pipeline_id: str | None, version_id: str) -> KfpPipelineVersionRow:
        with self.database.session(readonly=True) as s:
            row = s.get(V, version_id)
        if row is None or (pipeline_id and row.pipeline_id != pipeline_id):
            raise NotFound(
                f"pipeline version {version_id!r} not found"
                + (f" in pipeline {pipeline_id!r}" if pipeline_id else "")
            )
        return row

    def latest_version(self, pipeline_id: str) -> KfpPipelineVersionRow:
        self.get_pipeline(pipeline_id)
        with self.database.session(readonly=True) as s:
            row = s.execute(
                select(V)
                .where(V.pipeline_id == pipeline_id)
                .order_by(V.created_at.desc(), V.id.desc())
                .limit(1)
            ).scalar_one_or_none()
        if row is None:
            raise NotFound(f"pipeline {pipeline_id!r} has no versions; upload one first")
        return row

    def list_versions(self, pipeline_id: str, opts: ListOptions) -> Page:
        self.get_pipeline(pipeline_id)
        with self.database.session(readonly=True) as s:
            return page_of(
                s,
                V,
                VERSION_FIELDS,
                opts,
                [V.pipeline_id == pipeline_id],
                resource="pipeline versions",
            )

    def delete_version(self, pipeline_id: str, version_id: str) -> None:
        def write(s: Session) -> None:
            row = s.get(V, version_id)
            if row is None or row.pipeline_id != pipeline_id:
                raise NotFound(
                    f"pipeline version {version_id!r} not found in pipeline {pipeline_id!r}"
                )
            s.execute(delete(V).where(V.id == version_id))

        write_in(self.database, write)
