"""``ketch users`` and ``ketch tokens``: the users of this machine's Ketch store and
their API tokens, written directly in the store (``KETCH_HOME`` or
``KETCH_DATABASE_URL``), so they work whether or not a server runs on it, and a
running server sees a change at once.

A store without users is single-user: ``ketch users add`` makes its first user, an
admin, without asking who calls. Once there are users, every command acts as the
caller whose API token is ``KETCH_TOKEN`` (or the one ``ketch login`` stored for the
server): adding and removing users, listing them and other users' tokens take an
admin. Nothing is ever prompted for but the confirmation of ``users remove`` in a
terminal; a password comes from stdin (``--password-stdin``). A new token is printed
once, alone on the last line of stdout; everything else goes to stderr.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ketch.cli.display import print_table
from ketch.cli.http import reporting
from ketch.core import config, credentials
from ketch.core.errors import Forbidden, InvalidSpec, KetchError, NotFound, Unauthorized

if TYPE_CHECKING:
    from ketch.tenancy.users import Directory, Token, User

users_app = typer.Typer(
    help="Users of this machine's Ketch store: add, list, remove, passwd.",
    no_args_is_help=True,
)
tokens_app = typer.Typer(
    help="API tokens of this machine's Ketch store: create, list, revoke.",
    no_args_is_help=True,
)

Email = Annotated[str, typer.Argument(metavar="EMAIL", help="The user's email address")]
PasswordStdin = Annotated[
    bool, typer.Option("--password-stdin", help="Read the password from the first line of stdin")
]
Output = Annotated[str | None, typer.Option("--output", "-o", help="json")]
FIRST_USER_HINT = "`ketch users add EMAIL` creates the first user, an admin"


# -- the store and the caller ------------------------------------------------------


def safe_url(url: str) -> str:
    """``url`` with any password hidden."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@contextmanager
def local_directory() -> Iterator[Directory]:
    """The users of this machine's store, its tenancy tables made or upgraded first;
    a store that cannot be opened or written is a ``KetchError`` naming it."""
    from sqlalchemy.exc import SQLAlchemyError

    from ketch.core.store.db import Database, is_sqlite
    from ketch.tenancy.tables import MIGRATIONS
    from ketch.tenancy.users import Directory

    url = config.database_url()
    if is_sqlite(url) and url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    database = Database(url)
    try:
        database.migrate([MIGRATIONS])
        yield Directory(database)
    except SQLAlchemyError as exc:
        # the driver's own message: SQLAlchemy's would list the statement's parameters
        detail = getattr(exc, "orig", None) or type(exc).__name__
        raise KetchError(f"cannot use the store {safe_url(url)}: {detail}") from None
    finally:
        database.dispose()


def caller(directory: Directory) -> User | None:
    """Who runs the command: the user of ``KETCH_TOKEN`` (or of the token stored for
    the server); ``None`` when the store has no users (single-user)."""
    if not directory.has_users():
        return None
    found = credentials.token_source(config.server_url())
    if found is None:
        raise Unauthorized(
            "this store has users, so the command needs one's API token and none was given",
            hint="set KETCH_TOKEN to your token, or store it with `ketch login --token-stdin`",
        )
    token, source = found
    try:
        return directory.user_for_token(token)
    except Unauthorized as exc:
        raise Unauthorized(f"{exc.message} ({source})", hint=exc.hint) from None


def signed_in(directory: Directory) -> User:
    """The caller, who must be a user of the store."""
    user = caller(directory)
    if user is None:
        raise NotFound("this store has no users yet", hint=FIRST_USER_HINT)
    return user


def require_admin(directory: Directory, action: str) -> User | None:
    """The caller when they are an admin (``None`` in a store without users);
    ``Forbidden`` naming ``action`` otherwise."""
    user = caller(directory)
    if user is not None and not user.admin:
        raise Forbidden(
            f"{action} takes an admin, and {user.email} is not one",
            hint="set KETCH_TOKEN to an admin's token",
        )
    return user


def read_line(field: str) -> str:
    """The first line of stdin without its line ending (never a prompt)."""
    line = sys.stdin.readline() if sys.stdin is not None and not sys.stdin.closed else ""
    line = line.rstrip("\r\n")
    if not line:
        raise InvalidSpec("stdin gave nothing", field=field, hint="pipe it in: ... | ketch ...")
    return line


def _when(value: datetime | None, never: str = "-") -> str:
    from ketch.core.timestamps import format_time

    return format_time(value).replace("T", " ")[:16] if value is not None else never


def _check_output(output: str | None) -> None:
    if output not in (None, "json"):
        raise InvalidSpec(f"unknown output format {output!r}; use json", field="--output")


