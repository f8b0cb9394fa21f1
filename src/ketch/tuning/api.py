"""The push endpoint of Katib's Push metrics collector.

::

    POST /apis/tuning.ketch.dev/v1/namespaces/{namespace}/trials/{name}/metrics
         {"metrics": {"loss": 0.3, "accuracy": 0.9}, "step": 3}

appends one record to the trial's push file (the same file
:func:`ketch.tuning.metrics.report_metrics` writes when it runs with
``KETCH_TRIAL_METRICS_FILE``), which the trial's Push collector tails. ``step`` is
optional. The trial's directory must exist — the trial controller creates it
before it starts the trial — so a trial name that is not running answers 404
rather than leaving stray files. A body that is not such an object answers 400.

With authentication on, the caller needs ``edit`` in the trial's namespace (a
``create`` of the ``trials/metrics`` subresource): a trial Ketch started has it, as
its namespace's ``default-editor`` service account (``KETCH_TOKEN``).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from ketch.core.access import KUBERNETES, rule
from ketch.core.documents import load_json
from ketch.core.errors import InvalidSpec, NotFound
from ketch.core.resource import validate_name, validate_namespace
from ketch.core.routes import ERROR_RESPONSES, request_body
from ketch.tuning.metrics import append_record, make_record, validate_metrics, validate_step
from ketch.tuning.trialfiles import push_file, trial_dir

PUSH_PATH = "/apis/tuning.ketch.dev/v1/namespaces/{namespace}/trials/{name}/metrics"

PUSH_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["metrics"],
    "properties": {
        "metrics": {
            "type": "object",
            "additionalProperties": {"type": "number"},
            "example": {"loss": 0.3, "accuracy": 0.9},
        },
        "step": {"type": ["integer", "null"], "minimum": 0, "example": 3},
    },
    "additionalProperties": False,
}

router = APIRouter(responses=ERROR_RESPONSES)


def push_url(server_url: str, namespace: str, trial: str) -> str:
    """The push endpoint of ``trial`` on the server at ``server_url``."""
    path = PUSH_PATH.format(namespace=namespace, name=trial)
    return f"{server_url.rstrip('/')}{path}"


@router.post(
    PUSH_PATH,
    tags=["tuning"],
    summary="Push a trial's metrics (Katib's Push metrics collector)",
    openapi_extra=request_body(PUSH_SCHEMA, yaml_too=False),
)
@rule(KUBERNETES)  # create trials/metrics in the namespace: edit (a trial's service account)
async def push_metrics(namespace: str, name: str, request: Request) -> dict[str, Any]:
    validate_namespace(namespace, field="namespace")
    validate_name(name, field="name")
    raw = await request.body()
    if not raw.strip():
        raise InvalidSpec("a request body is required", field="body")
    body = load_json(raw)
    if not isinstance(body, dict):
        raise InvalidSpec('must be an object: {"metrics": {...}, "step": 3}', field="body")
    unknown = sorted(set(body) - {"metrics", "step"})
    if unknown:
        raise InvalidSpec(
            f"unknown field {unknown[0]!r}; the body has metrics and step", field="body"
        )
    if "metrics" not in body:
        raise InvalidSpec("is required", field="metrics")
    try:
        values = validate_metrics(body["metrics"])
    except ValueError as exc:
        raise InvalidSpec(str(exc), field="metrics") from None
    try:
        step = validate_step(body.get("step"))
    except ValueError as exc:
        raise InvalidSpec(str(exc), field="step") from None
    store = request.app.state.api.store
    try:
        trial = await run_in_threadpool(store.get, "Trial", namespace, name)
    except NotFound:
        raise NotFound(
            f"trial {namespace}/{name} does not exist",
            hint="metrics are accepted from a trial the tuning controller started",
        ) from None
    directory = trial_dir(namespace, name, trial.metadata.uid)
    if not directory.is_dir():
        raise NotFound(
            f"trial {namespace}/{name} is not collecting pushed metrics",
            hint="metrics are accepted from a trial the tuning controller started",
        )
    if values:
        await run_in_threadpool(
            append_record, push_file(directory), make_record(name, values, step)
        )
    return {"accepted": len(values)}
