"""``ketch serve``: serve a model file, folder or repository on 127.0.0.1, or on the
address of the node it runs on where a backend that spreads work over several nodes
(Ray) started it and says so in ``KETCH_NODE_HOST``: its replicas are reached there
by their router."""

from __future__ import annotations

import ipaddress
import os
from typing import Annotated

import typer

from ketch.core.backend.host import LOCAL_HOST, NODE_HOST_ENV
from ketch.core.errors import KetchError

FORMATS = "sklearn|xgboost|lightgbm|onnx|pytorch|python"


def serve(
    model: Annotated[
        str,
        typer.Argument(
            help="Model file or folder, a folder of model folders, or a storage URI (s3://, gs://, https://..., file://)"
        ),
    ],
    name: Annotated[
        str | None, typer.Option("--name", help="Model name (default: the file or folder name)")
    ] = None,
    format: Annotated[
        str | None, typer.Option("--format", help=f"{FORMATS} (default: inferred from the files)")
    ] = None,
    host: Annotated[
        str | None,
        typer.Option(
            "--host",
            help=f"Address to listen on (default: ${NODE_HOST_ENV}, the address of the node "
            f"a cluster backend runs it on, else {LOCAL_HOST})",
        ),
    ] = None,
    port: Annotated[int, typer.Option("--port", help="REST port (0: a free port)")] = 8080,
    grpc_port: Annotated[
        int, typer.Option("--grpc-port", help="gRPC port (0: a free port, -1: no gRPC)")
    ] = 8081,
    workers: Annotated[
        int, typer.Option("--workers", min=1, help="Server processes sharing the ports")
    ] = 1,
    max_batch_size: Annotated[
        int,
        typer.Option(
            "--max-batch-size",
            min=0,
            help="Adaptive batching: most rows per model call (0 or 1: off)",
        ),
    ] = 0,
    max_latency_ms: Annotated[
        float,
        typer.Option(
            "--max-latency-ms", min=0, help="Adaptive batching: longest wait for a batch to fill"
        ),
    ] = 5.0,
    max_queue_size: Annotated[
        int,
        typer.Option(
            "--max-queue-size", min=1, help="Requests a model may hold before answering 503"
        ),
    ] = 1024,
    method: Annotated[
        str | None,
        typer.Option("--method", help="Default method of array models, e.g. predict_proba"),
    ] = None,
    model_class: Annotated[
        str | None,
        typer.Option("--model-class", help="Which Model subclass of a python model file to serve"),
    ] = None,
    predictor_url: Annotated[
        str | None,
        typer.Option(
            "--predictor-url",
            help="Forward predict to this model server (the model is a transformer)",
        ),
    ] = None,
) -> None:
    """Serve a model over KServe's V1 and V2 (Open Inference Protocol) REST and gRPC APIs."""
    from ketch.serving.repository import ServeOptions
    from ketch.serving.runtimes import FORMATS as KNOWN
    from ketch.serving.secret import from_environment
    from ketch.serving.server import ServerOptions
    from ketch.serving.workers import serve as run

    if format is not None and format not in KNOWN:
        _fail(f"unknown format {format!r}; use {FORMATS}", 2)
    secret = from_environment()
    host = host or os.environ.get(NODE_HOST_ENV) or LOCAL_HOST
    if secret is None and not _loopback(host):
        _warn(f"{host} is not a loopback address: anyone who reaches it may call the models")
    options = ServerOptions(
        host=host,
        http_port=port,
        grpc_port=None if grpc_port < 0 else grpc_port,
        model=ServeOptions(
            name=name,
            format=format,
            predictor_url=predictor_url,
            method=method,
            model_class=model_class,
            max_batch_size=max_batch_size,
            max_latency_ms=max_latency_ms,
            max_queue_size=max_queue_size,
        ),
        # an InferenceService's replica: only its router may call it
        secret=secret,
    )
    try:
        run(model, options, workers=workers, echo=_echo, warn=_warn)
    except KetchError as exc:
        _fail(str(exc), exc.exit_code)
    except OSError as exc:
        _fail(f"cannot serve: {exc}", 1)


def _loopback(host: str) -> bool:
    """Whether ``host`` is reached from this machine only (``localhost``, 127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name
        return False


def _echo(text: str) -> None:
    typer.echo(text)
    import sys

    sys.stdout.flush()


def _warn(text: str) -> None:
    typer.echo(f"warning: {text}", err=True)


def _fail(message: str, code: int) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)
