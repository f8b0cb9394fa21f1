"""``ketch kubeconfig``: a kubeconfig for the running server, so ``kubectl --context
ketch ...`` and the ``kubernetes`` Python client (``config.load_kube_config()``) talk
to Ketch.

It prints the kubeconfig, writes it to a file (``--output``, mode 0600), or merges its
cluster, user and context into ``$KUBECONFIG`` or ``~/.kube/config`` (``--merge``):
an entry of the same name is replaced, everything else in the file is kept as it was
written (comments and layout too, where the file's layout allows an edit in place),
and ``current-context`` changes only with ``--use``.

For an ``https://`` server the cluster entry embeds the CA that vouches for it
(``certificate-authority-data``): ``--ca-file``, else Ketch's own CA (``KETCH_CA_FILE``,
else ``KETCH_HOME/tls/ca.crt``, made by ``ketch up --tls-self-signed``) when the
server's certificate is signed by it. The user entry sends the caller's API token
(``--token-stdin``, else ``KETCH_TOKEN`` or the one ``ketch login`` stored for the
server). The token is never shown in a terminal: a kubeconfig printed to one leaves it
out and says so; written to a file, merged, or printed to a pipe, it is kept, and a
file holding it is readable by its owner only.
"""

from __future__ import annotations

import base64
import re
import sys
from pathlib import Path
from typing import Annotated

import typer

from ketch.cli.http import connect, reporting
from ketch.cli.resources import DEFAULT_NAMESPACE, validate_namespace
from ketch.core import credentials
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
    ca_file: Annotated[
        Path | None,
        typer.Option(
            "--ca-file",
            metavar="FILE",
            help="The CA (PEM) that signed an https server's certificate, to embed "
            "(default: Ketch's own CA, when it signed it)",
        ),
    ] = None,
    token_stdin: Annotated[
        bool,
        typer.Option(
            "--token-stdin",
            help="Read the API token to embed from stdin (default: KETCH_TOKEN, else the "
            "token `ketch login` stored for the server)",
        ),
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
        from ketch.cli.users import read_line

        given = (
            credentials.check_token(read_line("--token-stdin"), "--token-stdin")
            if token_stdin
            else None
        )
        server = _running_server()
        token = given if given is not None else credentials.token_for(server)
        if token and output is None and not merge and sys.stdout.isatty():
            typer.echo(
                "note: the API token is left out, since stdout is a terminal; write the "
                "kubeconfig with --output FILE or --merge, or redirect stdout, to keep it",
                err=True,
            )
            token = None
        elif not token and server.lower().startswith("https://"):
            typer.echo(
                f"note: no API token is known for {server}, so the kubeconfig has none and "
                "kubectl will ask for a user name; sign in with `ketch login` first (or "
                "give --token-stdin) when the server has users",
                err=True,
            )
        ca_data = _certificate_authority(server, ca_file)
        entries = Entries.of(context, server, namespace, ca_data=ca_data, token=token)
        if merge:
            target = default_kubeconfig(context)
            report = merge_into(target, entries, use=use)
            typer.echo(report.describe(entries, target))
        elif output is not None:
            text = render(standalone(entries))
            target = output.expanduser()
            write(target, text, mode=0o600, keep_mode=False, field="--output")
            holds = " with your API token" if token else ""
            typer.echo(
                f"Wrote a kubeconfig for {server} (context {context!r}){holds} to {target}; "
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


def _certificate_authority(server: str, ca_file: Path | None) -> str | None:
    """The ``certificate-authority-data`` for ``server``: ``ca_file``'s certificates
    (which must have signed the server's), else Ketch's own CA when it signed them,
    else none (kubectl then trusts the system's roots)."""
    from ketch.core import tls

    if not server.lower().startswith("https://"):
        if ca_file is not None:
            raise InvalidSpec(
                f"{server} is served over plain HTTP: there is no certificate to check",
                field="--ca-file",
            )
        return None
    if ca_file is not None:
        pem = tls.read_ca(ca_file, "--ca-file")
        if not tls.verified_by(server, pem):
            raise InvalidSpec(
                f"the certificate of {server} is not signed by the CA in {ca_file}, "
                "or does not name its host",
                field="--ca-file",
            )
        return base64.b64encode(pem).decode("ascii")
    found = tls.trusted_ca(server)
    if found is None:
        return None
    pem = tls.read_ca(found, tls.CA_FILE_ENV)
    return base64.b64encode(pem).decode("ascii") if tls.verified_by(server, pem) else None
