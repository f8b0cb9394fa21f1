"""What a trial calls to push its metrics: Ketch's ``kubeflow.katib.report_metrics``.

The trial controller tells a Push trial where its metrics go through the
environment:

- ``KATIB_TRIAL_NAME``: the trial's name (Katib sets it too; required).
- ``KETCH_TRIAL_METRICS_FILE``: the trial's push file; each call appends one JSON
  line ``{"trial", "timestamp", "step", "metrics"}`` with a single ``write`` to a
  file opened for appending, then ``fsync`` — so processes reporting at once never
  interleave their lines.
- else ``KETCH_TUNING_PUSH_URL``: the trial's push endpoint (see
  :func:`ketch.tuning.api.push_url`); each call POSTs ``{"metrics", "step"}`` there,
  with the bearer token :func:`ketch.core.credentials.token_for` finds for it, an
  https server's certificate checked as :class:`ketch.core.http.ApiClient` checks it.

Nothing is printed.
"""

from __future__ import annotations

import json
import numbers
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

TRIAL_NAME_ENV = "KATIB_TRIAL_NAME"
METRICS_FILE_ENV = "KETCH_TRIAL_METRICS_FILE"
PUSH_URL_ENV = "KETCH_TUNING_PUSH_URL"
PUSH_TIMEOUT_SECONDS = 10.0


def report_metrics(metrics: Mapping[str, float | int], *, step: int | None = None) -> None:
    """Record ``metrics`` (``{"loss": 0.01, "accuracy": 0.99}``) for the running trial.

    ``step`` (an integer, optional) orders the reports; without it a report's step is
    its index. Raises ``ValueError`` when a value is not a number, the step is not
    an integer or ``KATIB_TRIAL_NAME`` is not set, and ``RuntimeError`` when the
    metrics cannot be recorded (no destination configured, server unreachable).
    """
    trial = os.environ.get(TRIAL_NAME_ENV)
    if not trial:
        raise ValueError(
            f"{TRIAL_NAME_ENV} is not set: report_metrics records the metrics of a running "
            "Trial, and the trial controller sets it"
        )
    values = validate_metrics(metrics)
    step = validate_step(step)
    if not values:
        return
    path = os.environ.get(METRICS_FILE_ENV)
    if path:
        append_record(Path(path), make_record(trial, values, step))
        return
    url = os.environ.get(PUSH_URL_ENV)
    if url:
        _post(url, trial, values, step)
        return
    raise RuntimeError(
        f"cannot record the metrics of trial {trial}: neither {METRICS_FILE_ENV} nor "
        f"{PUSH_URL_ENV} is set (is the Experiment's metrics collector of kind Push?)"
    )


def validate_metrics(metrics: Any) -> dict[str, float]:
    """``metrics`` as ``{name: float}``; ``ValueError`` naming the first bad metric."""
    if not isinstance(metrics, Mapping):
        raise ValueError(
            f"metrics must be a mapping of names to numbers, not {type(metrics).__name__}"
        )
    values: dict[str, float] = {}
    for name, value in metrics.items():
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"metric name {name!r} is not a non-empty string")
        values[name] = _float(name, value)
    return values


def validate_step(step: Any) -> int | None:
    if step is None:
        return None
    if isinstance(step, bool) or not isinstance(step, numbers.Integral) or step < 0:
        raise ValueError(f"step must be a non-negative integer, not {step!r}")
    return int(step)


def _float(name: str, value: Any) -> float:
    problem = f"metric {name!r}: {value!r} is not a number"
    if isinstance(value, bool | str | bytes) or value is None:
        raise ValueError(problem)
    if not isinstance(value, numbers.Real) and not hasattr(value, "__float__"):
        raise ValueError(problem)
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(problem) from None
    return number


def make_record(trial: str, values: Mapping[str, float], step: int | None) -> dict[str, Any]:
    """One line of a trial's push file."""
    return {"trial": trial, "timestamp": time.time(), "step": step, "metrics": dict(values)}


def append_record(path: Path, record: Mapping[str, Any]) -> None:
    """Append ``record`` as one JSON line with a single write, then fsync."""
    line = (json.dumps(record, separators=(",", ":")) + "\n").encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        written = os.write(fd, line)
        if written != len(line):
            raise OSError(f"only {written} of {len(line)} bytes were appended to {path}")
        os.fsync(fd)
    finally:
        os.close(fd)


def _post(url: str, trial: str, values: dict[str, float], step: int | None) -> None:
    import httpx

    from ketch.core.credentials import token_for
    from ketch.core.errors import KetchError
    from ketch.core.http import verification

    body = json.dumps({"metrics": values, "step": step}).encode()  # NaN allowed, as in the file
    headers = {"content-type": "application/json"}
    try:
        token = token_for(url)
        verify = verification(url)  # an https server's CA: KETCH_CA_FILE or KETCH_HOME's
    except KetchError as exc:  # KETCH_TOKEN, ~/.ketch/credentials or the CA cannot be used
        raise RuntimeError(f"cannot push the metrics of trial {trial} to {url}: {exc}") from None
    if token:
        headers["authorization"] = f"Bearer {token}"
    try:
        response = httpx.post(
            url,
            content=body,
            headers=headers,
            timeout=PUSH_TIMEOUT_SECONDS,
            verify=verify,
        )
    except httpx.HTTPError as exc:
        raise RuntimeError(
            f"cannot push the metrics of trial {trial} to {url}: {exc or type(exc).__name__}"
        ) from exc
    if response.status_code >= 300:
        raise RuntimeError(
            f"pushing the metrics of trial {trial} to {url} failed with HTTP "
            f"{response.status_code}: {_message(response)}"
        )


def _message(response: Any) -> str:
    try:
        body = response.json()
    except ValueError:
        return str(response.text)[:500]
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return body["message"]
    return str(response.text)[:500]
