"""KFP recurring runs in the store (the scheduler that fires them is
:mod:`ketch.pipelines.scheduler`)."""

from __future__ import annotations

from sqlalchemy import delete
from sqlalchemy.orm import Session

from ketch.core.timestamps import utcnow
from ketch.pipelines.catalog.store import (
    CatalogPart,
    Page,
    Scope,
    existing,
    page_of,
    scope_of,
    write_in,
)
from ketch.pipelines.filters import Field, ListOptions
from ketch.pipelines.tables import KfpRecurringRunRow

S = KfpRecurringRunRow
RECURRING_FIELDS: dict[str, Field] = {
    "recurring_run_id": Field(S.id),
    "id": Field(S.id),
    "display_name": Field(S.display_name),
    "name": Field(S.display_name),
    "description": Field(S.description),
    "namespace": Field(S.namespace),
    "experiment_id": Field(S.experiment_id, nullable=True),
    "pipeline_id": Field(S.pipeline_id, nullable=True),
    "pipeline_version_id": Field(S.pipeline_version_id, nullable=True),
    "mode": Field(S.mode),
    "created_at": Field(S.created_at, "time"),
    "updated_at": Field(S.updated_at, "time"),
}


class RecurringCatalog(CatalogPart):
    """KFP recurring runs."""

    def create_recurring(self, row: KfpRecurringRunRow) -> KfpRecurringRunRow:
        def write(s: Session) -> KfpRecurringRunRow:
            s.add(row)
            s.flush()
            return row

        return write_in(self.database, write)

    def get_recurring(self, recurring_run_id: str) -> KfpRecurringRunRow:
        with self.database.session(readonly=True) as s:
            return existing(s, S, recurring_run_id, "recurring run")

    def list_recurring(
        self, opts: ListOptions, *, namespace: Scope, experiment_id: str | None
    ) -> Page:
        where = scope_of(S, namespace, experiment_id)
        with self.database.session(readonly=True) as s:
            return page_of(s, S, RECURRING_FIELDS, opts, where, resource="recurring runs")

    def delete_recurring(self, recurring_run_id: str) -> None:
        """Delete a recurring run; the runs it created stay."""

        def write(s: Session) -> None:
            existing(s, S, recurring_run_id, "recurring run")
            s.execute(delete(S).where(S.id == recurring_run_id))

        write_in(self.database, write)

    def set_recurring_mode(self, recurring_run_id: str, mode: str) -> None:
        def write(s: Session) -> None:
            row = existing(s, S, recurring_run_id, "recurring run")
            if row.mode != mode:
                row.mode = mode
                row.updated_at = utcnow()
                row.error = None

        write_in(self.database, write)
