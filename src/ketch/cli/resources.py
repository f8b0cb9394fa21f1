"""kubectl-like verbs against the API server: apply, get, describe, delete, logs, wait.

Kinds are named as Kubeflow names them, in any case, singular or plural
(``pytorchjob``, ``PyTorchJobs``, ``isvc``, ``run``); ``ketch get kinds`` lists them.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
import yaml

from ketch.cli.http import Client, NoServer, collection_path, fail, object_path, reporting
from ketch.core.errors import InvalidSpec, KetchError, NotFound
from ketch.core.resource import DEFAULT_NAMESPACE, validate_name, validate_namespace
from ketch.server.kinds import Kind, KindRegistry

if TYPE_CHECKING:
    from rich.console import Console

NamespaceOpt = Annotated[
    str, typer.Option("--namespace", "-n", help="Namespace", show_default=True)
]
OutputOpt = Annotated[str | None, typer.Option("--output", "-o", help="json, yaml or wide")]
_DISPLAY_NAME = "pipelines.ketch.dev/display-name"


# -- shared display helpers ----------------------------------------------------------


def age(stamp: str | None, now: datetime | None = None) -> str:
    """``5s``, ``3m``, ``2h``, ``4d`` since an RFC 3339 time, as kubectl shows ages."""
    if not stamp:
        return "<unknown>"
    try:
        then = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return "<unknown>"
    if then.tzinfo is None:
        then = then.replace(tzinfo=UTC)
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
    """``status.state``, else the type of the newest True condition, else ``-``."""
    status = manifest.get("status") or {}
    if isinstance(status.get("state"), str):
        return str(status["state"])
    true = [
        c
        for c in status.get("conditions") or []
        if isinstance(c, dict) and c.get("status") == "True" and c.get("type") != "Ready"
    ]
    if true:
        return str(max(true, key=lambda c: str(c.get("lastTransitionTime", ""))).get("type"))
    return "-"


def ready_of(manifest: dict[str, Any]) -> str | None:
    for condition in (manifest.get("status") or {}).get("conditions") or []:
        if isinstance(condition, dict) and condition.get("type") == "Ready":
            return str(condition.get("status", "Unknown"))
    return None


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
    if output == "json":
        typer.echo(json.dumps(document, indent=2, default=str))
    else:
        typer.echo(yaml.safe_dump(document, sort_keys=False, default_flow_style=False).rstrip())


def check_output(output: str | None, allowed: tuple[str, ...] = ("json", "yaml", "wide")) -> None:
    if output is not None and output not in allowed:
        raise InvalidSpec(f"unknown output format {output!r}; use {', '.join(allowed)}", field="--output")


# -- apply -------------------------------------------------------------------------


def _read_documents(source: str) -> list[tuple[str, Any]]:
    """``(where, document)`` for every YAML/JSON document in a file, directory or stdin."""
    if source == "-":
        return _parse("<stdin>", sys.stdin.read())
    path = Path(source)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml", ".json"))
        if not files:
            raise InvalidSpec(f"{source} holds no .yaml, .yml or .json files", field="-f")
    elif path.exists():
        files = [path]
    else:
        raise InvalidSpec(f"{source} does not exist", field="-f")
    documents: list[tuple[str, Any]] = []
    for file in files:
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidSpec(f"cannot read {file}: {exc}", field="-f") from None
        documents.extend(_parse(str(file), text))
    return documents


def _parse(where: str, text: str) -> list[tuple[str, Any]]:
    try:
        documents = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "cannot be parsed"
        raise InvalidSpec(f"{where}: malformed YAML: {problem}{at}") from None
    items: list[tuple[str, Any]] = []
    for index, document in enumerate(documents):
        label = f"{where} (document {index + 1})" if len(documents) > 1 else where
        if isinstance(document, dict) and document.get("kind") == "List":
            items.extend((label, item) for item in document.get("items") or [])
        else:
            items.append((label, document))
    return items


def _prepare(
    kinds: KindRegistry, where: str, document: Any, namespace: str
) -> tuple[Kind, str, str | None, dict[str, Any]]:
    if not isinstance(document, dict):
        raise InvalidSpec(f"{where}: a manifest must be a mapping, got {type(document).__name__}")
    for key in ("apiVersion", "kind"):
        if not isinstance(document.get(key), str) or not document[key]:
            raise InvalidSpec(f"{where}: {key} is required")
    try:
        kind = kinds.for_manifest(document["apiVersion"], document["kind"])
    except KetchError as exc:
        raise InvalidSpec(f"{where}: {exc}") from None
    metadata = document.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise InvalidSpec(f"{where}: metadata must be a mapping")
    ns = metadata.get("namespace") or namespace
    name = metadata.get("name")
    try:
        validate_namespace(str(ns))
        if name is not None or kind.kind != "PipelineRun":
            validate_name("" if name is None else str(name))
    except KetchError as exc:
        raise InvalidSpec(f"{where}: {exc}") from None
    return kind, str(ns), None if name is None else str(name), document


def apply(
    file: Annotated[str, typer.Option("--filename", "-f", help="YAML/JSON file, directory, or - for stdin")],
    namespace: NamespaceOpt = DEFAULT_NAMESPACE,
) -> None:
    """Create or update the resources in a file (multi-document YAML)."""
    with reporting(), Client() as client:
        documents = _read_documents(file)
        kinds = client.kinds()
        prepared = [_prepare(kinds, where, doc, namespace) for where, doc in documents]
        if not prepared:
            raise InvalidSpec(f"{file} holds no manifests", field="-f")
        exit_code = 0
        for kind, ns, name, document in prepared:
            version = document["apiVersion"].rsplit("/", 1)[-1]
            try:
                if name is None:
                    response = client.request(
                        "POST", collection_path(kind, ns, version), json=document
                    )
                    result = "created"
                else:
                    response = client.request(
                        "PUT", object_path(kind, ns, name, version), json=document
                    )
                    result = response.headers.get("X-Ketch-Apply", "configured")
            except KetchError as exc:
                if isinstance(exc, NoServer):
                    raise
                typer.echo(f"error: {kind.singular}/{name or '?'}: {exc}", err=True)
                exit_code = exit_code or exc.exit_code
                continue
            applied = response.json()
            typer.echo(f"{kind.singular}/{applied['metadata']['name']} {result}")
        if exit_code:
            raise typer.Exit(exit_code)


# -- get --------------------------------------------------------------------------


def list_objects(
    client: Client, kind: Kind, namespace: str | None, selector: str | None = None
) -> Iterator[dict[str, Any]]:
    token: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 500}
        if selector:
            params["labelSelector"] = selector
        if token:
            params["continue"] = token
        page = client.json("GET", collection_path(kind, namespace), params=params)
        yield from page.get("items", [])
        token = (page.get("metadata") or {}).get("continue")
        if not token:
            return


def _rows(kind: Kind, items: list[dict[str, Any]], all_ns: bool, wide: bool) -> tuple[list[str], list[list[str]]]:
    if kind.kind in ("Experiment", "Trial"):
        from ketch.cli import experiments

        rows = experiments.experiment_rows if kind.kind == "Experiment" else experiments.trial_rows
        return rows(items, all_ns, wide)
    is_run = kind.kind == "PipelineRun"
    show_ready = any(ready_of(item) is not None for item in items)
    columns = (["NAMESPACE"] if all_ns else []) + ["NAME"]
    if is_run:
        columns.append("DISPLAY NAME")
    columns.append("STATE")
    if show_ready:
        columns.append("READY")
    columns.append("AGE")
    if wide:
        columns += ["GENERATION", "LABELS"]
    rows: list[list[str]] = []
    for item in items:
        meta = item.get("metadata", {})
        row = ([meta.get("namespace", "")] if all_ns else []) + [meta.get("name", "")]
        if is_run:
            row.append((meta.get("annotations") or {}).get(_DISPLAY_NAME, ""))
        row.append(state_of(item))
        if show_ready:
            row.append(ready_of(item) or "-")
        row.append(age(meta.get("creationTimestamp")))
        if wide:
            labels = meta.get("labels") or {}
            row += [str(meta.get("generation", "")), ",".join(f"{k}={v}" for k, v in labels.items()) or "<none>"]
        rows.append(row)
    return columns, rows


def get(
    kind_name: Annotated[str, typer.Argument(metavar="KIND", help="pytorchjob, isvc, run, ... or 'kinds'")],
    name: Annotated[str | None, typer.Argument(help="One object's name")] = None,
    namespace: NamespaceOpt = DEFAULT_NAMESPACE,
    all_namespaces: Annotated[bool, typer.Option("--all-namespaces", "-A", help="Every namespace")] = False,
    selector: Annotated[str | None, typer.Option("--selector", "-l", help="Label selector, e.g. app=x,tier!=y")] = None,
    output: OutputOpt = None,
) -> None:
    """Show one object or list a kind (table, or -o json|yaml|wide)."""
    with reporting(), Client() as client:
        check_output(output)
        if kind_name.lower() in ("kinds", "kind"):
            kinds = list(client.kinds())
            if output in ("json", "yaml"):
                dump([k.to_json() for k in kinds], output)
                return
            print_table(
                ["KIND", "APIVERSION", "PLURAL", "SHORTNAMES"],
                [[k.kind, k.api_version, k.plural, ",".join(k.short_names)] for k in kinds],
            )
            return
        kind = client.kind(kind_name)
        validate_namespace(namespace, field="--namespace")
        if name is not None:
            validate_name(name, field="NAME")
            item = client.json("GET", object_path(kind, namespace, name))
            items = [item]
        else:
            items = list(list_objects(client, kind, None if all_namespaces else namespace, selector))
        if output in ("json", "yaml"):
            document = items[0] if name is not None else {"apiVersion": "v1", "kind": "List", "items": items}
            dump(document, output)
            return
        if not items:
            where = "any namespace" if all_namespaces else f"namespace {namespace!r}"
            typer.echo(f"No {kind.plural} found in {where}.", err=True)
            return
        columns, rows = _rows(kind, items, all_namespaces and name is None, output == "wide")
        print_table(columns, rows)


# -- describe ------------------------------------------------------------------------


def describe(
    kind_name: Annotated[str, typer.Argument(metavar="KIND")],
    name: Annotated[str, typer.Argument()],
    namespace: NamespaceOpt = DEFAULT_NAMESPACE,
    watch: Annotated[
        bool,
        typer.Option(
            "--watch",
            "-w",
            help="Experiments: refresh the trial table until the experiment finishes "
            "(exit 0 if it succeeded, 1 if it failed)",
        ),
    ] = False,
) -> None:
    """Show an object's spec, status, conditions and recent events."""
    with reporting(), Client() as client:
        kind = client.kind(kind_name)
        validate_namespace(namespace, field="--namespace")
        validate_name(name, field="NAME")
        if watch:
            if kind.kind != "Experiment":
                raise InvalidSpec(
                    f"--watch shows experiments as they run; {kind.plural} have no live view",
                    field="--watch",
                )
            from ketch.cli.experiments import watch_experiment

            raise typer.Exit(watch_experiment(client, kind, namespace, name))
        item = client.json("GET", object_path(kind, namespace, name))
        events: list[dict[str, Any]] = []
        if kind.kind != "PipelineRun":
            selector = f"involvedObject.kind={kind.kind},involvedObject.name={name}"
            events = client.json(
                "GET",
                f"/api/v1/namespaces/{namespace}/events",
                params={"fieldSelector": selector, "limit": 20},
            ).get("items", [])
        if kind.kind == "Experiment":
            from ketch.cli.experiments import describe_experiment

            describe_experiment(client, item, events)
            return
        show(item, events)


