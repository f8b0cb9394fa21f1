"""What Ketch's API adds to KFP's about one task of a run and its artifacts (the KFP UI
reads these from ML Metadata):

- ``GET /apis/v2beta1/runs/{run_id}/nodes/{node_id}``: the task (``node_id`` is its
  ``task_id`` from ``run_details``; its path is accepted too) with its type, path,
  state, error and its inputs and outputs: parameters, and artifacts with their ids,
  types, URIs and metadata (a Metrics artifact's values, a ClassificationMetrics'
  confusion matrix and ROC points).
- ``GET /apis/v2beta1/runs/{run_id}/nodes/{node_id}/artifacts/{name}:head?bytes=N``:
  the first ``N`` bytes (at most 1 MiB) of an output artifact's file (of its
  directory's first file), so a preview never reads more than it shows; the header
  ``X-Ketch-Artifact-Size`` gives the whole size where it is known.
- ``GET /apis/v2beta1/runs/{run_id}/artifacts/{artifact_id}/lineage``: the artifact
  (one of the run's tasks made or read it), the tasks that made it with what they
  read, and the tasks that read it, in every run the caller may read.

Each is ``get`` on the run (its artifacts: ``runs/artifacts``), as KFP's readArtifact.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from sqlalchemy import select

from ketch.core.access import Verb, check_of, rule
from ketch.core.errors import KetchError, NotFound
from ketch.pipelines.api.access import ARTIFACTS, RUNS, attributes, by_id
from ketch.pipelines.api.common import catalog_of, json_response
from ketch.pipelines.api.paths import PREFIX
from ketch.pipelines.kfp_models import status, ts
from ketch.pipelines.tables import (
    ArtifactRow,
    ExecutionRow,
    LineageEventRow,
    PipelineRunRow,
    PipelineTaskRow,
)

router = APIRouter(tags=["kfp v2beta1"])

#: the most a ``:head`` reads
MAX_HEAD_BYTES = 1024 * 1024


def _artifact(art: dict[str, Any]) -> dict[str, Any]:
    out = {
        "name": art.get("name", ""),
        "type": art.get("type", "system.Artifact"),
        "uri": art.get("uri", ""),
        "metadata": art.get("metadata") or {},
    }
    if art.get("id") is not None:
        out["artifact_id"] = str(art["id"])
    return out


def _side(values: dict[str, Any] | None) -> dict[str, Any]:
    values = values or {}
    return {
        "parameters": dict(values.get("parameters") or {}),
        "artifacts": {
            key: [_artifact(a) for a in arts]
            for key, arts in (values.get("artifacts") or {}).items()
        },
    }


def _task_of(rows: list[PipelineTaskRow], run_id: str, node_id: str) -> PipelineTaskRow:
    task = next((t for t in rows if t.id == node_id), None)
    task = task or next((t for t in rows if t.path == node_id), None)
    if task is None:
        raise NotFound(f"run {run_id!r} has no task {node_id!r}", field="node_id")
    return task


def _with_ids(side: dict[str, Any], ids: dict[str, list[int]]) -> dict[str, Any]:
    """``side``'s artifacts with the ids lineage gave them (by key, in order)."""
    for key, arts in side["artifacts"].items():
        for art, found in zip(arts, ids.get(key, []), strict=False):
            art.setdefault("artifact_id", str(found))
    return side


def task_json(
    task: PipelineTaskRow,
    parent_id: str | None,
    events: dict[str, dict[str, list[int]]] | None = None,
) -> dict[str, Any]:
    """A task with its inputs and outputs (see the module); ``events``: the artifact
    ids of its execution's INPUT and OUTPUT events, by key."""
    events = events or {}
    out: dict[str, Any] = {
        "run_id": task.run_id,
        "task_id": task.id,
        "path": task.path,
        "name": task.name,
        "display_name": task.display_name,
        "type": task.type,
        "state": task.state,
        "cached": task.cached,
        "attempts": task.attempts,
        "create_time": ts(task.created_at),
        "start_time": ts(task.started_at),
        "end_time": ts(task.finished_at),
        "has_log": bool(task.log_path),
        "inputs": _with_ids(_side(task.inputs), events.get("INPUT", {})),
        "outputs": _with_ids(_side(task.outputs), events.get("OUTPUT", {})),
    }
    if parent_id:
        out["parent_task_id"] = parent_id
    if task.error:
        out["error"] = status(task.error)
    return {k: v for k, v in out.items() if v is not None}


