"""The ``ketch`` command."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer

from ketch.cli import (
    audit,
    demo,
    kubeconfig,
    login,
    models,
    notebooks,
    ray_cluster,
    resources,
    runs,
    server,
    users,
)
from ketch.core.config import version
from ketch.core.errors import KetchError
from ketch.serving.cli import serve as serve_command

app = typer.Typer(
    name="ketch",
    help="Ketch: Kubeflow's pipelines, training, tuning and serving from one command.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"ketch {version()}")
        raise typer.Exit(0)


@app.callback()
def _root(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version",
            "-V",
            help="Print Ketch's version and exit",
            callback=_print_version,
            is_eager=True,
        ),
    ] = False,
) -> None:
    """Ketch: Kubeflow's pipelines, training, tuning and serving from one command."""


@app.command("run")
def run_command(
    file: Annotated[
        str,
        typer.Argument(help="A .py file with @dsl.pipeline, or a compiled .yaml/.json pipeline"),
    ],
    pipeline: Annotated[
        str | None, typer.Option("--pipeline", help="Which pipeline in a file with several")
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="KEY=VALUE (repeatable); VALUE may be JSON"),
    ] = None,
    pipeline_root: Annotated[
        str | None, typer.Option("--pipeline-root", help="Where artifacts are written")
    ] = None,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Run every task, ignoring the cache")
    ] = False,
    output: Annotated[
        str, typer.Option("--output", "-o", help="table (default) or json")
    ] = "table",
    max_parallelism: Annotated[
        int | None, typer.Option("--max-parallelism", help="Tasks run at once (default: CPUs)")
    ] = None,
) -> None:
    """Run a KFP pipeline locally, without a server, and wait for it."""
    import warnings

    # kfp warns at import of every @dsl.component about a future default image;
    # it does not concern local runs.
    warnings.filterwarnings("ignore", message="The default base_image", category=FutureWarning)
    from ketch.capabilities import backend
    from ketch.cli.runview import RunView
    from ketch.core.errors import InvalidSpec
    from ketch.pipelines.client import run as run_pipeline

    if output not in ("table", "json"):
        _fail(InvalidSpec(f"unknown output format {output!r}; use table or json", field="--output"))
    if max_parallelism is not None and max_parallelism < 1:
        _fail(InvalidSpec(f"must be 1 or more, got {max_parallelism}", field="--max-parallelism"))
    params: dict[str, Any] = {}
    for item in param or []:
        key, equals, value = item.partition("=")
        key = key.strip()
        if not equals or not key:
            _fail(InvalidSpec(f"{item!r} must look like KEY=VALUE", field="--param"))
        if key in params:
            _fail(InvalidSpec(f"{key!r} is given more than once", field="--param"))
        try:  # VALUE is JSON when it parses as JSON, else a plain string
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    view = RunView(quiet=output == "json")
    try:
        with view:
            result = run_pipeline(
                file,
                params,
                pipeline_name=pipeline,
                pipeline_root=pipeline_root,
                enable_caching=False if no_cache else None,
                max_parallelism=max_parallelism,
                listener=view.update,
                on_start=view.started,
                backend=backend(),
            )
    except KetchError as exc:
        _fail(exc)
    if output == "json":
        typer.echo(json.dumps(view.as_json(result), default=str))
    else:
        view.summary(result)
    raise typer.Exit({"SUCCEEDED": 0, "CANCELED": 130}.get(result.state, 1))


app.command("up")(server.up)
app.command("demo")(demo.demo)
app.command("apply")(resources.apply)
app.command("get")(resources.get)
app.command("describe")(resources.describe)
app.command("delete")(resources.delete)
app.command("logs")(resources.logs)
app.command("wait")(resources.wait)
app.add_typer(runs.app, name="runs")
app.add_typer(models.app, name="models")
app.add_typer(ray_cluster.app, name="ray")
app.add_typer(notebooks.app, name="notebooks")
app.command("kubeconfig")(kubeconfig.kubeconfig)
app.add_typer(users.users_app, name="users")
app.add_typer(users.tokens_app, name="tokens")
app.command("login")(login.login)
app.command("whoami")(login.whoami)
app.command("logout")(login.logout)
app.command("audit")(audit.audit)
app.command("serve")(serve_command)


def _fail(exc: KetchError) -> None:
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(exc.exit_code)


def main() -> None:
    try:
        app()
    except KetchError as exc:  # raised outside a command's own handling
        typer.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
