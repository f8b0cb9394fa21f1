"""The KFP views of pipeline runs (which :class:`~ketch.pipelines.service.RunService`
creates and executes): pages of runs, the KFP fields a run row lacks, task details
with their lineage, archive and delete."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Float, delete, func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from ketch.core.store.pods import delete_owned_in
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
from ketch.pipelines.kfp_models import status, ts
from ketch.pipelines.manifests import journal_run
from ketch.pipelines.tables import (
    ExecutionRow,
    KfpRunMetaRow,
    LineageEventRow,
    PipelineRunRow,
    PipelineTaskRow,
)

R = PipelineRunRow


class seconds_between(FunctionElement[float]):  # noqa: N801 (an SQL function's name)
    """``end - start`` in seconds, in SQL (SQLite's julian days, PostgreSQL's epoch)."""

    type = Float()
    name = "seconds_between"
    inherit_cache = True


@compiles(seconds_between)
def _seconds_sqlite(element: seconds_between, compiler: SQLCompiler, **kw: Any) -> str:
    start, end = (compiler.process(c, **kw) for c in element.clauses)
    return f"((julianday({end}) - julianday({start})) * 86400.0)"


@compiles(seconds_between, "postgresql")
def _seconds_postgresql(element: seconds_between, compiler: SQLCompiler, **kw: Any) -> str:
    start, end = (compiler.process(c, **kw) for c in element.clauses)
    return f"EXTRACT(EPOCH FROM ({end} - {start}))"


#: a run's duration in seconds (created to finished; -1 while it has not finished),
#: a key to sort runs by (``sort_by=duration desc``)
DURATION = func.coalesce(seconds_between(R.created_at, R.finished_at), -1.0)
#: the columns a list of runs leaves out when asked for the light view
HEAVY_COLUMNS = (R.pipeline_spec, R.outputs)
RUN_FIELDS: dict[str, Field] = {
    "run_id": Field(R.id),
    "id": Field(R.id),
    "display_name": Field(R.display_name),
    "name": Field(R.display_name),
    "pipeline_name": Field(R.pipeline_name),
    "state": Field(R.state),
    "storage_state": Field(R.storage_state),
    "namespace": Field(R.namespace),
    "experiment_id": Field(R.experiment_id, nullable=True),
    "pipeline_id": Field(R.pipeline_id, nullable=True),
    "pipeline_version_id": Field(R.pipeline_version_id, nullable=True),
    "recurring_run_id": Field(R.recurring_run_id, nullable=True),
    "created_at": Field(R.created_at, "time"),
    "finished_at": Field(R.finished_at, "time", nullable=True),
    "duration": Field(DURATION, "number"),
}


class RunCatalog(CatalogPart):
    """KFP views of pipeline runs."""

    def _reap(self) -> None:
        """Runs of a ``ketch run`` that died end FAILED before anyone reads them."""
        try:
            self.reaper.reap()
        except (SQLAlchemyError, OSError):  # a read must still answer
            pass

    def get_run(self, run_id: str) -> tuple[PipelineRunRow, KfpRunMetaRow | None]:
        self._reap()
        with self.database.session(readonly=True) as s:
            row = existing(s, R, run_id, "run")
            meta = s.get(KfpRunMetaRow, run_id)
        return row, meta

    def list_runs(
        self,
        opts: ListOptions,
        *,
        namespace: Scope,
        experiment_id: str | None,
        light: bool = False,
    ) -> tuple[Page, dict[str, KfpRunMetaRow]]:
        """A page of runs with their KFP fields; ``light``: without the columns of
        :data:`HEAVY_COLUMNS` (not read from the store at all)."""
        where = scope_of(R, namespace, experiment_id)
        self._reap()
        with self.database.session(readonly=True) as s:
            omit = HEAVY_COLUMNS if light else ()
            page = page_of(s, R, RUN_FIELDS, opts, where, resource="runs", omit=omit)
            ids = [r.id for r in page.items]
            metas = (
                {
                    m.run_id: m
                    for m in s.execute(
                        select(KfpRunMetaRow).where(KfpRunMetaRow.run_id.in_(ids))
                    ).scalars()
                }
                if ids
                else {}
            )
        return page, metas

    def set_run_meta(
        self,
        run_id: str,
        *,
        description: str = "",
        service_account: str = "",
        scheduled_at: datetime | None = None,
    ) -> None:
        if not description and not service_account and scheduled_at is None:
            return

        def write(s: Session) -> None:
            s.merge(
                KfpRunMetaRow(
                    run_id=run_id,
                    description=description,
                    service_account=service_account,
                    scheduled_at=scheduled_at,
                )
            )

        write_in(self.database, write)

    def set_run_storage(self, run_id: str, storage_state: str) -> None:
        def write(s: Session) -> None:
            row = existing(s, R, run_id, "run")
            row.storage_state = storage_state

        write_in(self.database, write)

    def delete_run(self, run_id: str) -> None:
        """Remove a run and its tasks; artifacts (files and lineage records) stay."""

        def write(s: Session) -> None:
            # the run as it was, at the revision of its deletion, for PipelineRun watches
            journal_run(s, existing(s, R, run_id, "run"), "DELETED")
            s.execute(delete(KfpRunMetaRow).where(KfpRunMetaRow.run_id == run_id))
            s.execute(delete(PipelineTaskRow).where(PipelineTaskRow.run_id == run_id))
            s.execute(delete(R).where(R.id == run_id))
            delete_owned_in(s, run_id)  # its tasks' pods

        write_in(self.database, write)

    def task_rows(self, run_id: str) -> list[PipelineTaskRow]:
        with self.database.session(readonly=True) as s:
            return list(
                s.execute(
                    select(PipelineTaskRow)
                    .where(PipelineTaskRow.run_id == run_id)
                    .order_by(PipelineTaskRow.created_at, PipelineTaskRow.path)
                ).scalars()
            )

    def task_details(self, run_id: str) -> list[dict[str, Any]]:
        """The run's tasks as KFP ``PipelineTaskDetail`` objects."""
        with self.database.session(readonly=True) as s:
            tasks = list(
                s.execute(
                    select(PipelineTaskRow)
                    .where(PipelineTaskRow.run_id == run_id)
                    .order_by(PipelineTaskRow.created_at, PipelineTaskRow.path)
                ).scalars()
            )
            executions = s.execute(
                select(ExecutionRow.id, ExecutionRow.task_id)
                .where(ExecutionRow.run_id == run_id)
                .order_by(ExecutionRow.id)
            ).all()
            latest: dict[str, int] = {}
            for exec_id, task_id in executions:
                if task_id:
                    latest[task_id] = exec_id  # ordered by id: the last one wins
            events: dict[int, list[tuple[str, str, int]]] = {}
            if latest:
                for exec_id, etype, key, art_id in s.execute(
                    select(
                        LineageEventRow.execution_id,
                        LineageEventRow.type,
                        LineageEventRow.key,
                        LineageEventRow.artifact_id,
                    )
                    .where(LineageEventRow.execution_id.in_(list(latest.values())))
                    .order_by(LineageEventRow.id)
                ).all():
                    events.setdefault(exec_id, []).append((etype, key, art_id))
        by_path = {t.path: t for t in tasks}
        children: dict[str, list[PipelineTaskRow]] = {}
        for t in tasks:
            if t.parent_path:
                children.setdefault(t.parent_path, []).append(t)
        details = []
        for t in tasks:
            task_exec = latest.get(t.id)
            inputs: dict[str, dict[str, list[str]]] = {}
            outputs: dict[str, dict[str, list[str]]] = {}
            for etype, key, art_id in events.get(task_exec, []) if task_exec is not None else []:
                target = inputs if etype == "INPUT" else outputs
                ids = target.setdefault(key, {"artifact_ids": []})["artifact_ids"]
                if str(art_id) not in ids:
                    ids.append(str(art_id))
            parent = by_path.get(t.parent_path) if t.parent_path else None
            detail: dict[str, Any] = {
                "run_id": run_id,
                "task_id": t.id,
                "display_name": t.display_name,
                "create_time": ts(t.created_at),
                "start_time": ts(t.started_at),
                "end_time": ts(t.finished_at),
                "state": "SUCCEEDED" if t.cached and t.state == "SUCCEEDED" else t.state,
                "execution_id": str(task_exec) if task_exec is not None else None,
                "error": status(t.error) if t.error else None,
                "inputs": inputs,
                "outputs": outputs,
                "parent_task_id": parent.id if parent is not None else None,
                "child_tasks": [
                    {"task_id": c.id, "pod_name": ""} for c in children.get(t.path, [])
                ],
            }
            details.append({k: v for k, v in detail.items() if v is not None})
        return details
