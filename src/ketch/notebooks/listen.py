"""``python -m ketch.notebooks.listen PROGRAM [ARGS...]``: run a notebook's server with
``$(KETCH_NODE_HOST)`` in its arguments replaced by the address of the node it runs on,
as Kubernetes expands ``$(VAR)`` in a container's command.

A backend that spreads work over several nodes (Ray) tells each process its node's
address in ``KETCH_NODE_HOST``, and the server listens there, where Ketch's proxy
reaches it (the process's :attr:`~ketch.core.backend.ProcessHandle.host`); started on
this machine it is unset, and the server listens on 127.0.0.1. The program replaces
this process (same pid and process group, so stopping it stops the server).
"""

from __future__ import annotations

import os
import sys

from ketch.core.backend.host import LOCAL_HOST, NODE_HOST_ENV

#: what the server's arguments hold where the node's address goes
PLACEHOLDER = f"$({NODE_HOST_ENV})"


def node_host() -> str:
    """The address this process's servers listen on: its node's, else 127.0.0.1."""
    return os.environ.get(NODE_HOST_ENV) or LOCAL_HOST


def expand(args: list[str], host: str) -> list[str]:
    """``args`` with :data:`PLACEHOLDER` replaced by ``host``."""
    return [arg.replace(PLACEHOLDER, host) for arg in args]


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        sys.stderr.write("usage: python -m ketch.notebooks.listen PROGRAM [ARGS...]\n")
        raise SystemExit(2)
    command = expand(args, node_host())
    try:
        os.execvp(command[0], command)
    except OSError as exc:
        sys.stderr.write(f"cannot run {command[0]}: {exc.strerror or exc}\n")
        raise SystemExit(127 if isinstance(exc, FileNotFoundError) else 126) from None


if __name__ == "__main__":
    main()
