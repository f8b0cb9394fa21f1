"""Stored rows as KFP v2beta1 JSON: the objects ``kfp_server_api`` reads.

Field names are KFP's snake_case (``recurringRuns`` in the recurring-run list
is camelCase in KFP too). Timestamps are RFC 3339 in UTC with ``Z``; int64
fields (``interval_second``, ``max_concurrency``, ``execution_id``, artifact
ids) are strings, as protobuf's JSON mapping writes them. Unset fields are left
out rather than written as zero values.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ketch.core.conditions import TERMINAL_RUN_STATES, RunState
from ketch.core.timestamps import format_time
from ketch.pipelines.tables import (
    KfpExperimentRow,
    KfpPipelineRow,
    KfpPipelineVersionRow,
    KfpRecurringRunRow,
    KfpRunMetaRow,
    PipelineRunRow,
)

# gRPC codes used in the ``error`` status of runs and tasks.
CODE_CANCELLED = 1
CODE_UNKNOWN = 2


def ts(value: datetime | None) -> str | None:
    """RFC 3339 in UTC with ``Z`` (microseconds only when there are any)."""
    return None if value is None else format_time(value)


def status(message: str, code: int = CODE_UNKNOWN) -> dict[str, Any]:
    """A ``google.rpc.Status``."""
    return {"code": code, "message": message, "details": []}


def _drop_none(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if v is not None}


def spec_document(spec: dict[str, Any], platform_spec: dict[str, Any] | None) -> dict[str, Any]:
    """The spec as KFP returns it: the IR, or ``{pipeline_spec, platform_spec}`` with one."""
    if platform_spec:
        return {"pipeline_spec": spec, "platform_spec": platform_spec}
    return spec


# ---------------------------------------------------------------- pipelines


def pipeline(row: KfpPipelineRow) -> dict[str, Any]:
    return {
        "pipeline_id": row.id,
        "display_name": row.display_name,
        "name": row.name,
        "description": row.description,
        "created_at": ts(row.created_at),
        "namespace": row.namespace,
    }


def pipeline_version(row: KfpPipelineVersionRow) -> dict[str, Any]:
    return _drop_none(
        {
            "pipeline_id": row.pipeline_id,
            "pipeline_version_id": row.id,
            "display_name": row.display_name,
            "name": row.name,
            "description": row.description,
            "created_at": ts(row.created_at),
            "package_url": {"pipeline_url": row.package_url} if row.package_url else None,
            "code_source_url": row.code_source_url,
            "pipeline_spec": spec_document(row.pipeline_spec, row.platform_spec),
        }
    )


# ---------------------------------------------------------------- experiments


def experiment(row: KfpExperimentRow, last_run_created_at: datetime | None) -> dict[str, Any]:
    return _drop_none(
        {
            "experiment_id": row.id,
            "display_name": row.display_name,
            "description": row.description,
            "created_at": ts(row.created_at),
            "namespace": row.namespace,
            "storage_state": row.storage_state,
            "last_run_created_at": ts(last_run_created_at),
        }
    )


# ---------------------------------------------------------------- runs


def state_history(row: PipelineRunRow) -> list[dict[str, Any]]:
    """What the stored timestamps tell of a run's states, oldest first."""
    history = [{"update_time": ts(row.created_at), "state": RunState.PENDING.value}]
    if row.started_at is not None:
        history.append({"update_time": ts(row.started_at), "state": RunState.RUNNING.value})
    if row.state in TERMINAL_RUN_STATES and row.finished_at is not None:
        history.append({"update_time": ts(row.finished_at), "state": row.state})
    elif row.state not in (RunState.PENDING, RunState.RUNNING):
        history.append(
            {
                "update_time": ts(row.finished_at or row.started_at or row.created_at),
                "state": row.state,
            }
        )
    return history


def run(
    row: PipelineRunRow,
    meta: KfpRunMetaRow | None,
    task_details: list[dict[str, Any]] | None = None,
    *,
    spec: bool = True,
) -> dict[str, Any]:
    """A KFP ``Run``; without ``spec``, no ``pipeline_spec`` (a light list's items)."""
    reference = None
    if row.pipeline_id or row.pipeline_version_id:
        reference = _drop_none(
            {"pipeline_id": row.pipeline_id, "pipeline_version_id": row.pipeline_version_id}
        )
    error = None
    if row.error:
        error = status(
            row.error, CODE_CANCELLED if row.state == RunState.CANCELED else CODE_UNKNOWN
        )
    runtime_config: dict[str, Any] = {"parameters": row.parameters or {}}
    if row.pipeline_root:
        runtime_config["pipeline_root"] = row.pipeline_root
    out = _drop_none(
        {
            "experiment_id": row.experiment_id,
            "run_id": row.id,
            "display_name": row.display_name,
            "storage_state": row.storage_state,
            "description": meta.description if meta is not None else "",
            "pipeline_version_id": row.pipeline_version_id,
            "pipeline_spec": row.pipeline_spec if spec else None,
            "pipeline_version_reference": reference,
            "runtime_config": runtime_config,
            "service_account": meta.service_account if meta is not None else "",
            "created_at": ts(row.created_at),
            "scheduled_at": ts(
                meta.scheduled_at if meta is not None and meta.scheduled_at else row.created_at
            ),
            "finished_at": ts(row.finished_at),
            "state": row.state,
            "error": error,
            "recurring_run_id": row.recurring_run_id,
            "state_history": state_history(row),
        }
    )
    if task_details is not None:
        out["run_details"] = {"task_details": task_details}
    return out


# ---------------------------------------------------------------- recurring runs


def recurring_run(row: KfpRecurringRunRow) -> dict[str, Any]:
    if row.cron is not None:
        trigger = {
            "cron_schedule": _drop_none(
                {"cron": row.cron, "start_time": ts(row.start_time), "end_time": ts(row.end_time)}
            )
        }
    else:
        trigger = {
            "periodic_schedule": _drop_none(
                {
                    "interval_second": str(row.interval_second or 0),
                    "start_time": ts(row.start_time),
                    "end_time": ts(row.end_time),
                }
            )
        }
    reference = None
    if row.pipeline_id or row.pipeline_version_id:
        reference = _drop_none(
            {"pipeline_id": row.pipeline_id, "pipeline_version_id": row.pipeline_version_id}
        )
    runtime_config: dict[str, Any] = {"parameters": row.parameters or {}}
    if row.pipeline_root:
        runtime_config["pipeline_root"] = row.pipeline_root
    return _drop_none(
        {
            "recurring_run_id": row.id,
            "display_name": row.display_name,
            "description": row.description,
            "pipeline_version_id": row.pipeline_version_id,
            "pipeline_spec": row.pipeline_spec,
            "pipeline_version_reference": reference,
            "runtime_config": runtime_config,
            "service_account": row.service_account,
            "max_concurrency": str(row.max_concurrency),
            "trigger": trigger,
            "mode": row.mode,
            "created_at": ts(row.created_at),
            "updated_at": ts(row.updated_at),
            "status": "ENABLED" if row.mode == "ENABLE" else "DISABLED",
            "error": status(row.error) if row.error else None,
            "no_catchup": row.no_catchup,
            "namespace": row.namespace,
            "experiment_id": row.experiment_id,
        }
    )
