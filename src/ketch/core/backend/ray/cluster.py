"""A Ray cluster of several nodes on this machine, bound to 127.0.0.1, to try the
Ray backend on (``ketch ray up``) and to test it.

With ``address_per_node`` node ``i`` listens on ``127.0.0.<i+1>`` instead (still
loopback, reached from this machine only), so the nodes have distinct addresses as
nodes on separate machines would: what a process serves is reached at its node's
address, and Ketch treats the control plane's folders as out of their reach unless
declared shared (``KETCH_SHARED_PATHS``). ``gpus_per_node`` declares GPUs a node
does not have, to try how GPUs are placed and handed out.

Every node is a raylet of its own with its own CPUs and a resource naming it
(``ketch-node-<i>``: 1), joined to the head's GCS; all listen on 127.0.0.1. Ray's
``ray start`` cannot make such a cluster: it turns 127.0.0.1 into the machine's
address, and refuses to add nodes once told to keep to loopback. So the nodes are
started from Python (``ray.cluster_utils.Cluster``) by one holder process, which
keeps them until it gets SIGTERM (``ketch ray down``) and takes them down when it
ends in any way.

``python -m ketch.core.backend.ray.cluster --nodes N --state FILE`` runs a holder:
it writes ``FILE`` (JSON: ``address``, ``pid``, ``nodes``, ``addresses`` and
``raylets`` (the process id of each node's raylet, which a test kills to lose the
node), ``temp_dir``) once every node is up, and removes it when it stops.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ketch.core.backend.ray.backend import LOOPBACK_ENV

log = logging.getLogger("ketch.core.backend.ray")

HOST = "127.0.0.1"
ATTEMPTS = 3  # starts of a node before giving up
OBJECT_STORE = 80 * 2**20  # bytes of object store per node: Ketch moves little data


@dataclass
class LocalCluster:
    """A running local cluster: its head's ``address`` and its Ray node IDs."""

    address: str
    node_ids: list[str]
    temp_dir: Path
    cluster: Any  # ray.cluster_utils.Cluster

    def nodes(self) -> list[Any]:
        """Ray's records of the nodes, the head's first."""
        return [self.cluster.head_node, *self.cluster.worker_nodes]

    def addresses(self) -> list[str]:
        """Each node's address, in :attr:`node_ids` order."""
        return [str(node.node_ip_address) for node in self.nodes()]

    def raylets(self) -> dict[str, int]:
        """The process id of each node's raylet, by node ID."""
        from ray._private import ray_constants

        found = {}
        for node in self.nodes():
            processes = node.all_processes.get(ray_constants.PROCESS_TYPE_RAYLET) or []
            if processes:
                found[str(node.node_id)] = int(processes[0].process.pid)
        return found

    def shutdown(self) -> None:
        """Stop every node and remove the cluster's files."""
        try:
            self.cluster.shutdown()
        finally:
            shutil.rmtree(self.temp_dir, ignore_errors=True)


def node_address(index: int, address_per_node: bool) -> str:
    """The address node ``index`` listens on."""
    return f"127.0.0.{index + 1}" if address_per_node else HOST


def start(
    nodes: int = 3,
    cpus_per_node: float = 1.0,
    *,
    address_per_node: bool = False,
    gpus_per_node: int = 0,
) -> LocalCluster:
    """Start a cluster of ``nodes`` nodes with ``cpus_per_node`` CPUs (and
    ``gpus_per_node`` declared GPUs) each, without Ray's dashboard, on 127.0.0.1 (or
    one loopback address per node); this process owns it (it ends with it).

    A node whose raylet does not register in Ray's 30 s (its agents start slowly on
    a busy machine) is started again, up to :data:`ATTEMPTS` times."""
    if nodes < 1:
        raise ValueError("a cluster needs at least one node")
    if address_per_node and nodes > 254:
        raise ValueError("one loopback address per node allows at most 254 nodes")
    os.environ.setdefault(LOOPBACK_ENV, "0")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    from ray._private.utils import get_ray_address_file
    from ray.cluster_utils import Cluster

    # adding a node records the head's address in the default temp dir's
    # ray_current_cluster whatever the nodes' temp_dir: a machine with no /tmp/ray yet
    # (a fresh one, or /tmp cleaned) has no folder for it
    Path(get_ray_address_file(None)).parent.mkdir(parents=True, exist_ok=True)
    common: dict[str, Any] = {
        "num_cpus": cpus_per_node,
        "num_gpus": gpus_per_node,
        "node_ip_address": HOST,
        "object_store_memory": OBJECT_STORE,
    }
    for attempt in range(1, ATTEMPTS + 1):
        # short: Ray's socket paths live under it, and a socket path has at most 107 bytes
        temp_dir = Path(tempfile.mkdtemp(prefix="kray-", dir="/tmp"))
        before = _children()
        head_args = {
            **common,
            **_agent_ports(),
            "include_dashboard": False,
            "temp_dir": str(temp_dir),
            "resources": {"ketch-node-0": 1.0},
        }
        try:
            cluster = Cluster(initialize_head=True, head_node_args=head_args)
        except Exception as exc:  # noqa: BLE001 - Ray raises a bare Exception: tried again
            _kill_children(before)
            shutil.rmtree(temp_dir, ignore_errors=True)
            if attempt == ATTEMPTS:
                raise
            log.warning("the Ray head did not start (%s); starting it again", exc)
            continue
        try:
            for index in range(1, nodes):
                _add_node(
                    cluster,
                    {
                        **common,
                        "node_ip_address": node_address(index, address_per_node),
                        "resources": {f"ketch-node-{index}": 1.0},
                    },
                )
            cluster.wait_for_nodes()
            head = cluster.head_node
            assert head is not None  # made with the cluster (initialize_head)
            node_ids = [head.node_id] + [n.node_id for n in cluster.worker_nodes]
        except BaseException:
            cluster.shutdown()
            shutil.rmtree(temp_dir, ignore_errors=True)
            raise
        return LocalCluster(str(cluster.address), node_ids, temp_dir, cluster)
    raise AssertionError("unreachable")