@router.get(f"{PREFIX}/runs/{{run_id}}/nodes/{{node_id}}")
@rule(by_id(Verb.GET, RUNS, "run_id"))
def get_task(request: Request, run_id: str, node_id: str) -> Response:
    catalog = catalog_of(request)
    catalog.get_run(run_id)
    rows = catalog.task_rows(run_id)
    task = _task_of(rows, run_id, node_id)
    parent = next((t.id for t in rows if task.parent_path and t.path == task.parent_path), None)
    events: dict[str, dict[str, list[int]]] = {}
    with catalog.database.session(readonly=True) as s:
        execution = s.execute(
            select(ExecutionRow.id)
            .where(ExecutionRow.run_id == run_id, ExecutionRow.task_id == task.id)
            .order_by(ExecutionRow.id.desc())
            .limit(1)
        ).scalar()
        if execution is not None:
            for kind, key, artifact in s.execute(
                select(LineageEventRow.type, LineageEventRow.key, LineageEventRow.artifact_id)
                .where(LineageEventRow.execution_id == execution)
                .order_by(LineageEventRow.id)
            ).all():
                found = events.setdefault(kind, {}).setdefault(key, [])
                if artifact not in found:
                    found.append(artifact)
    return json_response(task_json(task, parent, events))


def _head(uri: str, size: int) -> tuple[bytes, int | None]:
    """The first ``size`` bytes of the artifact at ``uri`` and its whole size."""
    if "://" not in uri or uri.startswith("file://"):
        path = Path(uri.removeprefix("file://"))
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file())
            if not files:
                return b"", 0
            path = files[0]
        if not path.is_file():
            raise NotFound(f"the artifact file {str(path)!r} does not exist (it was removed?)")
        with path.open("rb") as f:
            return f.read(size), path.stat().st_size
    import fsspec

    try:
        with fsspec.open(uri, "rb") as f:
            return f.read(size), None
    except (OSError, ValueError, ImportError) as exc:
        raise NotFound(f"cannot read the artifact at {uri}: {exc}") from exc


@router.get(f"{PREFIX}/runs/{{run_id}}/nodes/{{node_id}}/artifacts/{{artifact_name}}:head")
@rule(by_id(Verb.GET, RUNS, "run_id", sub=ARTIFACTS))
def head_artifact(
    request: Request,
    run_id: str,
    node_id: str,
    artifact_name: str,
    size: int = Query(64 * 1024, alias="bytes", ge=0, le=MAX_HEAD_BYTES),
) -> Response:
    catalog = catalog_of(request)
    catalog.get_run(run_id)
    task = _task_of(catalog.task_rows(run_id), run_id, node_id)
    artifacts = (task.outputs or {}).get("artifacts", {}).get(artifact_name)
    if not artifacts:
        names = ", ".join(sorted((task.outputs or {}).get("artifacts", {}))) or "none"
        raise NotFound(
            f"task {task.display_name!r} has no output artifact {artifact_name!r} "
            f"(its output artifacts: {names})",
            field="artifact_name",
        )
    data, whole = _head(str(artifacts[0].get("uri", "")), size)
    headers = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
    if whole is not None:
        headers["X-Ketch-Artifact-Size"] = str(whole)
    return Response(data, media_type="application/octet-stream", headers=headers)


def _may_read(request: Request, namespace: str, run_id: str) -> bool:
    authorize = check_of(request)
    if authorize is None:
        return True
    try:
        authorize(attributes(Verb.GET, RUNS, namespace, run_id))
    except KetchError:
        return False
    return True


