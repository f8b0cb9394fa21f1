"""A notebook's server as a :class:`~ketch.core.backend.ProcessSpec`: the command of
its server type, its environment and folders, and where it answers once ready.

JupyterLab (Kubeflow's image contract: ``jupyter lab --ServerApp.base_url=$NB_PREFIX``)
runs as ``python -m jupyterlab`` from the interpreter Ketch runs with, listening on
the address of the node it runs on (127.0.0.1 here; see :mod:`ketch.notebooks.listen`,
which starts every server) on a port the backend hands out there, serving
``/notebook/<ns>/<name>/`` (so the proxy forwards paths unchanged), with the root
directory of the notebook's
:class:`~ketch.notebooks.workspace.Layout`. Its token is in its environment
(``JUPYTER_TOKEN``, a secret variable: on no command line, in no pod and no log);
Jupyter refuses any request without it. The variables read from Secrets and ConfigMaps
(:mod:`ketch.notebooks.environment`) are secret variables too. Jupyter's runtime and
configuration folders
are the notebook's own (the server user's ``~/.jupyter`` is not read). The container's
``args`` (and the options of a ``jupyter lab`` command) come before Ketch's own.

code-server (``group-one``) and RStudio Server (``group-two``) run their program when
it is on ``PATH`` (:func:`missing_program` says what to install otherwise), serving
from ``/`` behind the proxy, which takes the prefix off (as Kubeflow's
``http-rewrite-uri: /``); they are reached through the proxy only by convention: they
listen on their node's address (127.0.0.1 here) without authentication of their own.

The proxy reaches a server at its process's host (:attr:`ProcessHandle.host`, known
once it started: :func:`placed`).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import sys

from ketch.core.backend import ProcessHandle, ProcessSpec, Resources
from ketch.core.backend.host import LOCAL_HOST
from ketch.core.workloads.containers import child_env, which
from ketch.notebooks.environment import Environment
from ketch.notebooks.listen import PLACEHOLDER
from ketch.notebooks.running import Upstream
from ketch.notebooks.spec import NotebookContainer, ServerType, server_args
from ketch.notebooks.workspace import Layout

#: where a server listens: its node's address, put in by :mod:`ketch.notebooks.listen`
HOST = PLACEHOLDER
PROGRAMS = {ServerType.CODE_SERVER: "code-server", ServerType.RSTUDIO: "rserver"}
INSTALL = "pip install 'ketch[notebooks]'"


def prefix_of(namespace: str, name: str) -> str:
    """The notebook's public path, ``/notebook/<ns>/<name>/`` (Kubeflow's ``NB_PREFIX``
    is the same without the last slash)."""
    return f"/notebook/{namespace}/{name}/"


def missing_program(kind: ServerType) -> str | None:
    """Why a server of ``kind`` cannot run on this machine (``None``: it can)."""
    if kind is ServerType.JUPYTER:
        if importlib.util.find_spec("jupyterlab") is None:
            return f"JupyterLab is not installed with Ketch ({sys.executable}): {INSTALL}"
        return None
    program = PROGRAMS[kind]
    if which(program) is None:
        what = "code-server (VS Code)" if kind is ServerType.CODE_SERVER else "RStudio Server"
        return (
            f"this Notebook runs {what}, but {program} is not installed on this machine: "
            f"install it (so that {program} is on the server's PATH), or use a Jupyter image"
        )
    return None


def _command(
    kind: ServerType, port: int, prefix: str, layout: Layout, extra: list[str]
) -> list[str]:
    """The server's command line, run by :mod:`ketch.notebooks.listen` (which puts the
    node's address in place of :data:`HOST`)."""
    return [
        sys.executable,
        "-m",
        "ketch.notebooks.listen",
        *_server(kind, port, prefix, layout, extra),
    ]


