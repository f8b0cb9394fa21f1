"""A stored pipeline run as the ``PipelineRun`` manifest the resource API serves, and
its changes in the store's change journal.

A run's ``metadata.resourceVersion`` is a revision of the store's one sequence (the
one resources, pods and events take theirs from, :func:`ketch.core.store.resources.
next_revision`), kept on its row. Every write that changes what its manifest shows
(the run created, its state, start and end, outputs and error, a task added, started
or finished, the run deleted) takes the next revision in the write's transaction and
journals the run's manifest (:func:`journal_run`), so a watch of PipelineRuns resumes
from a resourceVersion exactly as a watch of resources does. Writes that change
nothing a manifest shows (the run's owner, its storage state, lineage, the cache) take
none.

The journaled object is the run as a list shows it: no IR and no tasks (a read of one
run adds them), so a write costs one small row, however large the pipeline.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Row, Table, update
from sqlalchemy.orm import Session

from ketch.core.conditions import TERMINAL_RUN_STATES, RunState
from ketch.core.sources import Manifest
from ketch.core.store.resources import ChangeType, journal, next_revision
from ketch.core.timestamps import format_time
from ketch.pipelines.kinds import (
    DISPLAY_NAME,
    LABEL_EXPERIMENT,
    LABEL_PIPELINE,
    LABEL_RECURRING,
    LABEL_STATE,
    PIPELINE_RUN,
)
from ketch.pipelines.tables import PipelineRunRow, PipelineTaskRow

TERMINAL_TASK_STATES = TERMINAL_RUN_STATES


def _time(value: datetime | None) -> str | None:
    return format_time(value) if value is not None else None


def _condition(type_: str, status: str, reason: str, when: datetime | None) -> dict[str, Any]:
    condition = {"type": type_, "status": status, "reason": reason, "message": ""}
    stamp = _time(when)
    if stamp:
        condition["lastTransitionTime"] = stamp
    return condition


def run_conditions(row: PipelineRunRow | Row[Any]) -> list[dict[str, Any]]:
    state = row.state
    done = state in TERMINAL_RUN_STATES
    finished = row.finished_at or row.started_at or row.created_at
    started = row.started_at or row.created_at
    running = _condition(
        "Running", "False" if done else "True", state.capitalize(), finished if done else started
    )
    succeeded = _condition(
        "Succeeded",
        "True" if state == RunState.SUCCEEDED else ("False" if done else "Unknown"),
        state.capitalize(),
        finished if done else started,
    )
    failed = _condition(
        "Failed", "True" if state == RunState.FAILED else "False", state.capitalize(), finished
    )
    canceled = _condition(
        "Canceled", "True" if state == RunState.CANCELED else "False", state.capitalize(), finished
    )
    if row.error and state == RunState.FAILED:
        failed["message"] = succeeded["message"] = row.error
    return [running, succeeded, failed, canceled]


def labels(row: PipelineRunRow | Row[Any]) -> dict[str, str]:
    labels = {LABEL_PIPELINE: row.pipeline_name[:63], LABEL_STATE: row.state}
    if row.experiment_id:
        labels[LABEL_EXPERIMENT] = row.experiment_id
    if row.recurring_run_id:
        labels[LABEL_RECURRING] = row.recurring_run_id
    return labels


def to_manifest(
    row: PipelineRunRow | Row[Any],
    tasks: list[PipelineTaskRow] | None = None,
    *,
    full: bool = False,
) -> Manifest:
    """The run (its row, or the row of its columns an UPDATE returned) as a PipelineRun
    manifest (``tasks`` adds them to its status); ``full`` adds the IR."""
    spec: dict[str, Any] = {
        "pipelineName": row.pipeline_name,
        "displayName": row.display_name,
        "parameters": dict(row.parameters or {}),
        "pipelineRoot": row.pipeline_root,
    }
    for key, value in (
        ("enableCaching", row.enable_caching),
        ("experimentId", row.experiment_id),
        ("pipelineId", row.pipeline_id),
        ("pipelineVersionId", row.pipeline_version_id),
        ("recurringRunId", row.recurring_run_id),
    ):
        if value is not None:
            spec[key] = value
    if full:
        spec["pipelineSpec"] = row.pipeline_spec
    status: dict[str, Any] = {"state": row.state, "conditions": run_conditions(row)}
    for key, value in (
        ("startTime", _time(row.started_at)),
        ("completionTime", _time(row.finished_at)),
        ("error", row.error),
    ):
        if value:
            status[key] = value
    if row.outputs:
        status["outputs"] = row.outputs
    if tasks is not None:
        status["tasks"] = [served_task(t) for t in tasks]
    return {
        "apiVersion": PIPELINE_RUN.api_version,
        "kind": PIPELINE_RUN.kind,
        "metadata": {
            "name": row.id,
            "namespace": row.namespace,
            "uid": row.id,
            "labels": labels(row),
            "annotations": {DISPLAY_NAME: row.display_name},
            "generation": 1,
            "resourceVersion": str(row.resource_version or 0),
            "creationTimestamp": _time(row.created_at),
        },
        "spec": spec,
        "status": status,
    }


def served_task(task: PipelineTaskRow) -> dict[str, Any]:
    """What a run's manifest shows of ``task`` (a write that leaves it as it was
    changes no manifest)."""
    item: dict[str, Any] = {
        "path": task.path,
        "name": task.display_name or task.name,
        "type": task.type,
        "state": task.state,
        "cached": task.cached,
        "attempts": task.attempts,
    }
    for key, value in (
        ("startTime", _time(task.started_at)),
        ("completionTime", _time(task.finished_at)),
        ("logPath", task.log_path),
        ("error", task.error),
    ):
        if value:
            item[key] = value
    return item


#: The run columns a manifest shows (all but the IR), read back by a journaled write.
_RUNS = cast(Table, PipelineRunRow.__table__)
_SHOWN = [c for c in _RUNS.c if c.name != "pipeline_spec"]


def journal_run(
    session: Session,
    run: str | PipelineRunRow,
    type_: ChangeType = "MODIFIED",
    *,
    only_from: Iterable[str] | None = None,
    **values: Any,
) -> Any:
    """Give run ``run`` the store's next revision and journal its manifest, in
        ``session``'s write transaction: ``ADDED`` for a new run (its row, added to the
        session), ``MODIFIED`` for a run written (its id, and the column ``values`` this
        write sets, if any: one UPDATE sets them with the revision and reads the run back),
        or ``DELETED`` (its row, before it is removed: the run as it was, at the revision of
        its deletion). ``only_from``: a run written by id is written only while its state is
    one of these. The run as written, or ``None`` when there is no such run (or it was not
    in one of those states)."""
    revision = next_revision(session)
    row: Any
    if isinstance(run, str):
        # a Core statement (not the ORM's bulk update): this runs for every task a
        # pipeline starts and finishes
        statement = update(_RUNS).where(_RUNS.c.id == run)
        if only_from is not None:
            statement = statement.where(_RUNS.c.state.in_(list(only_from)))
        row = session.execute(
            statement.values(**values, resource_version=revision).returning(*_SHOWN)
        ).first()
        if row is None:
            return None
    else:
        row = run
        for name, value in values.items():
            setattr(row, name, value)
        row.resource_version = revision
    journal(session, revision, type_, to_manifest(row))
    return row
