"""``PipelineRun`` (pipelines.ketch.dev/v1): stored pipeline runs seen as resources.

A run's ``metadata.name`` (and ``uid``) is its run id; its display name is the
annotation ``pipelines.ketch.dev/display-name``. ``status.state`` is the KFP run
state and ``status.conditions`` holds ``Running``, ``Succeeded``, ``Failed`` and
``Canceled``. Creating a PipelineRun submits a run: ``spec.pipelineSpec`` (the
compiled IR) and ``spec.parameters``, optionally ``enableCaching``, ``pipelineRoot``,
``experimentId``; ``metadata.name`` becomes the run's display name. Runs cannot be
changed once submitted; a finished run can be deleted.

:class:`PipelineRunSource` serves the kind to the resource API (a
:class:`~ketch.core.sources.Source` over the ``pipeline_runs`` and
``pipeline_tasks`` tables); :func:`validate` is its admission check.
"""

from __future__ import annotations

import builtins
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import case, delete, func, select

from ketch.core.conditions import TERMINAL_RUN_STATES, RunState
from ketch.core.errors import Conflict, InvalidSpec, KetchError, NotFound, ObjectNotFound
from ketch.core.kinds import Kind
from ketch.core.paging import decode_token, encode_token
from ketch.core.resource import Resource
from ketch.core.sources import ApplyResult, Check, Manifest, MethodNotAllowed, Page
from ketch.core.store.db import Database, retry_locked
from ketch.core.store.pods import delete_owned_in
from ketch.core.store.selectors import LabelSelector
from ketch.core.timestamps import format_time
from ketch.pipelines.kinds import (
    DISPLAY_NAME,
    LABEL_EXPERIMENT,
    LABEL_PIPELINE,
    LABEL_RECURRING,
    LABEL_STATE,
    PIPELINE_RUN,
)
from ketch.pipelines.owners import Reaper
from ketch.pipelines.tables import PipelineRunRow, PipelineTaskRow

if TYPE_CHECKING:
    from ketch.pipelines.service import RunService

log = logging.getLogger(__name__)

TERMINAL_TASK_STATES = TERMINAL_RUN_STATES

_SPEC_KEYS = {
    "pipelineSpec",
    "parameters",
    "enableCaching",
    "pipelineRoot",
    "experimentId",
    "pipelineId",
    "pipelineVersionId",
    "displayName",
}
# What the server adds to the spec it serves (to_manifest): accepted when a client
# sends a run back as it read it, and ignored.
_SERVED_KEYS = {"pipelineName", "recurringRunId"}
_TEXT_KEYS = ("pipelineRoot", "experimentId", "pipelineId", "pipelineVersionId", "displayName")


class RunServiceUnavailable(KetchError):
    """The server serves stored runs but executes none (it runs no run service)."""

    http_status = 503


# -- the spec ----------------------------------------------------------------------


@dataclass(frozen=True)
class RunSpec:
    """What a PipelineRun asks for, checked."""

    pipeline_spec: dict[str, Any]
    parameters: dict[str, Any]
    enable_caching: bool | None
    pipeline_root: str | None
    experiment_id: str | None
    pipeline_id: str | None
    pipeline_version_id: str | None
    display_name: str | None

    @classmethod
    def of(cls, resource: Resource) -> RunSpec:
        """The spec of ``resource``; ``InvalidSpec`` names the field that is wrong."""
        spec = resource.spec
        unknown = sorted(set(spec) - _SPEC_KEYS - _SERVED_KEYS)
        if unknown:
            raise InvalidSpec(
                f"unknown field; a PipelineRun spec has {', '.join(sorted(_SPEC_KEYS))}",
                field=f"spec.{unknown[0]}",
            )
        ir = spec.get("pipelineSpec")
        if not isinstance(ir, dict) or not ir:
            raise InvalidSpec(
                "the compiled pipeline (IR) is required",
                field="spec.pipelineSpec",
                hint="compile it with kfp's compiler and put the YAML document here",
            )
        parameters = spec.get("parameters") or {}
        if not isinstance(parameters, dict):
            raise InvalidSpec(
                "must be a mapping of parameter names to values", field="spec.parameters"
            )
        caching = spec.get("enableCaching")
        if caching is not None and not isinstance(caching, bool):
            raise InvalidSpec("must be true or false", field="spec.enableCaching")
        for key in _TEXT_KEYS:
            if spec.get(key) is not None and not isinstance(spec[key], str):
                raise InvalidSpec("must be a string", field=f"spec.{key}")
        return cls(
            pipeline_spec=ir,
            parameters=parameters,
            enable_caching=caching,
            pipeline_root=spec.get("pipelineRoot"),
            experiment_id=spec.get("experimentId"),
            pipeline_id=spec.get("pipelineId"),
            pipeline_version_id=spec.get("pipelineVersionId"),
            display_name=spec.get("displayName"),
        )


