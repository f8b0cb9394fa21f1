"""Run one command on a given node of a Ray cluster, from any process that reaches the
cluster: the remote shell an MPI launcher reaches its workers' nodes with.

``python -m ketch.core.backend.ray.onnode --address HOST:PORT --node NODE_ID SETUP
COMMAND`` runs ``/bin/sh -c COMMAND`` on that node after sourcing ``SETUP`` (the
worker's variables and working directory, written by its controller on a folder
every node reaches), as ``kubectl exec <pod> -- /bin/sh -c`` runs it in a pod. The
command runs in a Ray task pinned to the node (asking for no CPU: its rank
processes are the worker's, whose resources its gang holds), in a session of its
own that dies with the task; it learns its node's address (``KETCH_NODE_HOST``) and
Ray ID (``KETCH_NODE_NAME``). Its output comes back when it ends, and its exit
code is this command's. SIGTERM or SIGINT here stop it there.

Written as an executable script beside the launcher's rsh agent by
:meth:`RayBackend.remote_shell <ketch.core.backend.ray.backend.RayBackend.remote_shell>`.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import signal
import subprocess
import sys
from typing import Any

from ketch.core.backend.host import NODE_HOST_ENV, NODE_NAME_ENV
from ketch.core.backend.local import child_setup

#: what a Ray worker's environment has that the command must not inherit
_RAY_VARS = ("PYTHONBREAKPOINT", "SPT_NOENV", "OMP_NUM_THREADS", "CUDA_VISIBLE_DEVICES")


def run_here(setup: str, command: str) -> tuple[int, bytes, bytes]:
    """Run ``command`` after sourcing ``setup``, in this process's node: the body of the
    Ray task (imported by the worker that runs it)."""
    import ray

    context = ray.get_runtime_context()
    env = {k: v for k, v in os.environ.items() if k not in _RAY_VARS}
    env[NODE_HOST_ENV] = ray.util.get_node_ip_address()
    env[NODE_NAME_ENV] = context.get_node_id()
    script = f". {shlex.quote(setup)} && exec /bin/sh -c {shlex.quote(command)}"
    done = subprocess.run(
        ["/bin/sh", "-c", script],
        env=env,
        capture_output=True,
        start_new_session=True,
        preexec_fn=child_setup(os.getpid(), None),  # dies with the task  # noqa: PLW1509
        check=False,
    )
    return done.returncode, done.stdout, done.stderr


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ketch.core.backend.ray.onnode")
    parser.add_argument("--address", required=True, help="the Ray cluster's HOST:PORT")
    parser.add_argument("--node", required=True, help="the Ray node ID to run on")
    parser.add_argument("setup", help="a shell file sourced before the command")
    parser.add_argument("command", help="the command, as /bin/sh -c takes it")
    args = parser.parse_args(argv)
    if args.address.split(":", 1)[0] in ("127.0.0.1", "localhost"):
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    try:
        ray.init(
            address=args.address,
            namespace="ketch",
            log_to_driver=False,
            logging_level=logging.WARNING,
        )
    except (ConnectionError, RuntimeError, ValueError) as exc:
        print(f"ketch: cannot reach the Ray cluster at {args.address}: {exc}", file=sys.stderr)
        return 255
    task: Any = ray.remote(num_cpus=0, max_retries=0)(run_here).options(
        scheduling_strategy=NodeAffinitySchedulingStrategy(args.node, soft=False)
    )
    ref = task.remote(args.setup, args.command)

    def stop(signum: int, _frame: object) -> None:
        ray.cancel(ref, force=True)
        raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)
    try:
        code, out, err = ray.get(ref)
    except Exception as exc:  # noqa: BLE001 - Ray's errors vary (a lost node, a cancel): named
        print(f"ketch: the command on Ray node {args.node} failed: {exc}", file=sys.stderr)
        return 255
    sys.stdout.buffer.write(out)
    sys.stderr.buffer.write(err)
    return int(code)


if __name__ == "__main__":
    sys.exit(main())
