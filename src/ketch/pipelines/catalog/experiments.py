"""KFP experiments in the store: the default one of each namespace, archive (with
their runs) and unarchive."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ketch.core.errors import Conflict, InvalidSpec
from ketch.core.timestamps import utcnow
from ketch.pipelines.catalog.store import (
    CatalogPart,
    Page,
    Scope,
    existing,
    in_scope,
    namespace_or_default,
    new_id,
    page_of,
    write_in,
)
from ketch.pipelines.filters import Field, ListOptions
from ketch.pipelines.tables import KfpExperimentRow, KfpRecurringRunRow, PipelineRunRow

DEFAULT_EXPERIMENT = "Default"

E = KfpExperimentRow
R = PipelineRunRow
S = KfpRecurringRunRow
EXPERIMENT_FIELDS: dict[str, Field] = {
    "experiment_id": Field(E.id),
    "id": Field(E.id),
    "display_name": Field(E.display_name),
    "name": Field(E.display_name),
    "description": Field(E.description),
    "namespace": Field(E.namespace),
    "storage_state": Field(E.storage_state),
    "created_at": Field(E.created_at, "time"),
}


class ExperimentCatalog(CatalogPart):
    """KFP experiments."""

    def default_experiment(self, namespace: str | None = None) -> KfpExperimentRow:
        """The namespace's "Default" experiment, created when it is missing."""
        ns = namespace_or_default(namespace)
        found = self._experiment_by_name(DEFAULT_EXPERIMENT, ns)
        if found is not None:
            return found
        try:
            return self.create_experiment(
                DEFAULT_EXPERIMENT, "All runs created without an experiment.", ns
            )
        except Conflict:  # created meanwhile by another request
            found = self._experiment_by_name(DEFAULT_EXPERIMENT, ns)
            assert found is not None
            return found

    def _experiment_by_name(self, name: str, namespace: str) -> KfpExperimentRow | None:
        with self.database.session(readonly=True) as s:
            return s.execute(
                select(E).where(E.namespace == namespace, E.display_name == name)
            ).scalar_one_or_none()

    def create_experiment(
        self, display_name: str, description: str, namespace: str | None
    ) -> KfpExperimentRow:
        name = (display_name or "").strip()
        if not name:
            raise InvalidSpec("an experiment needs a display_name", field="display_name")
        ns = namespace_or_default(namespace)
        row = KfpExperimentRow(
            id=new_id(),
            display_name=name,
            description=description or "",
            namespace=ns,
            storage_state="AVAILABLE",
            created_at=utcnow(),
        )

        def write(s: Session) -> KfpExperimentRow:
            s.add(row)
            s.flush()
            return row

        try:
            return write_in(self.database, write)
        except IntegrityError:
            raise Conflict(
                f"an experiment named {name!r} already exists in namespace {ns!r}",
                field="display_name",
            ) from None

    def get_experiment(self, experiment_id: str) -> KfpExperimentRow:
        with self.database.session(readonly=True) as s:
            return existing(s, E, experiment_id, "experiment")

    def last_run_times(self, experiment_ids: list[str]) -> dict[str, datetime]:
        if not experiment_ids:
            return {}
        with self.database.session(readonly=True) as s:
            rows = s.execute(
                select(R.experiment_id, func.max(R.created_at))
                .where(R.experiment_id.in_(experiment_ids))
                .group_by(R.experiment_id)
            ).all()
        return {str(eid): when for eid, when in rows if when is not None}

    def list_experiments(self, opts: ListOptions, namespace: Scope) -> Page:
        with self.database.session(readonly=True) as s:
            return page_of(
                s,
                E,
                EXPERIMENT_FIELDS,
                opts,
                in_scope(E, namespace),
                resource="experiments",
            )

    def delete_experiment(self, experiment_id: str) -> None:
        """Delete an experiment; its runs and recurring runs stay (as in KFP)."""

        def write(s: Session) -> None:
            existing(s, E, experiment_id, "experiment")
            s.execute(delete(E).where(E.id == experiment_id))

        write_in(self.database, write)

    def set_experiment_storage(self, experiment_id: str, storage_state: str) -> None:
        """Archive (with all its runs, and disabling its recurring runs) or unarchive."""

        def write(s: Session) -> None:
            row = existing(s, E, experiment_id, "experiment")
            row.storage_state = storage_state
            if storage_state == "ARCHIVED":
                s.execute(
                    update(R)
                    .where(R.experiment_id == experiment_id)
                    .values(storage_state="ARCHIVED")
                )
                s.execute(
                    update(S)
                    .where(S.experiment_id == experiment_id)
                    .values(mode="DISABLE", updated_at=utcnow())
                )

        write_in(self.database, write)