def _add_node(cluster: Any, args: dict[str, Any]) -> None:
    for attempt in range(1, ATTEMPTS + 1):
        before = _children()
        try:
            cluster.add_node(**args, **_agent_ports())
            return
        except Exception as exc:  # noqa: BLE001 - Ray raises a bare Exception: tried again
            _kill_children(before)
            if attempt == ATTEMPTS:
                raise
            log.warning("a Ray node did not start (%s); starting it again", exc)


def _children() -> set[int]:
    """The processes this process started that are still there."""
    me = str(os.getpid())
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[1] == me:
            found.add(int(entry.name))
    return found


def _kill_children(before: set[int]) -> None:
    """SIGKILL and reap what this process started since ``before`` was taken (the
    processes of a node that did not start)."""
    for pid in _children() - before:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            os.waitpid(pid, 0)


def _agent_ports() -> dict[str, int]:
    """Ports of a node's own agents, chosen here: a raylet whose agents pick their
    own waits for them to say which, and gives up after 30 s on a busy machine."""
    ports: list[int] = []
    sockets = []
    try:
        for _ in range(4):
            sock = socket.socket()
            sock.bind((HOST, 0))
            sockets.append(sock)
            ports.append(int(sock.getsockname()[1]))
    finally:
        for sock in sockets:
            sock.close()
    names = (
        "metrics_agent_port",
        "metrics_export_port",
        "runtime_env_agent_port",
        "dashboard_agent_listen_port",
    )
    return dict(zip(names, ports, strict=True))


@contextlib.contextmanager
def running(nodes: int = 3, cpus_per_node: float = 1.0, **options: Any) -> Iterator[LocalCluster]:
    """:func:`start`, stopped when the block ends."""
    made = start(nodes, cpus_per_node, **options)
    try:
        yield made
    finally:
        made.shutdown()


def hold(nodes: int, cpus_per_node: float, state: Path, **options: Any) -> int:
    """Run a cluster until SIGTERM or SIGINT, its state in ``state`` meanwhile."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    made = start(nodes, cpus_per_node, **options)
    try:
        text = json.dumps(
            {
                "address": made.address,
                "pid": os.getpid(),
                "nodes": made.node_ids,
                "addresses": made.addresses(),
                "raylets": made.raylets(),
                "temp_dir": str(made.temp_dir),
            }
        )
        partial = state.with_suffix(".tmp")
        partial.write_text(text)
        partial.replace(state)
        print(f"ray cluster of {nodes} nodes at {made.address}", flush=True)
        stop.wait()
    finally:
        state.unlink(missing_ok=True)
        made.shutdown()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ketch.core.backend.ray.cluster")
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--cpus-per-node", type=float, default=1.0)
    parser.add_argument("--gpus-per-node", type=int, default=0)
    parser.add_argument("--address-per-node", action="store_true")
    parser.add_argument("--state", type=Path, required=True)
    args = parser.parse_args(argv)
    return hold(
        args.nodes,
        args.cpus_per_node,
        args.state,
        address_per_node=args.address_per_node,
        gpus_per_node=args.gpus_per_node,
    )


if __name__ == "__main__":
    sys.exit(main())
