"""``ketch ray up`` and ``ketch ray down``: a Ray cluster of several nodes on this
machine, bound to 127.0.0.1, to run ``ketch up --backend ray`` against.

The nodes are kept by one holder process (see :mod:`ketch.core.backend.ray.cluster`)
that outlives the command; its address and process id are in
``KETCH_HOME/ray/cluster.json`` and its output in ``KETCH_HOME/ray/cluster.log``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from ketch.core import config

app = typer.Typer(
    help="A Ray cluster on this machine for `ketch up --backend ray`.",
    no_args_is_help=True,
)

_START_TIMEOUT = 300.0  # seconds for every node to come up (a busy machine is slow)
_STOP_TIMEOUT = 60.0


def _folder() -> Path:
    return config.ketch_home() / "ray"


def _state() -> dict[str, Any] | None:
    """The running cluster's state, or ``None`` when none runs (a stale file goes)."""
    path = _folder() / "cluster.json"
    try:
        state: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not _alive(int(state.get("pid") or 0)):
        path.unlink(missing_ok=True)
        return None
    return state


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@app.command("up")
def up(
    nodes: Annotated[int, typer.Option("--nodes", help="How many Ray nodes (1 is the head)")] = 3,
    cpus_per_node: Annotated[
        float, typer.Option("--cpus-per-node", help="The CPUs each node offers")
    ] = 1.0,
    gpus_per_node: Annotated[
        int,
        typer.Option(
            "--gpus-per-node",
            help="GPUs each node declares (whether or not it has them: to try GPU placement)",
        ),
    ] = 0,
    address_per_node: Annotated[
        bool,
        typer.Option(
            "--address-per-node",
            help="Node i listens on 127.0.0.<i+1>, as if each were a machine of its own",
        ),
    ] = False,
) -> None:
    """Start a Ray cluster of --nodes nodes on 127.0.0.1 and print its address."""
    if nodes < 1:
        typer.echo("error: --nodes: a cluster needs at least 1 node", err=True)
        raise typer.Exit(2)
    if cpus_per_node <= 0:
        typer.echo("error: --cpus-per-node: must be more than 0", err=True)
        raise typer.Exit(2)
    if gpus_per_node < 0:
        typer.echo("error: --gpus-per-node: must be 0 or more", err=True)
        raise typer.Exit(2)
    if address_per_node and nodes > 254:
        typer.echo("error: --address-per-node: at most 254 nodes (127.0.0.1-254)", err=True)
        raise typer.Exit(2)
    running = _state()
    if running is not None:
        typer.echo(
            f"error: a Ray cluster started by ketch ray up already runs at {running['address']} "
            f"(process {running['pid']}); stop it with: ketch ray down",
            err=True,
        )
        raise typer.Exit(1)
    if importlib.util.find_spec("ray") is None:
        typer.echo("error: Ray is not installed (pip install 'ketch[ray]')", err=True)
        raise typer.Exit(1)
    folder = _folder()
    folder.mkdir(parents=True, exist_ok=True)
    state_path, log_path = folder / "cluster.json", folder / "cluster.log"
    command = [
        sys.executable,
        "-m",
        "ketch.core.backend.ray.cluster",
        "--nodes",
        str(nodes),
        "--cpus-per-node",
        f"{cpus_per_node:g}",
        "--gpus-per-node",
        str(gpus_per_node),
        "--state",
        str(state_path),
    ]
    if address_per_node:
        command.append("--address-per-node")
    with log_path.open("ab") as out:
        holder = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # it outlives this command
            close_fds=True,
        )
    from rich.console import Console

    deadline = time.monotonic() + _START_TIMEOUT
    with Console(stderr=True).status(f"starting {nodes} Ray node{'s' if nodes > 1 else ''}..."):
        while not state_path.exists():
            if holder.poll() is not None or time.monotonic() > deadline:
                if holder.poll() is None:
                    _stop(holder.pid)
                typer.echo(
                    f"error: the Ray cluster did not start; its log {log_path} ends with:\n"
                    f"{_tail(log_path)}",
                    err=True,
                )
                raise typer.Exit(1)
            time.sleep(0.2)
    state = json.loads(state_path.read_text())
    address = state["address"]
    typer.echo(f"Ray cluster of {nodes} node{'s' if nodes > 1 else ''} at {address}")
    addresses = state.get("addresses") or []
    for index, node in enumerate(state.get("nodes") or []):
        where = f" at {addresses[index]}" if index < len(addresses) else ""
        typer.echo(f"  node {index}: {node}{where}{' (head)' if index == 0 else ''}")
    if address_per_node:
        typer.echo(
            "The nodes have addresses of their own: list the folders they share with Ketch "
            "(all of this machine's) in KETCH_SHARED_PATHS for ketch up"
        )
    typer.echo(f"Run Ketch on it:  ketch up --backend ray --ray-address {address}")
    typer.echo(f"Stop it:          ketch ray down   (its log: {log_path})")


@app.command("down")
def down() -> None:
    """Stop the Ray cluster ketch ray up started."""
    state = _state()
    if state is None:
        typer.echo("No Ray cluster started by ketch ray up is running.")
        return
    pid = int(state["pid"])
    if not _stop(pid):
        typer.echo(f"error: the Ray cluster's process {pid} did not stop", err=True)
        raise typer.Exit(1)
    (_folder() / "cluster.json").unlink(missing_ok=True)
    typer.echo(f"Stopped the Ray cluster at {state['address']}")


def _stop(pid: int) -> bool:
    """SIGTERM the holder (it takes its nodes down); SIGKILL its process group when
    it is still there after a minute. Whether it is gone."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + _STOP_TIMEOUT
    while time.monotonic() < deadline:
        if not _alive(pid) or _reaped(pid):
            return True
        time.sleep(0.2)
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    time.sleep(0.5)
    return not _alive(pid) or _reaped(pid)


def _reaped(pid: int) -> bool:
    """Reap ``pid`` if it is this process's child that ended (a zombie is not gone)."""
    try:
        done, _status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return False
    return done == pid
