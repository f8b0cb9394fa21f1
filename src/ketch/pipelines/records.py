"""Storing runs, tasks, lineage and the task cache.

Every state change is committed before the engine acts on it, so the server
and the dashboard show runs made from the CLI, and a crash leaves a consistent
store. Lineage follows ML Metadata: executions, artifacts, and INPUT/OUTPUT
events between them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import select, update

from ketch.core.store.db import Database, retry_locked
from ketch.core.store.pods import PodRecord, PodStore
from ketch.core.timestamps import utcnow
from ketch.pipelines.manifests import journal_run, served_task
from ketch.pipelines.tables import (
    ArtifactRow,
    CacheEntryRow,
    ExecutionRow,
    LineageEventRow,
    PipelineRunRow,
    PipelineTaskRow,
)
from ketch.pipelines.tasks import Node, RunContext

_EXECUTION_TYPES = {
    "container": "system.ContainerExecution",
    "importer": "system.ImporterExecution",
    "dag": "system.DAGExecution",
    "loop": "system.DAGExecution",
    "iteration": "system.DAGExecution",
}
_MLMD_STATE = {
    "RUNNING": "RUNNING",
    "SUCCEEDED": "COMPLETE",
    "FAILED": "FAILED",
    "CANCELED": "CANCELED",
    "SKIPPED": "CANCELED",
}


def public_artifact(art: dict[str, Any], *, with_id: bool = False) -> dict[str, Any]:
    """An artifact as runs, tasks and clients show it (type as its schema title)."""
    out = {
        "name": art.get("name", ""),
        "uri": art.get("uri", ""),
        "type": art.get("type", {}).get("schemaTitle", "system.Artifact"),
        "metadata": art.get("metadata", {}),
    }
    if with_id and "id" in art:
        out["id"] = art["id"]
    return out


def _public_artifacts(arts: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    return {k: [public_artifact(a, with_id=True) for a in v] for k, v in arts.items()}


def _internal_artifact(art: dict[str, Any]) -> dict[str, Any]:
    out = dict(art)
    if isinstance(out.get("type"), str):
        out["type"] = {"schemaTitle": out["type"]}
    return out


class Recorder:
    """Writes a run's progress to the store (SQLite or PostgreSQL) in ``database``."""

    def __init__(self, database: Database):
        self.database = database
        # the tasks' pods (taskpods.TaskPods), stored with the tasks' starts and ends
        self.pods = PodStore(database)

    # ------------------------------------------------------------ runs

    def create_run(
        self,
        ctx: RunContext,
        arguments: dict[str, Any],
        *,
        owner: str,
        state: str = "RUNNING",
        namespace: str = "default",
        experiment_id: str | None = None,
        pipeline_id: str | None = None,
        pipeline_version_id: str | None = None,
        recurring_run_id: str | None = None,
    ) -> None:
        def write() -> None:
            with self.database.session() as s:
                row = PipelineRunRow(
                    id=ctx.run_id,
                    display_name=ctx.display_name,
                    pipeline_name=ctx.ir.name,
                    namespace=namespace,
                    experiment_id=experiment_id,
                    pipeline_id=pipeline_id,
                    pipeline_version_id=pipeline_version_id,
                    recurring_run_id=recurring_run_id,
                    owner=owner,
                    state=state,
                    pipeline_spec=ctx.ir.spec,
                    parameters=arguments,
                    pipeline_root=ctx.pipeline_root,
                    enable_caching=ctx.enable_caching,
                    outputs={},
                    created_at=ctx.created_at,
                    started_at=utcnow() if state == "RUNNING" else None,
                )
                s.add(row)
                journal_run(s, row, "ADDED")

        retry_locked(write)

    def set_run_state(
        self, run_id: str, state: str, *, only_from: Iterable[str] | None = None, **values: Any
    ) -> bool:
        """Write the run's state (and ``values``); with ``only_from``, only while its
        state is one of those. Whether it was written."""

        def write() -> bool:
            with self.database.session() as s:
                # with its next revision
                written = journal_run(s, run_id, only_from=only_from, state=state, **values)
                return written is not None

        return retry_locked(write)

    def load_progress(self, run_id: str) -> tuple[dict[str, str], dict[str, dict[str, Any]]]:
        """Task ids by path, and the finished leaf tasks (their outputs) of a stored run."""
        ids: dict[str, str] = {}
        done: dict[str, dict[str, Any]] = {}
        with self.database.session(readonly=True) as s:
            rows = s.execute(
                select(PipelineTaskRow).where(PipelineTaskRow.run_id == run_id)
            ).scalars()
            for row in rows:
                ids[row.path] = row.id
                if row.state == "SUCCEEDED" and row.type in ("container", "importer"):
                    outputs = row.outputs or {}
                    done[row.path] = {
                        "id": row.id,
                        "parameters": outputs.get("parameters", {}),
                        "artifacts": {
                            k: [_internal_artifact(a) for a in v]
                            for k, v in outputs.get("artifacts", {}).items()
                        },
                        "cached": row.cached,
                        "attempts": row.attempts,
                        "log_path": row.log_path,
                        "cache_key": row.cache_key,
                        "started_at": row.started_at,
                        "finished_at": row.finished_at,
                    }
        return ids, done

    def finish_run(
        self, run_id: str, state: str, outputs: dict[str, Any], error: str | None
    ) -> None:
        self.set_run_state(run_id, state, outputs=outputs, error=error, finished_at=utcnow())

    # ------------------------------------------------------------ tasks

    def task_started(self, ctx: RunContext, node: Node, pods: Sequence[PodRecord] = ()) -> None:
        """Record that ``node`` started, with ``pods`` (the pod of the process it
        started) in the same write."""

        def write() -> None:
            with self.database.session() as s:
                row, before = self._started(s, ctx, node)
                row.error = None  # a resumed or retried run may start the task again
                row.finished_at = None
                self._task_written(s, ctx, row, before)
                self.pods.put_in(s, pods)

        retry_locked(write)
        node.start_pending = False

    def task_waiting(self, ctx: RunContext, node: Node, reason: str) -> None:
        """Record that ``node`` waits to start (PENDING) and why (its ``error``, until
        it starts): its namespace's quota has no room for it yet."""

        def write() -> None:
            with self.database.session() as s:
                row, before = self._task_row(s, ctx, node)
                row.state = "PENDING"
                row.error = reason
                self._task_written(s, ctx, row, before)

        retry_locked(write)

    def task_finished(self, ctx: RunContext, node: Node) -> None:
        """Record that ``node`` ended, with its pod (``node.pod``) and, for a task whose
        start is not recorded yet (``node.start_pending``: it ended without a process),
        its start, in one write."""

        def write() -> None:
            with self.database.session() as s:
                if node.start_pending and not node.reused:
                    row, before = self._started(s, ctx, node)
                else:  # new if it never started (skipped, ...)
                    row, before = self._task_row(s, ctx, node)
                row.state = node.state
                row.inputs = self._inputs(node)
                row.outputs = {
                    "parameters": node.outputs,
                    "artifacts": _public_artifacts(node.output_artifacts),
                }
                row.error = node.error
                row.log_path = node.log_path
                row.attempts = node.attempts
                row.cached = node.cached
                row.cache_key = node.cache_key
                row.finished_at = node.finished_at or utcnow()
                self._task_written(s, ctx, row, before)
                if node.pod is not None:
                    self.pods.put_in(s, [node.pod])
                if node.cache_pending:  # before lineage gives its outputs their ids
                    self._cache_put(s, ctx, node)
                if node.reused:
                    return
                if node.execution_id is None and node.state in ("SUCCEEDED", "FAILED"):
                    self._new_execution(s, ctx, node)
                if node.execution_id is not None and node.resources:
                    execution = s.get(ExecutionRow, node.execution_id)
                    if execution is not None:
                        execution.properties = {**execution.properties, "resources": node.resources}
                if node.execution_id is not None:
                    state = "CACHED" if node.cached else _MLMD_STATE.get(node.state, node.state)
                    s.execute(
                        update(ExecutionRow)
                        .where(ExecutionRow.id == node.execution_id)
                        .values(state=state, updated_at=utcnow())
                    )
                    if node.state == "SUCCEEDED" and node.type in ("container", "importer"):
                        self._output_events(s, ctx, node, node.execution_id)

        retry_locked(write)
        node.start_pending = node.cache_pending = False

    def _started(
        self, s: Any, ctx: RunContext, node: Node
    ) -> tuple[PipelineTaskRow, dict[str, Any] | None]:
        """Record in ``s`` that ``node`` started: its execution, the artifacts it reads
        and its task row (not journaled yet: see :meth:`_task_row`)."""
        execution_id = self._new_execution(s, ctx, node)
        row, before = self._task_row(s, ctx, node)
        row.state = node.state
        row.inputs = self._inputs(node)
        row.log_path = node.log_path
        row.started_at = node.started_at or utcnow()
        self._input_events(s, ctx, node, execution_id)
        return row, before

    @staticmethod
    def _new_execution(s: Any, ctx: RunContext, node: Node) -> int:
        execution = ExecutionRow(
            run_id=ctx.run_id,
            task_id=node.id,
            type=_EXECUTION_TYPES.get(node.type, "system.ContainerExecution"),
            state="RUNNING",
            properties={"task_name": node.name, "path": node.path},
            created_at=utcnow(),
            updated_at=utcnow(),
        )
        s.add(execution)
        s.flush()
        node.execution_id = execution.id
        return execution.id

    @staticmethod
    def _task_written(
        s: Any, ctx: RunContext, row: PipelineTaskRow, before: dict[str, Any] | None
    ) -> None:
        """A task was added (``before`` is ``None``) or written: when that changes what
        the run's manifest shows of it, the run takes the next revision."""
        if before is None or served_task(row) != before:
            journal_run(s, ctx.run_id)

    @staticmethod
    def _task_row(
        s: Any, ctx: RunContext, node: Node
    ) -> tuple[PipelineTaskRow, dict[str, Any] | None]:
        """The node's task row, added to the session when it is not stored yet, and
        what the run's manifest showed of it (``None`` for a new one)."""
        row = s.get(PipelineTaskRow, node.id)
        if row is not None:
            return row, served_task(row)
        row = PipelineTaskRow(
            id=node.id,
            run_id=ctx.run_id,
            path=node.path,
            name=node.name,
            display_name=node.task.get("taskInfo", {}).get("name", node.name),
            parent_path=node.path.rsplit("/", 1)[0] if "/" in node.path else None,
            type=node.type,
            state=node.state,
            inputs={},
            outputs={},
            created_at=node.started_at or utcnow(),
            started_at=node.started_at,
        )
        s.add(row)
        return row, None

    @staticmethod
    def _inputs(node: Node) -> dict[str, Any]:
        return {"parameters": node.inputs, "artifacts": _public_artifacts(node.input_artifacts)}

    def _input_events(self, s: Any, ctx: RunContext, node: Node, execution_id: int) -> None:
        if node.type not in ("container", "importer"):
            return
        for key, arts in node.input_artifacts.items():
            for art in arts:
                art_id = art.get("id") or self._artifact_id(s, ctx, art)
                art["id"] = art_id
                s.add(
                    LineageEventRow(
                        execution_id=execution_id,
                        artifact_id=art_id,
                        type="INPUT",
                        key=key,
                        created_at=utcnow(),
                    )
                )

    def _output_events(self, s: Any, ctx: RunContext, node: Node, execution_id: int) -> None:
        for key, arts in node.output_artifacts.items():
            for art in arts:
                if art.get("id"):
                    art_id = art["id"]
                elif node.cached:  # the artifact a cached execution made earlier
                    art_id = self._artifact_id(s, ctx, art)
                else:
                    art_id = self._new_artifact(s, ctx, art)
                art["id"] = art_id
                s.add(
                    LineageEventRow(
                        execution_id=execution_id,
                        artifact_id=art_id,
                        type="OUTPUT",
                        key=key,
                        created_at=utcnow(),
                    )
                )

    def _new_artifact(self, s: Any, ctx: RunContext, art: dict[str, Any]) -> int:
        row = ArtifactRow(
            run_id=ctx.run_id,
            name=art.get("name", ""),
            type=art.get("type", {}).get("schemaTitle", "system.Artifact"),
            uri=art.get("uri", ""),
            metadata_=art.get("metadata", {}),
            created_at=utcnow(),
        )
        s.add(row)
        s.flush()
        return row.id

    def _artifact_id(self, s: Any, ctx: RunContext, art: dict[str, Any]) -> int:
        found = s.execute(
            select(ArtifactRow.id)
            .where(ArtifactRow.uri == art.get("uri", ""))
            .order_by(ArtifactRow.id.desc())
            .limit(1)
        ).scalar()
        return int(found) if found is not None else self._new_artifact(s, ctx, art)

    def find_artifact(self, uri: str, type_title: str) -> int | None:
        with self.database.session(readonly=True) as s:
            found = s.execute(
                select(ArtifactRow.id)
                .where(ArtifactRow.uri == uri, ArtifactRow.type == type_title)
                .order_by(ArtifactRow.id)
                .limit(1)
            ).scalar()
        return int(found) if found is not None else None

    # ------------------------------------------------------------ cache

    def cache_lookup(self, key: str) -> dict[str, Any] | None:
        with self.database.session(readonly=True) as s:
            row = s.get(CacheEntryRow, key)
            return dict(row.outputs) if row is not None else None

    def cache_store(self, ctx: RunContext, node: Node) -> None:
        """Put ``node``'s outputs in the task cache, in a write of their own (a task's
        end puts them there with it: ``node.cache_pending``)."""

        def write() -> None:
            with self.database.session() as s:
                self._cache_put(s, ctx, node)

        retry_locked(write)

    @staticmethod
    def _cache_put(s: Any, ctx: RunContext, node: Node) -> None:
        assert node.cache_key is not None
        entry = s.get(CacheEntryRow, node.cache_key)
        payload = {  # as they are now: what the write goes on to note on them is not kept
            "parameters": dict(node.outputs),
            "artifacts": {k: [dict(a) for a in v] for k, v in node.output_artifacts.items()},
        }
        if entry is None:
            s.add(
                CacheEntryRow(
                    key=node.cache_key,
                    pipeline_name=ctx.ir.name,
                    task_name=node.name,
                    run_id=ctx.run_id,
                    outputs=payload,
                    created_at=utcnow(),
                )
            )
        else:
            entry.outputs, entry.run_id, entry.created_at = payload, ctx.run_id, utcnow()
