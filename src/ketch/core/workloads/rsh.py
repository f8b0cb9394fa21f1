"""The remote shell a launcher reaches its gang's hosts with, on one machine.

MPI launchers (``mpirun``, Intel MPI's hydra) start ranks "on" other hosts through a
remote shell: the MPI operator's ``kubexec.sh`` runs ``kubectl exec <host> --
/bin/sh -c "$*"``. Here every replica's host is this machine, so the agent runs the
command here, in the replica's environment and working directory when
``hosts/<host>.sh`` next to the agent says them; a host without that file runs the
command in the launcher's environment.

On a backend whose nodes are several (a Ray cluster), ``hosts/<host>.via`` (an
executable :func:`write_remote` writes from the backend's
:meth:`~ketch.core.backend.spec.Backend.remote_shell`) runs the command on the
replica's node instead, after sourcing its ``hosts/<host>.sh`` there.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Iterable
from pathlib import Path

#: the agent's script (``kubexec.sh <host> <command...>``)
RSH_AGENT = """#!/bin/sh
# kubexec for Ketch: `kubexec.sh <host> <command...>` runs the command on the host's
# node (this machine unless hosts/<host>.via says how to reach it), as
# `kubectl exec <host> -- /bin/sh -c` would.
host=$1
shift
setup="$(dirname "$0")/hosts/$host.sh"
via="$(dirname "$0")/hosts/$host.via"
if [ -x "$via" ] && [ -r "$setup" ]; then exec "$via" "$setup" "$*"; fi
if [ -r "$setup" ]; then . "$setup"; fi
exec /bin/sh -c "$*"
"""


def write_agent(path: Path) -> None:
    """The agent at ``path``, executable."""
    path.write_text(RSH_AGENT)
    path.chmod(0o755)


def hosts_dir(agent: Path) -> Path:
    """Where the agent reads each host's setup (``<host>.sh``) from."""
    return agent.parent / "hosts"


def write_remote(agent: Path, host: str, prefix: list[str]) -> None:
    """Make the agent run ``host``'s commands through ``prefix`` (a backend's
    :meth:`~ketch.core.backend.spec.Backend.remote_shell`): ``hosts/<host>.via``."""
    via = hosts_dir(agent) / f"{host}.via"
    via.write_text(f'#!/bin/sh\nexec {shlex.join(prefix)} "$@"\n')
    via.chmod(0o755)


def launcher_defaults(remote: bool, own: Iterable[str] = ()) -> dict[str, str]:
    """What an MPI launcher is told unless its container sets it (``own``: the names
    the container sets): ranks are not bound to cores (every host here shares the
    machine's cores, and each daemon would bind its first rank to core 0), OpenMPI may
    run as root when the server does (as in containers), and, when ``remote`` (daemons
    start on other nodes through :func:`write_remote`), the launcher starts every
    daemon itself (no tree spawn)."""
    defaults = {"OMPI_MCA_hwloc_base_binding_policy": "none"}
    if remote:
        defaults["OMPI_MCA_plm_rsh_no_tree_spawn"] = "1"
    if os.geteuid() == 0:
        defaults.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    skip = set(own)
    return {k: v for k, v in defaults.items() if k not in skip}