def _emit_secret(secret: str) -> None:
    """A new token: the last line of stdout, and nothing else there."""
    sys.stderr.flush()
    typer.echo(secret)


# -- ketch users ---------------------------------------------------------------------


@users_app.command("add")
def add_user(
    email: Email,
    admin: Annotated[bool, typer.Option("--admin", help="Make the user an admin")] = False,
    password_stdin: PasswordStdin = False,
) -> None:
    """Add a user and print a new API token of theirs (the last line of stdout).

    The first user of a store becomes an admin and needs no token; later ones take
    an admin's (KETCH_TOKEN)."""
    with reporting():
        from ketch.tenancy.users import check_email, check_password

        email = check_email(email)
        password = check_password(read_line("--password-stdin")) if password_stdin else None
        with local_directory() as directory:
            # the first user is an admin: checked and added at once, so of two first
            # adds at once one is the admin and the other needs an admin's token
            found = None if directory.has_users() else directory.add_first(email, password=password)
            first = found is not None
            if found is None:
                require_admin(directory, "adding a user")
                found = directory.add(email, admin=admin, password=password)
            user = found
            token, secret = directory.create_token(user.email, name="first token")
        role = "an admin" if user.admin else "not an admin"
        typer.echo(f"Added user {user.email} ({role}).", err=True)
        if first:
            typer.echo(
                f"note: {user.email} is the store's first user, so they are an admin; the "
                "store now has users, and commands that change it take a user's token",
                err=True,
            )
        typer.echo(
            f"Their API token {token.id} follows, shown only this once: set KETCH_TOKEN to "
            "it, or store it with `ketch login --token-stdin`.",
            err=True,
        )
        _emit_secret(secret)


@users_app.command("list")
def list_users(output: Output = None) -> None:
    """List the users: email, admin, password, active tokens, created (an admin's)."""
    with reporting():
        _check_output(output)
        with local_directory() as directory:
            require_admin(directory, "listing users")
            users = directory.users()
            active: dict[str, int] = {}
            for token in directory.tokens():
                if token.state == "active":
                    active[token.email] = active.get(token.email, 0) + 1
        if output == "json":
            typer.echo(json.dumps([_user_json(u, active.get(u.email, 0)) for u in users], indent=2))
            return
        if not users:
            typer.echo(f"No users: the store is single-user ({FIRST_USER_HINT}).", err=True)
            return
        print_table(
            ["EMAIL", "ADMIN", "PASSWORD", "TOKENS", "CREATED"],
            [
                [
                    u.email,
                    "yes" if u.admin else "no",
                    "yes" if u.has_password else "no",
                    str(active.get(u.email, 0)),
                    _when(u.created_at),
                ]
                for u in users
            ],
        )


def _user_json(user: User, tokens: int) -> dict[str, object]:
    from ketch.core.timestamps import format_time

    return {
        "email": user.email,
        "admin": user.admin,
        "password": user.has_password,
        "activeTokens": tokens,
        "created": format_time(user.created_at),
    }


@users_app.command("remove")
def remove_user(
    email: Email,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation")] = False,
) -> None:
    """Remove a user, their tokens and sessions (an admin's)."""
    with reporting():
        with local_directory() as directory:
            require_admin(directory, "removing a user")
            target = directory.get(email.strip())
            if target is None:
                raise NotFound(f'no user "{email}"', hint="`ketch users list` shows them")
            others = [u for u in directory.users() if u.email != target.email]
            if target.admin and others and not any(u.admin for u in others):
                raise Forbidden(
                    f"{target.email} is the last admin, and the store would have users but no "
                    "admin",
                    hint="make another admin first, or remove the other users",
                )
            if not yes:
                if not sys.stdin.isatty():
                    raise InvalidSpec(
                        "stdin is not a terminal, so nothing can be confirmed",
                        field="--yes",
                        hint=f"add --yes to remove {target.email}",
                    )
                if not typer.confirm(
                    f"Remove {target.email} and their tokens?", default=False, err=True
                ):
                    raise typer.Exit(1)
            directory.remove(target.email)
        typer.echo(f"Removed user {target.email} and their tokens.")
        if not others:
            typer.echo("note: the store has no users left: it is single-user again", err=True)


@users_app.command("passwd")
def set_password(email: Email, password_stdin: PasswordStdin = False) -> None:
    """Set a user's password, read from stdin (an admin's, or the user's own)."""
    with reporting():
        from ketch.tenancy.users import check_email, check_password

        email = check_email(email)
        if not password_stdin:
            raise InvalidSpec(
                "the new password is read from stdin, never prompted for",
                field="--password-stdin",
                hint=f"printf '%s\\n' \"$PASSWORD\" | ketch users passwd {email} --password-stdin",
            )
        password = check_password(read_line("--password-stdin"))
        with local_directory() as directory:
            me = signed_in(directory)
            if me.email != email and not me.admin:
                raise Forbidden(
                    f"setting another user's password takes an admin, and {me.email} is not one"
                )
            directory.set_password(email, password)
        typer.echo(f"Set the password of {email}.")