def _server(
    kind: ServerType, port: int, prefix: str, layout: Layout, extra: list[str]
) -> list[str]:
    if kind is ServerType.CODE_SERVER:
        return [
            which("code-server") or "code-server",
            f"--bind-addr={HOST}:{port}",
            "--auth=none",
            "--disable-telemetry",
            "--disable-update-check",
            *extra,
            str(layout.root),
        ]
    if kind is ServerType.RSTUDIO:
        return [
            which("rserver") or "rserver",
            f"--www-address={HOST}",
            f"--www-port={port}",
            "--auth-none=1",
            "--server-daemonize=0",
            *extra,
        ]
    return [
        sys.executable,
        "-m",
        "jupyterlab",
        *extra,
        "--no-browser",
        f"--ip={HOST}",
        f"--port={port}",
        "--ServerApp.port_retries=0",
        f"--ServerApp.base_url={prefix}",
        f"--ServerApp.root_dir={layout.root}",
        # bound to its node's address behind Ketch, which answers to the names it allows
        "--ServerApp.allow_remote_access=True",
        "--ServerApp.allow_root=True",
    ]


def server_process(
    *,
    kind: ServerType,
    namespace: str,
    name: str,
    container: NotebookContainer,
    layout: Layout,
    port: int,
    token: str,
    secret_env: dict[str, str],
    environment: Environment | None = None,
) -> tuple[ProcessSpec, Upstream]:
    """The process of notebook ``name``'s server, and where the proxy reaches it.
    ``environment``: the container's, as resolved when it starts (without it, the
    ``value`` of each of its ``env`` variables); what Ketch sets wins over it."""
    prefix = prefix_of(namespace, name)
    if environment is None:
        environment = Environment(
            plain={e.name: e.value for e in container.env if e.value is not None}
        )
    own = {
        "NB_PREFIX": prefix.rstrip("/"),
        "PYTHONUNBUFFERED": "1",
        "JUPYTER_RUNTIME_DIR": str(layout.state / "runtime"),
        "JUPYTER_CONFIG_DIR": str(layout.state / "config"),
        "JUPYTER_PLATFORM_DIRS": "1",
    }
    env = {**environment.plain, **own}
    hidden = {k: v for k, v in environment.hidden.items() if k not in own and k not in secret_env}
    requests, limits = container.resources.requests, container.resources.limits
    spec = ProcessSpec(
        name=f"notebook {namespace}/{name}",
        command=_command(kind, port, prefix, layout, server_args(container)),
        env=child_env(env),
        cwd=layout.root,
        stdout_path=layout.log,
        stderr_path=layout.log,
        resources=Resources(
            cpu_request=_quantity(requests.get("cpu")),
            cpu_limit=_quantity(limits.get("cpu")),
            memory_request=_quantity(requests.get("memory")),
        ),
        ports=(port,),
        namespace=namespace,
        owned=tuple(layout.owned),
        secret_env={**hidden, **secret_env, "JUPYTER_TOKEN": token},
    )
    headers: tuple[tuple[str, str], ...] = ()
    if kind is ServerType.RSTUDIO:
        headers = (("x-rstudio-root-path", prefix.rstrip("/")),)
    upstream = Upstream(
        host=LOCAL_HOST,  # until it runs: see placed
        port=port,
        token=token,
        prefix=prefix,
        strip_prefix=kind is not ServerType.JUPYTER,
        headers=headers,
    )
    return spec, upstream


def placed(upstream: Upstream, handle: ProcessHandle) -> Upstream:
    """Where the proxy reaches the server ``upstream`` describes once ``handle`` runs it:
    at the address of the node it runs on, where it listens."""
    return dataclasses.replace(upstream, host=handle.host)


def ready_path(kind: ServerType, upstream: Upstream) -> str:
    """The path that answers 200 once the server serves: Jupyter's ``api/status``
    (with the token), code-server's ``healthz``, RStudio's root."""
    if kind is ServerType.JUPYTER:
        return f"{upstream.prefix}api/status"
    if kind is ServerType.CODE_SERVER:
        return "/healthz"
    return "/"


def _quantity(value: str | int | float | None) -> str | None:
    return None if value is None else str(value)
