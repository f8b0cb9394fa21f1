"""The remote shell a launcher reaches its gang's hosts with, on one machine.

MPI launchers (``mpirun``, Intel MPI's hydra) start ranks "on" other hosts through a
remote shell: the MPI operator's ``kubexec.sh`` runs ``kubectl exec <host> --
/bin/sh -c "$*"``. Here every replica's host is this machine, so the agent runs the
command here, in the replica's environment and working directory when
``hosts/<host>.sh`` next to the agent says them; a host without that file runs the
command in the launcher's environment.
"""

from __future__ import annotations

from pathlib import Path

#: the agent's script (``kubexec.sh <host> <command...>``)
RSH_AGENT = """#!/bin/sh
# kubexec for Ketch: `kubexec.sh <host> <command...>` runs the command on this
# machine (every worker host is local), as `kubectl exec <host> -- /bin/sh -c` would.
host=$1
shift
setup="$(dirname "$0")/hosts/$host.sh"
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