def validate(resource: Resource) -> None:
    """The PipelineRun validator: a bad spec is refused before a run is stored."""
    RunSpec.of(resource)


def default_name(manifest: Manifest) -> str:
    """An unnamed run is named after its pipeline (``pipelineInfo.name``)."""
    spec = manifest.get("spec")
    ir = spec.get("pipelineSpec") if isinstance(spec, dict) else None
    info = ir.get("pipelineInfo") if isinstance(ir, dict) else None
    name = info.get("name") if isinstance(info, dict) else None
    cleaned = re.sub(r"[^a-z0-9.-]+", "-", str(name or "").lower()).strip("-.")
    return cleaned[:200].strip("-.") or "pipeline-run"


# -- the manifest --------------------------------------------------------------------


def _time(value: datetime | None) -> str | None:
    return format_time(value) if value is not None else None


def _condition(type_: str, status: str, reason: str, when: datetime | None) -> dict[str, Any]:
    condition = {"type": type_, "status": status, "reason": reason, "message": ""}
    stamp = _time(when)
    if stamp:
        condition["lastTransitionTime"] = stamp
    return condition


def run_conditions(row: PipelineRunRow) -> list[dict[str, Any]]:
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


def _labels(row: PipelineRunRow) -> dict[str, str]:
    labels = {LABEL_PIPELINE: row.pipeline_name[:63], LABEL_STATE: row.state}
    if row.experiment_id:
        labels[LABEL_EXPERIMENT] = row.experiment_id
    if row.recurring_run_id:
        labels[LABEL_RECURRING] = row.recurring_run_id
    return labels


def _version(row: PipelineRunRow, tasks: int, done: int) -> str:
    return f"{row.state}.{tasks}.{done}"


def to_manifest(
    row: PipelineRunRow,
    tasks: list[PipelineTaskRow] | None = None,
    *,
    counts: tuple[int, int] = (0, 0),
    full: bool = False,
) -> Manifest:
    """The run as a PipelineRun manifest; ``full`` adds the IR and the tasks."""
    if tasks is not None:
        counts = (len(tasks), sum(1 for t in tasks if t.state in TERMINAL_TASK_STATES))
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
        status["tasks"] = [_task(t) for t in tasks]
    return {
        "apiVersion": PIPELINE_RUN.api_version,
        "kind": PIPELINE_RUN.kind,
        "metadata": {
            "name": row.id,
            "namespace": row.namespace,
            "uid": row.id,
            "labels": _labels(row),
            "annotations": {DISPLAY_NAME: row.display_name},
            "generation": 1,
            "resourceVersion": _version(row, *counts),
            "creationTimestamp": _time(row.created_at),
        },
        "spec": spec,
        "status": status,
    }


def _task(task: PipelineTaskRow) -> dict[str, Any]:
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


def _offset(token: str) -> int:
    value = decode_token(token, field="continue", keys=("offset",))["offset"]
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidSpec("the continue token is not one this server issued", field="continue")
    return value


