"""``ketch kubeconfig``: a kubeconfig for the running server, so ``kubectl --context
ketch ...`` and the ``kubernetes`` Python client (``config.load_kube_config()``) talk
to Ketch.

It prints the kubeconfig, writes it to a file (``--output``, mode 0600), or merges its
cluster, user and context into ``$KUBECONFIG`` or ``~/.kube/config`` (``--merge``):
an entry of the same name is replaced, everything else in the file is kept as it was
written (comments and layout too, where the file's layout allows an edit in place),
and ``current-context`` changes only with ``--use``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer

from ketch.cli.http import connect, reporting
from ketch.cli.resources import DEFAULT_NAMESPACE, validate_namespace
from ketch.core.errors import InvalidSpec

DEFAULT_CONTEXT = "ketch"
# Names kubeconfigs use in practice: kind-kind, gke_project_zone_name, arn:aws:eks:...
NAME = r"^[A-Za-z0-9][A-Za-z0-9._@:/+-]{0,252}$"


def kubeconfig(
    context: Annotated[
        str,
        typer.Option("--context", help="Name of the context, cluster and user it writes"),
    ] = DEFAULT_CONTEXT,
    namespace: Annotated[
        str, typer.Option("--namespace", "-n", help="The context's namespace")
    ] = DEFAULT_NAMESPACE,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write the kubeconfig to this file (mode 0600)"),
    ] = None,
    merge: Annotated[
        bool,
        typer.Option(
            "--merge", help="Add the context to $KUBECONFIG or ~/.kube/config, keeping the rest"
        ),
    ] = False,
    use: Annotated[
        bool, typer.Option("--use", help="With --merge: make it the current context")
    ] = False,
) -> None:
    """Print a kubeconfig for the running server, for kubectl and Kubernetes clients."""
    # The files' code (and PyYAML) is imported when the command runs, not at every start.
    from ketch.cli.kubeconfig_file import (
        Entries,
        default_kubeconfig,
        merge_into,
        render,
        standalone,
        write,
    )

    with reporting():
        if not re.match(NAME, context):
            raise InvalidSpec(
                f"{context!r} is not a usable name: use letters, digits and . _ @ : / + -, "
                "starting with a letter or digit",
                field="--context",
            )
        validate_namespace(namespace, field="--namespace")
        if output is not None and merge:
            raise InvalidSpec("give --output FILE or --merge, not both", field="--output")
        if use and not merge:
            raise InvalidSpec(
                "--use goes with --merge: it sets the merged file's current context", field="--use"
            )
        server = _running_server()
        entries = Entries.of(context, server, namespace)
        if merge:
            target = default_kubeconfig(context)
            report = merge_into(target, entries, use=use)
            typer.echo(report.describe(entries, target))
        elif output is not None:
            text = render(standalone(entries))
            target = output.expanduser()
            write(target, text, mode=0o600, keep_mode=False, field="--output")
            typer.echo(
                f"Wrote a kubeconfig for {server} (context {context!r}) to {target}; "
                f"use it with: kubectl --kubeconfig {target} get pytorchjobs"
            )
        else:
            typer.echo(render(standalone(entries)), nl=False)


def _running_server() -> str:
    """The URL of the server ``KETCH_URL`` names, once it answered; ``NoServer`` (how
    to start one) when nothing does."""
    with connect(timeout=10.0) as client:
        client.request("GET", "/healthz")
        return client.url