# -- ketch tokens --------------------------------------------------------------------


def _target(me: User, user: str | None, action: str) -> str:
    """The user a tokens command is about: ``user`` or the caller; another user's
    takes an admin."""
    from ketch.tenancy.users import check_email

    email = check_email(user) if user is not None else me.email
    if email != me.email and not me.admin:
        raise Forbidden(f"{action} of another user takes an admin, and {me.email} is not one")
    return email


@tokens_app.command("create")
def create_token(
    user: Annotated[
        str | None, typer.Option("--user", help="Whose token (default: yours; another's: admin)")
    ] = None,
    name: Annotated[str, typer.Option("--name", help="What the token is for")] = "",
    expires: Annotated[
        str | None, typer.Option("--expires", help="Lifetime: 30d, 12h, 90m (default: none)")
    ] = None,
) -> None:
    """Create an API token and print it (the last line of stdout, shown only once)."""
    with reporting():
        from ketch.tenancy.users import parse_duration

        lifetime = parse_duration(expires) if expires is not None else None
        if len(name) > 128:
            raise InvalidSpec("a token's name has at most 128 characters", field="--name")
        with local_directory() as directory:
            me = signed_in(directory)
            email = _target(me, user, "creating a token")
            token, secret = directory.create_token(email, name=name, expires=lifetime)
        until = f"expires {_when(token.expires_at)} UTC" if token.expires_at else "never expires"
        typer.echo(
            f"Created token {token.id} ({token.prefix}...) for {token.email}; it {until}. "
            "It follows, shown only this once.",
            err=True,
        )
        _emit_secret(secret)


@tokens_app.command("list")
def list_tokens(
    user: Annotated[
        str | None, typer.Option("--user", help="Whose tokens (default: yours; another's: admin)")
    ] = None,
    all_users: Annotated[
        bool, typer.Option("--all", "-A", help="Every user's tokens (admin)")
    ] = False,
    output: Output = None,
) -> None:
    """List API tokens: id, prefix, name, user, created, expires, state (never the
    token itself)."""
    with reporting():
        _check_output(output)
        if all_users and user is not None:
            raise InvalidSpec("give --user EMAIL or --all, not both", field="--all")
        with local_directory() as directory:
            me = signed_in(directory)
            if all_users and not me.admin:
                raise Forbidden(
                    f"listing every user's tokens takes an admin; {me.email} is not one"
                )
            email = None if all_users else _target(me, user, "listing the tokens")
            tokens = directory.tokens(email)
        if output == "json":
            typer.echo(json.dumps([_token_json(t) for t in tokens], indent=2))
            return
        if not tokens:
            typer.echo("No tokens.", err=True)
            return
        print_table(
            ["ID", "PREFIX", "NAME", "USER", "CREATED", "EXPIRES", "STATE"],
            [
                [
                    str(t.id),
                    t.prefix + "...",
                    t.name or "-",
                    t.email,
                    _when(t.created_at),
                    _when(t.expires_at, "never"),
                    t.state,
                ]
                for t in tokens
            ],
        )


def _token_json(token: Token) -> dict[str, object]:
    from ketch.core.timestamps import format_time

    def stamp(value: datetime | None) -> str | None:
        return format_time(value) if value is not None else None

    return {
        "id": token.id,
        "prefix": token.prefix,
        "name": token.name,
        "user": token.email,
        "created": stamp(token.created_at),
        "expires": stamp(token.expires_at),
        "revoked": stamp(token.revoked_at),
        "state": token.state,
    }


@tokens_app.command("revoke")
def revoke_token(
    token_id: Annotated[int, typer.Argument(metavar="ID", help="The token's id (tokens list)")],
    user: Annotated[
        str | None, typer.Option("--user", help="Whose token (default: yours; another's: admin)")
    ] = None,
) -> None:
    """Revoke an API token: it stops working at once, on a running server too."""
    with reporting():
        with local_directory() as directory:
            me = signed_in(directory)
            if user is not None:
                email: str | None = _target(me, user, "revoking a token")
            else:  # an admin may revoke anyone's; others only their own
                email = None if me.admin else me.email
            token = directory.revoke_token(token_id, email=email)
        typer.echo(f"Revoked token {token.id} ({token.prefix}...) of {token.email}.")