def show(
    item: dict[str, Any],
    events: list[dict[str, Any]],
    before_events: Callable[[], None] | None = None,
) -> None:
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
        ("Labels", ", ".join(f"{k}={v}" for k, v in (meta.get("labels") or {}).items()) or "<none>"),
        ("Annotations", ", ".join(f"{k}={v}" for k, v in (meta.get("annotations") or {}).items()) or "<none>"),
        ("Created", f"{meta.get('creationTimestamp', '')} ({age(meta.get('creationTimestamp'))} ago)"),
        ("Generation", str(meta.get("generation", ""))),
        ("State", state_of(item)),
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
                [str(c.get(k, "")) for k in ("type", "status", "reason", "message", "lastTransitionTime")]
                for c in conditions
                if isinstance(c, dict)
            ],
        )
    if tasks:
        typer.echo("Tasks:")
        print_table(
            ["TASK", "TYPE", "STATE", "CACHED", "ATTEMPTS"],
            [
                [t.get("path", ""), t.get("type", ""), t.get("state", ""), "yes" if t.get("cached") else "",
                 str(t.get("attempts", ""))]
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
                [[e.get("type", ""), e.get("reason", ""), age(e.get("eventTime")), e.get("message", "")] for e in events],
            )


def _indent(text: str) -> str:
    return "\n".join(f"  {line}" for line in text.splitlines())


# -- delete -------------------------------------------------------------------------


def delete(
    kind_name: Annotated[str, typer.Argument(metavar="KIND")],
    names: Annotated[list[str], typer.Argument(metavar="NAME...", help="Names to delete")],
    namespace: NamespaceOpt = DEFAULT_NAMESPACE,
    ignore_not_found: Annotated[bool, typer.Option("--ignore-not-found", help="No error for missing objects")] = False,
) -> None:
    """Delete objects by name."""
    with reporting(), Client() as client:
        kind = client.kind(kind_name)
        validate_namespace(namespace, field="--namespace")
        for name in names:
            validate_name(name, field="NAME")
        for name in names:
            try:
                client.request("DELETE", object_path(kind, namespace, name))
            except NotFound:
                if ignore_not_found:
                    continue
                raise
            typer.echo(f"{kind.singular}/{name} deleted")


# -- logs --------------------------------------------------------------------------


def logs(
    kind_name: Annotated[str, typer.Argument(metavar="KIND")],
    name: Annotated[str, typer.Argument()],
    namespace: NamespaceOpt = DEFAULT_NAMESPACE,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep streaming until it ends")] = False,
    replica: Annotated[str | None, typer.Option("--replica", help="Replica, e.g. master-0 or worker-1")] = None,
    task: Annotated[str | None, typer.Option("--task", help="Pipeline task path, e.g. train")] = None,
) -> None:
    """Print an object's logs (a pipeline run's task logs, a job replica's log)."""
    with reporting(), Client() as client:
        kind = client.kind(kind_name)
        validate_namespace(namespace, field="--namespace")
        validate_name(name, field="NAME")
        stream_logs(client, kind, namespace, name, follow=follow, replica=replica, task=task)


def stream_logs(
    client: Client,
    kind: Kind,
    namespace: str,
    name: str,
    *,
    follow: bool,
    replica: str | None = None,
    task: str | None = None,
) -> None:
    params: dict[str, Any] = {"follow": "true" if follow else "false"}
    if replica:
        params["replica"] = replica
    if task:
        params["task"] = task
    out = sys.stdout.buffer
    with client.stream(f"{object_path(kind, namespace, name)}/log", params=params) as response:
        for chunk in response.iter_raw():
            out.write(chunk)
            out.flush()


# -- wait ---------------------------------------------------------------------------


def _parse_for(text: str) -> tuple[str, str | None]:
    if text == "delete":
        return "delete", None
    if not text.startswith("condition="):
        raise InvalidSpec(
            f"cannot wait --for {text!r}; use condition=TYPE, condition=TYPE=VALUE or delete",
            field="--for",
        )
    rest = text.removeprefix("condition=")
    type_, _, value = rest.partition("=")
    if not type_:
        raise InvalidSpec("condition=TYPE needs a condition type", field="--for")
    return type_, (value or "True")


def _condition_status(item: dict[str, Any], type_: str) -> str | None:
    for condition in (item.get("status") or {}).get("conditions") or []:
        if isinstance(condition, dict) and str(condition.get("type", "")).lower() == type_.lower():
            return str(condition.get("status"))
    return None


def wait(
    kind_name: Annotated[str, typer.Argument(metavar="KIND")],
    name: Annotated[str, typer.Argument()],
    condition: Annotated[str, typer.Option("--for", help="condition=TYPE[=VALUE] or delete")],
    namespace: NamespaceOpt = DEFAULT_NAMESPACE,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait")] = 30.0,
) -> None:
    """Wait until an object's condition holds (exit 0), or time out (exit 1)."""
    with reporting(), Client() as client:
        type_, wanted = _parse_for(condition)
        if timeout < 0:
            raise InvalidSpec("must not be negative", field="--timeout")
        kind = client.kind(kind_name)
        validate_namespace(namespace, field="--namespace")
        validate_name(name, field="NAME")
        path = object_path(kind, namespace, name)
        deadline = time.monotonic() + timeout
        first = True
        while True:
            try:
                item = client.json("GET", path)
            except NotFound:
                if type_ == "delete":
                    typer.echo(f"{kind.singular}/{name} deleted")
                    return
                if first:
                    raise
                item = {}
            first = False
            if type_ != "delete" and _condition_status(item, type_) == wanted:
                typer.echo(f"{kind.singular}/{name} condition met")
                return
            if time.monotonic() >= deadline:
                what = "deletion" if type_ == "delete" else f"condition {type_}={wanted}"
                fail(
                    KetchError(
                        f"timed out after {timeout:g}s waiting for {what} on {kind.singular}/{name}"
                    )
                )
            time.sleep(min(0.25, max(0.0, deadline - time.monotonic())))
