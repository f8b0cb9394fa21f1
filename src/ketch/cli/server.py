"""``ketch up``: serve the API on uvicorn in this process until SIGINT or SIGTERM."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import threading
from collections.abc import Generator
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer

from ketch.core import config
from ketch.core.errors import Conflict, InvalidSpec

READY_LINE = "Ketch API server listening on {url}"
UNAUTHENTICATED_WARNING = (
    "WARNING: --host {host} is not a loopback address. Ketch's API has no authentication "
    "yet: anyone who can reach this address can read everything in this store and run "
    "commands on this machine as this user. Bind to 127.0.0.1 unless every host that can "
    "reach it is trusted."
)


def _server_class() -> type:
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server that prints its URL once ready and exits 0 on SIGINT/SIGTERM."""

        def __init__(self, cfg: uvicorn.Config, app: Any, url_host: str) -> None:
            super().__init__(cfg)
            self._app = app
            self._url_host = url_host

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            if self.should_exit or not self.servers:
                return
            address = self.servers[0].sockets[0].getsockname()
            host, port = address[0], address[1]
            bound = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
            print(READY_LINE.format(url=bound), flush=True)
            url = f"http://{self._url_host}:{port}"
            if url != bound:
                print(f"Reach it at {url} from this machine", flush=True)
            print(f"API docs at {url}/docs; press Ctrl-C to stop", flush=True)

        @contextlib.contextmanager
        def capture_signals(self) -> Generator[None, None, None]:
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            previous = {
                s: signal.signal(s, self.handle_exit) for s in (signal.SIGINT, signal.SIGTERM)
            }
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            # Streams (watches, followed logs) end now, so shutdown is not held up by them.
            self._app.state.api.stopping.set()
            super().handle_exit(sig, frame)

    return Server


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.set_inheritable(True)
    except OSError:
        sock.close()
        raise
    return sock


def up(
    host: Annotated[str, typer.Option("--host", help="Interface to listen on")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", help="Port (0 picks a free one)")
    ] = config.DEFAULT_PORT,
    home: Annotated[Path | None, typer.Option("--home", help="KETCH_HOME for this server")] = None,
    log_level: Annotated[
        str, typer.Option("--log-level", help="debug, info, warning, error")
    ] = "info",
) -> None:
    """Start the Ketch API server (runs, resources, logs) and serve until Ctrl-C."""
    # SQLAlchemy and FastAPI are imported here, not when any other command starts.
    from ketch.core.locks import ControlPlaneLock
    from ketch.server.guard import is_loopback

    if not 0 <= port <= 65535:
        typer.echo(f"error: --port: {port} is not a port number (0-65535)", err=True)
        raise typer.Exit(2)
    if log_level not in ("critical", "error", "warning", "info", "debug"):
        typer.echo(
            f"error: {InvalidSpec('use debug, info, warning or error', field='--log-level')}",
            err=True,
        )
        raise typer.Exit(2)
    if home is not None:
        home = home.expanduser().resolve()
        home.mkdir(parents=True, exist_ok=True)
        os.environ["KETCH_HOME"] = str(home)
    config.ketch_home().mkdir(parents=True, exist_ok=True)
    if not is_loopback(host):
        typer.secho(UNAUTHENTICATED_WARNING.format(host=host), err=True, fg="red", bold=True)
    from sqlalchemy.exc import SQLAlchemyError

    lock = ControlPlaneLock(config.database_url(home))
    try:
        lock.acquire()
    except Conflict as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    except (OSError, ImportError, SQLAlchemyError) as exc:  # the database is not reachable
        typer.echo(
            f"error: cannot open the store {_safe(config.database_url(home))}: {exc}", err=True
        )
        raise typer.Exit(1) from None
    try:
        _serve(host, port, home, log_level)
    finally:
        lock.release()


def _serve(host: str, port: int, home: Path | None, log_level: str) -> None:
    import uvicorn

    from ketch.capabilities import create_app

    app = create_app(home=home, bind=host, sole_server=True)  # up() holds the store's lock
    cfg = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=log_level == "debug",
        timeout_graceful_shutdown=5,
        lifespan="on",
    )
    url_host = f"[{host}]" if ":" in host else host
    if host in ("0.0.0.0", "::"):
        url_host = "127.0.0.1"
    server = _server_class()(cfg, app, url_host)
    try:
        sock = _bind(host, port)
    except OSError as exc:
        typer.echo(
            f"error: cannot listen on {host}:{port}: {exc.strerror or exc} "
            "(is another server running? pick another --port, or 0 for any free one)",
            err=True,
        )
        raise typer.Exit(1) from None
    with sock:
        server.run(sockets=[sock])
    if not server.started:
        typer.echo("error: the server did not start; see the messages above", err=True)
        raise typer.Exit(1)
    sys.stdout.flush()


def _safe(url: str) -> str:
    """``url`` with any password masked, for messages."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return "(the configured database)"
