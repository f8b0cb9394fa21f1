"""``ketch up``: serve the API on uvicorn in this process until SIGINT or SIGTERM,
over HTTP, or over TLS (``--tls-cert``/``--tls-key``, or ``--tls-self-signed``: a
CA of its own in ``KETCH_HOME/tls``). A non-loopback ``--host`` needs authentication
(see :mod:`ketch.cli.server_security`)."""

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
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ketch.cli.http import reporting
from ketch.core import config
from ketch.core.errors import Conflict, InvalidSpec, KetchError

if TYPE_CHECKING:
    from ketch.cli.server_security import Security
    from ketch.core.tls import ServerFiles

READY_LINE = "Ketch API server listening on {url}"
#: seconds an idle keep-alive connection stays open (see :func:`_serve`)
KEEP_ALIVE_S = 120


def _server_class() -> type:
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server that prints its URL once ready and exits 0 on SIGINT/SIGTERM."""

        def __init__(
            self, cfg: uvicorn.Config, app: Any, url_host: str, ca: Path | None = None
        ) -> None:
            super().__init__(cfg)
            self._app = app
            self._url_host = url_host
            self._scheme = "https" if cfg.is_ssl else "http"
            self._ca = ca

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            if self.should_exit or not self.servers:
                return
            address = self.servers[0].sockets[0].getsockname()
            host, port = address[0], address[1]
            scheme = self._scheme
            bound = f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"
            print(READY_LINE.format(url=bound), flush=True)
            url = f"{scheme}://{self._url_host}:{port}"
            if url != bound:
                print(f"Reach it at {url} from this machine", flush=True)
            if self._ca is not None:
                print(
                    f"Its certificate is signed by Ketch's CA {self._ca}: ketch commands "
                    "with this KETCH_HOME trust it and `ketch kubeconfig` embeds it; "
                    "elsewhere, set KETCH_CA_FILE to a copy of it",
                    flush=True,
                )
            print(f"Dashboard at {url}/; API docs at {url}/docs; press Ctrl-C to stop", flush=True)

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


def _oidc_settings(issuer: str | None, client_id: str | None, secret_file: Path | None) -> None:
    """Hand the OIDC options to the sign-in routes (they read the environment), and
    refuse to start when they are wrong."""
    from ketch.tenancy import oidc

    for name, value in (
        (oidc.ISSUER_ENV, issuer),
        (oidc.CLIENT_ID_ENV, client_id),
        (
            oidc.CLIENT_SECRET_FILE_ENV,
            str(secret_file.expanduser().resolve()) if secret_file else None,
        ),
    ):
        if value:
            os.environ[name] = value
    oidc.settings()


def up(
    host: Annotated[str, typer.Option("--host", help="Interface to listen on")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", help="Port (0 picks a free one)")
    ] = config.DEFAULT_PORT,
    home: Annotated[Path | None, typer.Option("--home", help="KETCH_HOME for this server")] = None,
    log_level: Annotated[
        str, typer.Option("--log-level", help="debug, info, warning, error")
    ] = "info",
    trusted_proxy: Annotated[
        list[str] | None,
        typer.Option(
            "--trusted-proxy",
            metavar="CIDR",
            envvar="KETCH_TRUSTED_PROXIES",
            help="An address or CIDR block of a proxy that signs users in (oauth2-proxy, "
            "Dex, Istio): its --userid-header is trusted, from nowhere else. Repeatable",
            rich_help_panel="Authentication",
        ),
    ] = None,
    userid_header: Annotated[
        str,
        typer.Option(
            "--userid-header",
            envvar="KETCH_USERID_HEADER",
            help="The header a trusted proxy names the user in",
            rich_help_panel="Authentication",
        ),
    ] = "kubeflow-userid",
    userid_prefix: Annotated[
        str,
        typer.Option(
            "--userid-prefix",
            envvar="KETCH_USERID_PREFIX",
            help="A prefix the proxy puts before the user's email (e.g. accounts.google.com:)",
            rich_help_panel="Authentication",
        ),
    ] = "",
    groups_header: Annotated[
        str,
        typer.Option(
            "--groups-header",
            envvar="KETCH_GROUPS_HEADER",
            help="The header a trusted proxy lists the user's groups in",
            rich_help_panel="Authentication",
        ),
    ] = "kubeflow-groups",
    registration_flow: Annotated[
        bool,
        typer.Option(
            "--registration-flow/--no-registration-flow",
            envvar="KETCH_REGISTRATION_FLOW",
            help="Give a user who has no profile one of their own when they first sign in",
            rich_help_panel="Authentication",
        ),
    ] = False,
    oidc_issuer: Annotated[
        str | None,
        typer.Option(
            "--oidc-issuer",
            metavar="URL",
            envvar="KETCH_OIDC_ISSUER",
            help="Offer sign-in with this OpenID Connect provider (https; authorization "
            "code flow with PKCE; its callback is /auth/oidc/callback)",
            rich_help_panel="Authentication",
        ),
    ] = None,
    oidc_client_id: Annotated[
        str | None,
        typer.Option(
            "--oidc-client-id",
            metavar="ID",
            envvar="KETCH_OIDC_CLIENT_ID",
            help="Ketch's client id at the --oidc-issuer",
            rich_help_panel="Authentication",
        ),
    ] = None,
    oidc_client_secret_file: Annotated[
        Path | None,
        typer.Option(
            "--oidc-client-secret-file",
            metavar="FILE",
            envvar="KETCH_OIDC_CLIENT_SECRET_FILE",
            help="A file holding the client's secret (or set KETCH_OIDC_CLIENT_SECRET)",
            rich_help_panel="Authentication",
        ),
    ] = None,
    tls_cert: Annotated[
        Path | None,
        typer.Option(
            "--tls-cert",
            metavar="FILE",
            envvar="KETCH_TLS_CERT",
            help="Serve HTTPS with this certificate (PEM, with its chain)",
            rich_help_panel="TLS",
        ),
    ] = None,
    tls_key: Annotated[
        Path | None,
        typer.Option(
            "--tls-key",
            metavar="FILE",
            envvar="KETCH_TLS_KEY",
            help="The key of --tls-cert (PEM, unencrypted)",
            rich_help_panel="TLS",
        ),
    ] = None,
    tls_self_signed: Annotated[
        bool,
        typer.Option(
            "--tls-self-signed",
            envvar="KETCH_TLS_SELF_SIGNED",
            help="Serve HTTPS with a certificate from a CA of Ketch's own, made once in "
            "KETCH_HOME/tls (ketch kubeconfig embeds it)",
            rich_help_panel="TLS",
        ),
    ] = False,
    tls_name: Annotated[
        list[str] | None,
        typer.Option(
            "--tls-name",
            metavar="NAME",
            help="With --tls-self-signed: another host name or address the certificate "
            "names (it always names localhost, 127.0.0.1, ::1, --host and this machine's "
            "host name). Repeatable",
            rich_help_panel="TLS",
        ),
    ] = None,
    backend: Annotated[
        str,
        typer.Option(
            "--backend",
            envvar="KETCH_BACKEND",
            help="Where workloads run: local (processes on this machine) or ray (the nodes "
            "of a Ray cluster; pip install 'ketch[ray]')",
            rich_help_panel="Compute",
        ),
    ] = "local",
    ray_address: Annotated[
        str | None,
        typer.Option(
            "--ray-address",
            metavar="HOST:PORT",
            envvar="RAY_ADDRESS",
            help="With --backend ray: the address of the Ray cluster's head "
            "(ketch ray up starts a cluster on this machine and prints it)",
            rich_help_panel="Compute",
        ),
    ] = None,
) -> None:
    """Start the Ketch API server (runs, resources, logs) and serve until Ctrl-C."""
    # SQLAlchemy and FastAPI are imported here, not when any other command starts.
    from ketch.cli import server_security
    from ketch.core.locks import ControlPlaneLock

    if not 0 <= port <= 65535:
        typer.echo(f"error: --port: {port} is not a port number (0-65535)", err=True)
        raise typer.Exit(2)
    if log_level not in ("critical", "error", "warning", "info", "debug"):
        typer.echo(
            f"error: {InvalidSpec('use debug, info, warning or error', field='--log-level')}",
            err=True,
        )
        raise typer.Exit(2)
    _choose_backend(backend, ray_address)
    with reporting():
        security = server_security.check(
            trusted_proxies=trusted_proxy,
            userid_header=userid_header,
            userid_prefix=userid_prefix,
            groups_header=groups_header,
            registration=registration_flow,
            tls_cert=tls_cert,
            tls_key=tls_key,
            self_signed=tls_self_signed,
            tls_names=tls_name,
        )
        _oidc_settings(oidc_issuer, oidc_client_id, oidc_client_secret_file)
    ignored = server_security.ignored_proxy_options(
        security, userid_header, userid_prefix, groups_header
    )
    if ignored:
        typer.echo(f"note: {', '.join(ignored)} take effect only with --trusted-proxy", err=True)
    if home is not None:
        home = home.expanduser().resolve()
        home.mkdir(parents=True, exist_ok=True)
        os.environ["KETCH_HOME"] = str(home)
    config.ketch_home().mkdir(parents=True, exist_ok=True)
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
        files = _secure(host, security, home)
        _start_backend()
        _serve(host, port, home, log_level, security, files)
    finally:
        lock.release()


def _choose_backend(backend: str, ray_address: str | None) -> None:
    """Hand ``--backend`` and ``--ray-address`` to the composition root (it reads
    ``KETCH_BACKEND`` and ``RAY_ADDRESS``); exit 2 for an unknown backend."""
    if backend not in ("local", "ray"):
        typer.echo(f"error: {InvalidSpec('use local or ray', field='--backend')}", err=True)
        raise typer.Exit(2)
    if ray_address and backend != "ray":
        typer.echo("note: --ray-address takes effect only with --backend ray", err=True)
    os.environ["KETCH_BACKEND"] = backend
    if ray_address:
        os.environ["RAY_ADDRESS"] = ray_address


def _start_backend() -> None:
    """Make the compute backend before serving: a Ray cluster that does not answer
    (or Ray not installed) is an error saying so, not a traceback."""
    from ketch.capabilities import backend, backend_name

    with reporting():
        made = backend()
    if backend_name() == "ray":
        from ketch.core.backend.ray import RayBackend

        assert isinstance(made, RayBackend)
        alive = [n for n in made.nodes(fresh=True) if n.alive]
        machines = len({n.ip for n in alive})
        typer.echo(
            f"Workloads run on the Ray cluster at {os.environ.get('RAY_ADDRESS')}: "
            f"{len(alive)} node{'s' if len(alive) != 1 else ''}"
            + (f" on {machines} machines" if machines > 1 else ""),
        )
        problem = made.unreachable(config.ketch_home())
        if problem:
            typer.echo(
                "warning: pipelines, notebooks and model files on the control plane's disk "
                f"cannot be used until it is shared: {problem}",
                err=True,
            )


def _secure(host: str, security: Security, home: Path | None) -> ServerFiles | None:
    """Refuse a non-loopback ``host`` without authentication (exit 1), warn when it
    would serve plain HTTP, and return the TLS files to serve with."""
    from ketch.cli import server_security

    try:
        refusal = server_security.refusal_to_listen(host, security)
        if refusal is not None:
            typer.echo(f"error: {refusal}", err=True)
            raise typer.Exit(1)
        files = server_security.server_files(host, security, home)
    except KetchError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(exc.exit_code) from None
    warning = server_security.plain_http_warning(host, security)
    if warning is not None:
        typer.secho(warning, err=True, fg="red", bold=True)
    return files


def _serve(
    host: str,
    port: int,
    home: Path | None,
    log_level: str,
    security: Security,
    files: ServerFiles | None,
) -> None:
    import uvicorn

    from ketch.core.access import ServerAddress
    from ketch.core.tls import ca_path
    from ketch.ui.assembly import create_app  # every capability's API and the dashboard

    try:
        sock = _bind(host, port)
    except OSError as exc:
        typer.echo(
            f"error: cannot listen on {host}:{port}: {exc.strerror or exc} "
            "(is another server running? pick another --port, or 0 for any free one)",
            err=True,
        )
        raise typer.Exit(1) from None
    url_host = f"[{host}]" if ":" in host else host
    if host in ("0.0.0.0", "::"):
        url_host = "127.0.0.1"
    ca = ca_path(home) if security.self_signed else None
    scheme = "https" if files is not None else "http"
    # where the workloads it starts call it back (its port is known once bound: --port 0)
    address = ServerAddress(
        f"{scheme}://{url_host}:{sock.getsockname()[1]}", str(ca) if ca is not None else None
    )
    with sock:
        app = create_app(
            home=home,
            bind=host,
            sole_server=True,  # up() holds the store's lock
            proxy=security.proxy,
            registration=security.registration,
            address=address,
        )
        cfg = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level=log_level,
            access_log=log_level == "debug",
            timeout_graceful_shutdown=5,
            # an idle connection stays open longer than clients keep theirs (Go's,
            # kubectl's, 90 s): a server that closes first races the client's next
            # request on it, which then fails with no response
            timeout_keep_alive=KEEP_ALIVE_S,
            lifespan="on",
            ssl_certfile=str(files.certfile) if files is not None else None,
            ssl_keyfile=str(files.keyfile) if files is not None else None,
        )
        server = _server_class()(cfg, app, url_host, ca)
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
