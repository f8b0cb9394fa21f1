"""``ketch runs``: pipeline runs on the server (list, get, logs, cancel, retry).

Runs are read through the resource API (``PipelineRun``, pipelines.ketch.dev/v1);
cancel and retry post to its ``/cancel`` and ``/retry`` sub-resources, which call
the server's run service.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ketch.cli.display import age, check_output, dump, print_table, show
from ketch.cli.http import NoServer, connect, reporting
from ketch.cli.resources import (
    DEFAULT_NAMESPACE,
    NamespaceOpt,
    list_objects,
    stream_logs,
    validate_name,
    validate_namespace,
)
from ketch.core.timestamps import parse_time
from ketch.pipelines.kinds import PIPELINE_RUN

if TYPE_CHECKING:
    from ketch.core.http import ApiClient

app = typer.Typer(
    help="Pipeline runs on the Ketch server: list, get, logs, cancel, retry.",
    no_args_is_help=True,
)

_DISPLAY_NAME = "pipelines.ketch.dev/display-name"
RunId = Annotated[str, typer.Argument(metavar="RUN_ID", help="The run's id")]


def _path(namespace: str, run_id: str) -> str:
    validate_namespace(namespace, field="--namespace")
    validate_name(run_id, field="RUN_ID")
    return f"/apis/pipelines.ketch.dev/v1/namespaces/{namespace}/pipelineruns/{run_id}"


def _duration(item: dict[str, Any]) -> str:
    status = item.get("status") or {}
    start, end = status.get("startTime"), status.get("completionTime")
    if not start:
        return "-"
    try:
        begin = parse_time(start)
        if not end:
            return age(start) + "+"
        finish = parse_time(end)
    except ValueError:
        return "-"
    seconds = (finish - begin).total_seconds()
    return f"{seconds:.1f}s" if seconds < 120 else age(start, finish)


def _local_runs() -> Any:
    """The runs stored in this machine's Ketch home (or ``KETCH_DATABASE_URL``), read
    directly; ``None`` when ``KETCH_URL`` names a server or nothing is stored."""
    if os.environ.get("KETCH_URL"):
        return None
    from ketch.core import config

    url = config.database_url()
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        return None
    from ketch.core.store.db import Database
    from ketch.pipelines.runs import PipelineRunSource

    return PipelineRunSource(Database(url))


def _without_server(client: ApiClient) -> Any:
    """With no server at the default URL, ``runs list``/``get`` read the local store."""
    source = _local_runs()
    if source is None:
        return None
    typer.echo(
        f"note: no Ketch server at {client.url}; showing the runs stored in this machine's "
        "Ketch home",
        err=True,
    )
    return source


def _read_locally(client: ApiClient, no_server: NoServer, read: Callable[[Any], Any]) -> Any:
    """``read`` from the local store when no server answers; the no-server error when
    there is no local store or it cannot be read (an old or foreign database)."""
    source = _without_server(client)
    if source is None:
        raise no_server
    from sqlalchemy.exc import SQLAlchemyError

    try:
        return read(source)
    except SQLAlchemyError:
        raise no_server from None
    finally:
        source.database.dispose()


@app.command("list")
def list_runs(
    namespace: NamespaceOpt = DEFAULT_NAMESPACE,
    all_namespaces: Annotated[bool, typer.Option("--all-namespaces", "-A")] = False,
    output: Annotated[str | None, typer.Option("--output", "-o", help="json or yaml")] = None,
) -> None:
    """List runs, newest first: id, name, state, created, duration."""
    with reporting(), connect() as client:
        check_output(output, ("json", "yaml"))
        validate_namespace(namespace, field="--namespace")
        scope = None if all_namespaces else namespace
        try:
            items = list(list_objects(client, PIPELINE_RUN, scope))
        except NoServer as exc:
            items = _read_locally(
                client,
                exc,
                lambda source: (
                    source.list(
                        PIPELINE_RUN, scope, label_selector=None, limit=None, continue_token=None
                    ).items
                ),
            )
        if output:
            dump({"apiVersion": "v1", "kind": "List", "items": items}, output)
            return
        if not items:
            typer.echo("No runs found.", err=True)
            return
        print_table(
            ["ID", "NAME", "STATE", "CREATED", "DURATION"],
            [
                [
                    item["metadata"]["name"],
                    (item["metadata"].get("annotations") or {}).get(_DISPLAY_NAME, ""),
                    (item.get("status") or {}).get("state", "-"),
                    age(item["metadata"].get("creationTimestamp")) + " ago",
                    _duration(item),
                ]
                for item in items
            ],
        )


@app.command("get")
def get_run(
    run_id: RunId,
    namespace: NamespaceOpt = DEFAULT_NAMESPACE,
    output: Annotated[str | None, typer.Option("--output", "-o", help="json or yaml")] = None,
) -> None:
    """Show a run: state, parameters, outputs and its tasks."""
    with reporting(), connect() as client:
        check_output(output, ("json", "yaml"))
        path = _path(namespace, run_id)
        try:
            item = client.json("GET", path)
        except NoServer as exc:
            item = _read_locally(
                client, exc, lambda source: source.get(PIPELINE_RUN, namespace, run_id)
            )
        if output:
            dump(item, output)
            return
        show(item, [])


@app.command("logs")
def run_logs(
    run_id: RunId,
    namespace: NamespaceOpt = DEFAULT_NAMESPACE,
    task: Annotated[str | None, typer.Option("--task", help="Only this task's log")] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep streaming until the run ends")
    ] = False,
) -> None:
    """Print a run's task logs."""
    with reporting(), connect() as client:
        _path(namespace, run_id)
        stream_logs(client, PIPELINE_RUN, namespace, run_id, follow=follow, task=task)


def _act(action: str, run_id: str, namespace: str, done: str) -> None:
    with reporting(), connect() as client:
        item = client.json("POST", f"{_path(namespace, run_id)}/{action}")
        state = (item.get("status") or {}).get("state", "")
        typer.echo(f"run {run_id} {done} ({state})")


@app.command("cancel")
def cancel_run(run_id: RunId, namespace: NamespaceOpt = DEFAULT_NAMESPACE) -> None:
    """Cancel a run: its running tasks are stopped. A run that has already finished
    is left as it is: the command says nothing was canceled and exits 1."""
    _act("cancel", run_id, namespace, "canceled")


@app.command("retry")
def retry_run(run_id: RunId, namespace: NamespaceOpt = DEFAULT_NAMESPACE) -> None:
    """Retry a failed or canceled run (finished tasks are kept)."""
    _act("retry", run_id, namespace, "retried")
