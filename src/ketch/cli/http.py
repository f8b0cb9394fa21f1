"""How the CLI talks to the server at ``KETCH_URL``: the shared
:class:`ketch.core.http.ApiClient` (imported when a command needs it, so ``ketch
--help`` does not load httpx), and how its errors are printed: one line, and the
error's exit code."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, NoReturn

import typer

from ketch.core.errors import KetchError, NoServer
from ketch.core.kinds import collection_path, object_path

if TYPE_CHECKING:
    from ketch.core.http import ApiClient

__all__ = ["NoServer", "collection_path", "connect", "fail", "object_path", "reporting"]


def connect(url: str | None = None, *, timeout: float = 30.0) -> ApiClient:
    """A client of the server at ``url`` (default ``KETCH_URL``)."""
    from ketch.core.http import ApiClient

    return ApiClient(url, timeout=timeout)


def fail(exc: KetchError) -> NoReturn:
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(exc.exit_code)


@contextmanager
def reporting() -> Iterator[None]:
    """Print a ``KetchError`` as ``error: ...`` and exit with its code."""
    try:
        yield
    except KetchError as exc:
        fail(exc)
    except KeyboardInterrupt:
        typer.echo("", err=True)
        raise typer.Exit(130) from None
    except BrokenPipeError:
        sys.stderr.close()
        raise typer.Exit(0) from None
