"""How the CLI shows resources: ages, states, tables (rich), and the ``describe``
view shared by every kind."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import typer

from ketch.core.conditions import conditions as conditions_of
from ketch.core.conditions import true_conditions
from ketch.core.errors import InvalidSpec
from ketch.core.timestamps import parse_time

if TYPE_CHECKING:
    from rich.console import Console


def age(stamp: str | None, now: datetime | None = None) -> str:
    """``5s``, ``3m``, ``2h``, ``4d`` since an RFC 3339 time, as kubectl shows ages."""
    if not stamp:
        return "<unknown>"
    try:
        then = parse_time(stamp)
    except ValueError:
        return "<unknown>"
    seconds = max(0, int(((now or datetime.now(UTC)) - then).total_seconds()))
    return duration(seconds)


def duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 120 * 60:
        return f"{seconds // 60}m"
    if seconds < 48 * 3600:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def state_of(manifest: dict[str, Any]) -> str:
    """What a listing shows in STATE.

    ``status.state`` when the object has one; else, for kinds that report readiness
    (a ``Ready`` condition, as InferenceServices do), ``Ready``, ``Failed`` (Ready is
    False) or ``NotReady`` (Unknown); else the type of the newest True condition
    that is not a component's readiness (``IngressReady``); else ``-``.
    """
    status = manifest.get("status") or {}
    if isinstance(status, dict) and isinstance(status.get("state"), str):
        return str(status["state"])
    ready = ready_condition(manifest)
    if ready is not None:
        return {"True": "Ready", "False": "Failed"}.get(str(ready.get("status")), "NotReady")
    # A component's readiness (IngressReady, PredictorReady) is not the object's state.
    true = [c for c in true_conditions(status) if not str(c.get("type", "")).endswith("Ready")]
    if true:
        return str(max(true, key=lambda c: str(c.get("lastTransitionTime", ""))).get("type"))
    return "-"


def ready_condition(manifest: dict[str, Any]) -> dict[str, Any] | None:
    """The object's ``Ready`` condition, if it reports one."""
    for condition in conditions_of(manifest):
        if condition.get("type") == "Ready":
            return condition
    return None


def ready_of(manifest: dict[str, Any]) -> str | None:
    condition = ready_condition(manifest)
    return None if condition is None else str(condition.get("status", "Unknown"))


def not_ready_reason(manifest: dict[str, Any]) -> tuple[str, str]:
    """``(reason, message)`` of a Ready condition that is not True, else empty strings."""
    condition = ready_condition(manifest)
    if condition is None or condition.get("status") == "True":
        return "", ""
    return str(condition.get("reason") or ""), str(condition.get("message") or "")


def stdout_console() -> Console:
    """The console tables are printed on: at least 100 columns, even in a pipe."""
    from rich.console import Console

    return Console(soft_wrap=True, width=max(100, _terminal_width()))


def print_table(columns: list[str], rows: list[list[str]]) -> None:
    from rich.table import Table

    table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*row)
    stdout_console().print(table)


def _terminal_width() -> int:
    import shutil

    return shutil.get_terminal_size((160, 24)).columns


def dump(document: Any, output: str) -> None:
    import yaml

    if output == "json":
        typer.echo(json.dumps(document, indent=2, default=str))
    else:
        typer.echo(yaml.safe_dump(document, sort_keys=False, default_flow_style=False).rstrip())


def check_output(output: str | None, allowed: tuple[str, ...] = ("json", "yaml", "wide")) -> None:
    if output is not None and output not in allowed:
        raise InvalidSpec(
            f"unknown output format {output!r}; use {', '.join(allowed)}", field="--output"
        )


def show(
    item: dict[str, Any],
    events: list[dict[str, Any]],
    before_events: Callable[[], None] | None = None,
) -> None:
    import yaml

    meta = item.get("metadata", {})
    status = dict(item.get("status") or {})
    conditions = status.pop("conditions", None) or []
    tasks = status.pop("tasks", None) or []
    spec = dict(item.get("spec") or {})
    spec.pop("pipelineSpec", None)
    lines = [
        ("Name", meta.get("name", "")),
        ("Namespace", meta.get("namespace", "")),
        ("Kind", item.get("kind", "")),
        ("API Version", item.get("apiVersion", "")),
        (
            "Labels",
            ", ".join(f"{k}={v}" for k, v in (meta.get("labels") or {}).items()) or "<none>",
        ),
        (
            "Annotations",
            ", ".join(f"{k}={v}" for k, v in (meta.get("annotations") or {}).items()) or "<none>",
        ),
        (
            "Created",
            f"{meta.get('creationTimestamp', '')} ({age(meta.get('creationTimestamp'))} ago)",
        ),
        ("Generation", str(meta.get("generation", ""))),
        ("State", _state_line(item)),
    ]
    for label, value in lines:
        typer.echo(f"{label + ':':<13}{value}")
    typer.echo("Spec:")
    typer.echo(_indent(yaml.safe_dump(spec, sort_keys=False).rstrip() if spec else "{}"))
    typer.echo("Status:")
    typer.echo(_indent(yaml.safe_dump(status, sort_keys=False).rstrip() if status else "{}"))
    if conditions:
        typer.echo("Conditions:")
        print_table(
            ["TYPE", "STATUS", "REASON", "MESSAGE", "LAST TRANSITION"],
            [
                [
                    str(c.get(k, ""))
                    for k in ("type", "status", "reason", "message", "lastTransitionTime")
                ]
                for c in conditions
                if isinstance(c, dict)
            ],
        )
    if tasks:
        typer.echo("Tasks:")
        print_table(
            ["TASK", "TYPE", "STATE", "CACHED", "ATTEMPTS"],
            [
                [
                    t.get("path", ""),
                    t.get("type", ""),
                    t.get("state", ""),
                    "yes" if t.get("cached") else "",
                    str(t.get("attempts", "")),
                ]
                for t in tasks
            ],
        )
    if before_events is not None:
        before_events()
    if item.get("kind") != "PipelineRun":
        typer.echo("Events:" + ("" if events else "  <none>"))
        if events:
            print_table(
                ["TYPE", "REASON", "AGE", "MESSAGE"],
                [
                    [
                        e.get("type", ""),
                        e.get("reason", ""),
                        age(e.get("eventTime")),
                        e.get("message", ""),
                    ]
                    for e in events
                ],
            )


def _state_line(item: dict[str, Any]) -> str:
    reason, message = not_ready_reason(item)
    detail = ": ".join(part for part in (reason, message) if part)
    return f"{state_of(item)} ({detail})" if detail else state_of(item)


def _indent(text: str) -> str:
    return "\n".join(f"  {line}" for line in text.splitlines())