# -- the source -----------------------------------------------------------------------


class PipelineRunSource:
    """Serves ``PipelineRun`` from the ``pipeline_runs`` and ``pipeline_tasks`` tables.

    ``runs`` gives the run service that creating a PipelineRun submits to (``None``
    while there is none: runs are only read); ``reaper`` ends the runs of dead
    ``ketch run`` processes before a read (one is made when none is given).
    """

    def __init__(
        self,
        database: Database,
        runs: Callable[[], RunService | None] = lambda: None,
        reaper: Reaper | None = None,
    ) -> None:
        self.database = database
        self.runs = runs
        self.reaper = reaper or Reaper(database)

    # -- reads -----------------------------------------------------------------

    def row(self, namespace: str, name: str) -> PipelineRunRow:
        with self.database.session(readonly=True) as session:
            row = session.get(PipelineRunRow, name)
            if row is None or row.namespace != namespace:
                raise ObjectNotFound(
                    f"PipelineRun {name!r} not found in namespace {namespace!r}",
                    kind="PipelineRun",
                    namespace=namespace,
                    name=name,
                    hint=f"list runs with: ketch get runs -n {namespace}",
                )
            return row

    def tasks(self, run_id: str) -> list[PipelineTaskRow]:
        with self.database.session(readonly=True) as session:
            query = (
                select(PipelineTaskRow)
                .where(PipelineTaskRow.run_id == run_id)
                .order_by(PipelineTaskRow.created_at, PipelineTaskRow.path)
            )
            return list(session.scalars(query).all())

    def task(self, run_id: str, path: str) -> PipelineTaskRow | None:
        return next((t for t in self.tasks(run_id) if t.path == path), None)

    def state(self, run_id: str) -> str | None:
        with self.database.session(readonly=True) as session:
            return session.scalar(select(PipelineRunRow.state).where(PipelineRunRow.id == run_id))

    def _reap(self) -> None:
        """Runs of a ``ketch run`` that died end FAILED before anyone reads them."""
        try:
            self.reaper.reap()
        except Exception:  # a read must still answer
            log.debug("could not check the owners of in-flight runs", exc_info=True)

    def get(self, kind: Kind, namespace: str, name: str) -> Manifest:
        self._reap()
        row = self.row(namespace, name)
        return to_manifest(row, self.tasks(row.id), full=True)

    def list(
        self,
        kind: Kind,
        namespace: str | None,
        *,
        label_selector: str | None,
        limit: int | None,
        continue_token: str | None,
    ) -> Page:
        if limit is not None and limit <= 0:
            raise InvalidSpec(f"limit must be positive, got {limit}", field="limit")
        selector = LabelSelector.parse(label_selector)
        offset = _offset(continue_token) if continue_token else 0
        self._reap()
        query = select(PipelineRunRow).order_by(PipelineRunRow.created_at.desc(), PipelineRunRow.id)
        if namespace is not None:
            query = query.where(PipelineRunRow.namespace == namespace)
        with self.database.session(readonly=True) as session:
            rows = list(session.scalars(query).all())
            counts = self._counts(session, None)
        matching = [r for r in rows if selector.matches(_labels(r))]
        page = matching[offset : offset + limit] if limit is not None else matching[offset:]
        items = [to_manifest(r, counts=counts.get(r.id, (0, 0))) for r in page]
        more = limit is not None and offset + limit < len(matching)
        return Page(items, encode_token({"offset": offset + len(page)}) if more else None)

    @staticmethod
    def _counts(session: Any, run_ids: builtins.list[str] | None) -> dict[str, tuple[int, int]]:
        done = func.sum(case((PipelineTaskRow.state.in_(TERMINAL_TASK_STATES), 1), else_=0))
        query = select(PipelineTaskRow.run_id, func.count(), done).group_by(PipelineTaskRow.run_id)
        if run_ids is not None:
            query = query.where(PipelineTaskRow.run_id.in_(run_ids))
        return {run_id: (int(n), int(d or 0)) for run_id, n, d in session.execute(query)}

    def versions(
        self, kind: Kind, namespace: str | None, selector: LabelSelector
    ) -> dict[str, str]:
        query = select(PipelineRunRow)
        if namespace is not None:
            query = query.where(PipelineRunRow.namespace == namespace)
        with self.database.session(readonly=True) as session:
            rows = list(session.scalars(query).all())
            counts = self._counts(session, None)
        return {
            r.id: _version(r, *counts.get(r.id, (0, 0)))
            for r in rows
            if selector.matches(_labels(r))
        }

    def fetch(self, kind: Kind, uids: Iterable[str]) -> dict[str, Manifest]:
        wanted = builtins.list(uids)
        if not wanted:
            return {}
        with self.database.session(readonly=True) as session:
            rows = session.scalars(select(PipelineRunRow).where(PipelineRunRow.id.in_(wanted)))
            found = builtins.list(rows)
            counts = self._counts(session, wanted)
        return {r.id: to_manifest(r, counts=counts.get(r.id, (0, 0))) for r in found}

    def default_name(self, kind: Kind, manifest: Manifest) -> str | None:
        return default_name(manifest)

    # -- writes ----------------------------------------------------------------

    def _service(self) -> RunService:
        service = self.runs()
        if service is None:
            raise RunServiceUnavailable(
                "this server cannot run pipelines: the run service is not available",
                hint="start the server with 'ketch up'",
            )
        return service

    def create(self, kind: Kind, resource: Resource) -> Manifest:
        spec = RunSpec.of(resource)
        run_id = self._service().submit(
            spec.pipeline_spec,
            parameters=spec.parameters,
            display_name=spec.display_name or resource.metadata.name,
            namespace=resource.metadata.namespace,
            experiment_id=spec.experiment_id,
            pipeline_id=spec.pipeline_id,
            pipeline_version_id=spec.pipeline_version_id,
            enable_caching=spec.enable_caching,
            pipeline_root=spec.pipeline_root,
        )
        return self.get(kind, resource.metadata.namespace, str(run_id))

    def apply(self, kind: Kind, resource: Resource) -> tuple[Manifest, ApplyResult]:
        meta = resource.metadata
        try:
            current = self.get(kind, meta.namespace, meta.name)
        except NotFound:
            return self.create(kind, resource), "created"
        wanted = {k: v for k, v in resource.spec.items() if k in ("parameters", "pipelineSpec")}
        have = {k: current["spec"].get(k) for k in wanted}
        if wanted != have:
            raise Conflict(
                f"PipelineRun {meta.name!r} exists and a run cannot be changed",
                hint="submit a new run instead (leave out metadata.name or pick a new one)",
            )
        return current, "unchanged"

    def patch(
        self, kind: Kind, namespace: str, name: str, patch: Manifest, check: Check | None = None
    ) -> Manifest:
        raise MethodNotAllowed("a PipelineRun cannot be patched; submit a new run instead")

    def put_status(
        self, kind: Kind, namespace: str, name: str, status: Manifest, resource_version: str | None
    ) -> Manifest:
        raise MethodNotAllowed("a PipelineRun's status is written by the pipeline engine only")

    def delete(self, kind: Kind, namespace: str, name: str) -> Manifest:
        row = self.row(namespace, name)
        if row.state not in TERMINAL_RUN_STATES:
            raise Conflict(
                f"PipelineRun {name!r} is {row.state}; only a finished run can be deleted",
                hint=f"cancel it first: ketch runs cancel {name}",
            )
        manifest = to_manifest(row, self.tasks(row.id))

        def remove() -> None:
            with self.database.session() as session:
                session.execute(delete(PipelineTaskRow).where(PipelineTaskRow.run_id == row.id))
                session.execute(delete(PipelineRunRow).where(PipelineRunRow.id == row.id))
                delete_owned_in(session, row.id)  # its tasks' pods

        retry_locked(remove)
        return manifest