def _artifact_row(row: ArtifactRow) -> dict[str, Any]:
    return {
        "artifact_id": str(row.id),
        "name": row.name,
        "type": row.type,
        "uri": row.uri,
        "metadata": row.metadata_ or {},
        "run_id": row.run_id or "",
        "create_time": ts(row.created_at),
    }


@router.get(f"{PREFIX}/runs/{{run_id}}/artifacts/{{artifact_id}}/lineage")
@rule(by_id(Verb.GET, RUNS, "run_id", sub=ARTIFACTS))
def artifact_lineage(request: Request, run_id: str, artifact_id: str) -> Response:
    if not artifact_id.isdigit():
        raise NotFound(f"artifact {artifact_id!r} not found", field="artifact_id")
    key = int(artifact_id)
    catalog = catalog_of(request)
    catalog.get_run(run_id)
    with catalog.database.session(readonly=True) as s:
        artifact = s.get(ArtifactRow, key)
        touched = (
            s.execute(
                select(LineageEventRow.id)
                .join(ExecutionRow, ExecutionRow.id == LineageEventRow.execution_id)
                .where(LineageEventRow.artifact_id == key, ExecutionRow.run_id == run_id)
                .limit(1)
            ).first()
            is not None
        )
        if artifact is None or (artifact.run_id != run_id and not touched):
            raise NotFound(
                f"run {run_id!r} made or read no artifact {artifact_id!r}", field="artifact_id"
            )
        events = s.execute(
            select(LineageEventRow, ExecutionRow, PipelineTaskRow, PipelineRunRow)
            .join(ExecutionRow, ExecutionRow.id == LineageEventRow.execution_id)
            .join(PipelineRunRow, PipelineRunRow.id == ExecutionRow.run_id)
            .outerjoin(PipelineTaskRow, PipelineTaskRow.id == ExecutionRow.task_id)
            .where(LineageEventRow.artifact_id == key)
            .order_by(LineageEventRow.id)
        ).all()
        visible = {
            run.id
            for _e, _x, _t, run in events
            if run.id == run_id or _may_read(request, run.namespace, run.id)
        }
        producers = [
            (e, x, t, r) for e, x, t, r in events if e.type == "OUTPUT" and r.id in visible
        ]
        consumers = [(e, x, t, r) for e, x, t, r in events if e.type == "INPUT" and r.id in visible]
        # what the producers read: one query for all of them
        made_by = [x.id for _e, x, _t, _r in producers]
        inputs: dict[int, list[tuple[str, ArtifactRow]]] = {}
        if made_by:
            for event, row in s.execute(
                select(LineageEventRow, ArtifactRow)
                .join(ArtifactRow, ArtifactRow.id == LineageEventRow.artifact_id)
                .where(LineageEventRow.execution_id.in_(made_by), LineageEventRow.type == "INPUT")
                .order_by(LineageEventRow.id)
            ).all():
                inputs.setdefault(event.execution_id, []).append((event.key, row))

        def task_of(
            event: LineageEventRow,
            execution: ExecutionRow,
            task: PipelineTaskRow | None,
            run: PipelineRunRow,
        ) -> dict[str, Any]:
            out: dict[str, Any] = {
                "run_id": run.id,
                "run_display_name": run.display_name,
                "namespace": run.namespace,
                "execution_id": str(execution.id),
                "key": event.key,
                "task_id": task.id if task is not None else "",
                "path": task.path if task is not None else "",
                "display_name": task.display_name if task is not None else "",
                "state": task.state if task is not None else execution.state,
            }
            return out

        answer = {
            "artifact": _artifact_row(artifact),
            "produced_by": [
                {
                    **task_of(e, x, t, r),
                    "inputs": [{"key": k, **_artifact_row(a)} for k, a in inputs.get(x.id, [])],
                }
                for e, x, t, r in producers
            ],
            "consumed_by": [task_of(e, x, t, r) for e, x, t, r in consumers],
        }
    return json_response(answer)
