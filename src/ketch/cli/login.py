"""``ketch login``, ``ketch whoami`` and ``ketch logout``: the API token the CLI and
the Python clients send to a server, kept in ``~/.ketch/credentials`` (see
:mod:`ketch.core.credentials`).

``login`` reads a token from stdin (``--token-stdin``) or, in a terminal only, asks
for an email and a password and trades them for a token at the server's
``POST /auth/token``. Without a terminal it never prompts. ``whoami`` asks the server
(``GET /auth/whoami``); when none answers, it looks the token up in this machine's
store.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Annotated, Any

import typer

from ketch.cli.http import reporting
from ketch.cli.users import caller, local_directory, read_line
from ketch.core import config, credentials
from ketch.core.errors import InvalidSpec, KetchError, NoServer, NotFound, Unauthorized

Url = Annotated[
    str | None,
    typer.Argument(metavar="[URL]", help="The server (default: KETCH_URL, else the current one)"),
]


def _server(url: str | None) -> str:
    """The server a command is about, checked as a URL."""
    from ketch.core.http import ApiClient

    server = url or config.server_url()
    with ApiClient(server, field="URL", token=""):  # InvalidSpec for a bad URL
        pass
    return credentials.normalize(server)


def _whoami(server: str, token: str | None = None) -> tuple[dict[str, Any] | None, str]:
    """What the server says of the token (``token``, or the one it would be sent),
    or ``None`` and why not (no server answers, or it has no ``/auth/whoami``)."""
    from ketch.core.http import ApiClient

    try:
        with ApiClient(server, timeout=10.0, field="URL", token=token) as api:
            answer = api.json("GET", "/auth/whoami")
    except NoServer:
        return None, f"no Ketch server answers at {server}"
    except NotFound:
        return None, f"the server at {server} does not say who callers are (no /auth/whoami)"
    if not isinstance(answer, dict) or "user" not in answer:
        raise KetchError(f"{server}/auth/whoami did not answer who the caller is")
    return answer, ""


def _sign_in(server: str, email: str, password: str) -> str:
    """A new token from the server's ``POST /auth/token`` for ``email``'s password."""
    from ketch.core.http import ApiClient

    try:
        with ApiClient(server, timeout=30.0, field="URL", token="") as api:
            answer = api.json("POST", "/auth/token", json={"email": email, "password": password})
    except NotFound:
        raise NotFound(
            f"the server at {server} has no sign-in endpoint (/auth/token)",
            hint="create a token with `ketch tokens create` on the server's machine and "
            "give it to `ketch login --token-stdin`",
        ) from None
    token = answer.get("token") if isinstance(answer, dict) else None
    if not isinstance(token, str) or not token:
        raise KetchError(f"{server}/auth/token did not answer a token")
    return credentials.check_token(token, "the server's answer")


def login(
    url: Url = None,
    token_stdin: Annotated[
        bool, typer.Option("--token-stdin", help="Read the API token from the first line of stdin")
    ] = False,
) -> None:
    """Store an API token for a server in ~/.ketch/credentials and make it the current
    server. Without --token-stdin, asks for your email and password (in a terminal
    only)."""
    with reporting():
        server = _server(url)
        if token_stdin:
            token = credentials.check_token(read_line("--token-stdin"), "--token-stdin")
        else:
            if not sys.stdin.isatty():
                raise InvalidSpec(
                    "stdin is not a terminal, so no email or password is asked for",
                    field="--token-stdin",
                    hint="pipe an API token in: ... | ketch login --token-stdin",
                )
            import getpass

            email = typer.prompt("Email", err=True).strip()
            password = getpass.getpass("Password: ")
            token = _sign_in(server, email, password)
        try:
            who, why = _whoami(server, token)
        except Unauthorized as exc:
            raise Unauthorized(
                f"{server} refused the token: {exc.message}", hint="check it, or create a new one"
            ) from None
        stored = credentials.load()
        stored.tokens[server] = token
        stored.current = server
        path = credentials.save(stored)
        if who is not None:
            typer.echo(f"Logged in to {server} as {who['user']}; the token is in {path}.", err=True)
        else:
            typer.echo(
                f"Stored the token for {server} in {path}; it was not checked: {why}.",
                err=True,
            )
        if credentials.environment_token() is not None:
            typer.echo(
                "note: KETCH_TOKEN is set, and is sent instead of the stored token", err=True
            )


def whoami(
    url: Url = None,
    output: Annotated[str | None, typer.Option("--output", "-o", help="json")] = None,
) -> None:
    """Who the current credentials (KETCH_TOKEN, or the token stored for the server)
    are: the server's answer, or this machine's store's when no server answers."""
    with reporting():
        if output not in (None, "json"):
            raise InvalidSpec(f"unknown output format {output!r}; use json", field="--output")
        server = _server(url)
        who, why = _whoami(server)
        where = server
        if who is None:
            where = f"this machine's store ({config.ketch_home()})"
            typer.echo(f"note: {why}; asking {where}", err=True)
            who = _local_identity()
        if output == "json":
            typer.echo(json.dumps({**who, "server": where}))
            return
        groups = who.get("groups") or []
        profiles = who.get("profiles") or {}
        shown = (
            ", ".join(f"{name} ({role})" for name, role in sorted(profiles.items()))
            if isinstance(profiles, dict)
            else ""
        )
        for label, value in (
            ("user", who.get("user")),
            ("admin", "yes" if who.get("admin") else "no"),
            ("groups", ", ".join(str(g) for g in groups) or "-"),
            ("profiles", shown or "-"),
            ("via", who.get("via") or "-"),
            ("server", where),
        ):
            typer.echo(f"{label + ':':<10}{value}")


def _local_identity() -> dict[str, Any]:
    """Who the caller is in this machine's store, as ``/auth/whoami`` answers."""
    with local_directory() as directory:
        user = caller(directory)
    if user is None:
        return {"user": "local", "admin": True, "groups": [], "via": "local"}
    return {
        "user": user.email,
        "admin": user.admin,
        "groups": ["system:authenticated"],
        "via": "token",
    }


def logout(
    url: Url = None,
    all_servers: Annotated[
        bool, typer.Option("--all", help="Forget the tokens of every server")
    ] = False,
) -> None:
    """Forget the token stored for a server (the current one by default). The token
    itself stays valid until it is revoked (`ketch tokens revoke`)."""
    with reporting():
        if all_servers and url is not None:
            raise InvalidSpec("give a URL or --all, not both", field="--all")
        stored = credentials.load()
        if all_servers:
            forgotten = sorted(stored.tokens)
            stored.tokens.clear()
            stored.current = None
        else:
            server = _server(url)
            forgotten = [server] if stored.tokens.pop(server, None) is not None else []
            if stored.current == server:
                stored.current = None
        if forgotten:
            path = credentials.save(stored)
            typer.echo(f"Logged out of {', '.join(forgotten)}: the token was removed from {path}.")
        else:
            typer.echo("No token was stored for that server.", err=True)
        if os.environ.get(credentials.TOKEN_ENV):
            typer.echo("note: KETCH_TOKEN is still set, and is still sent", err=True)
