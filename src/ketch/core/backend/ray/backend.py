"""The Ray backend: ProcessSpecs as OS processes on the nodes of a Ray cluster.

The cluster is given (``address``: ``host:port`` of its head, else ``RAY_ADDRESS``);
the backend starts no node. It keeps a warm pool of process runners on every node
(:class:`~ketch.core.backend.ray.runner.ProcessRunner`: threaded actors that ask
for no CPU, pinned to their node), and every process is started, watched and
stopped by one of them, in a process group of its own, its output streamed back to
Ketch's log files (see :mod:`ketch.core.backend.ray.handles`).

Where a process runs:

- a member of an admitted gang (``spec.placement``) on the node Ray reserved its
  bundle on (:mod:`ketch.core.backend.ray.placement`: :meth:`admit` makes a
  placement group of the gang's members, PACK by default, SPREAD on request);
- else on the node its first port was reserved on (:meth:`reserve_port` asks a
  node's runner for a port free there), else on the node running the fewest of
  this backend's processes (of those with as many GPUs as it asks for).

How: a process with a :class:`~ketch.core.backend.spec.PythonEntry` is forked from
a warm interpreter its node's runner keeps (started by the first such process, or
ahead by :meth:`prewarm`), as the local backend forks it from its fork server; any
other starts new. A process that asks for GPUs (``resources.accelerator_count``)
gets its own of its node's (``CUDA_VISIBLE_DEVICES``), or does not start.

A process's address (:attr:`RayHandle.host`) is its node's; its node
(:attr:`RayHandle.node`, a pod's ``spec.nodeName``) is the Ray node ID, since
several nodes on one machine share an address.
"""

from __future__ import annotations

import atexit
import itertools
import logging
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Hashable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from pathlib import Path

from ketch.core.backend.host import NODE_HOST_ENV, NODE_NAME_ENV, Request
from ketch.core.backend.logfiles import LogFiles
from ketch.core.backend.ray.handles import Pump, RayHandle, Runner
from ketch.core.backend.ray.placement import Gangs, NodeInfo
from ketch.core.backend.ray.runner import Launch, ProcessRunner
from ketch.core.backend.resources import parse_cpu, parse_memory
from ketch.core.backend.spec import Abilities, Backend, Placement, ProcessSpec
from ketch.core.errors import BackendError, InvalidSpec

log = logging.getLogger("ketch.core.backend.ray")

#: how Ray is told that a cluster on 127.0.0.1 is local to this machine (else it
#: turns 127.0.0.1 into the machine's address, where a loopback cluster is not)
LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
_CALL = 60.0  # seconds to wait for a runner to answer a call
_PROBE = 10.0  # seconds to wait for the cluster's head to accept a connection
_NODES_FRESH = 2.0  # seconds a read of the cluster's nodes is reused
_MAX_CONCURRENCY = 64
#: folders (``os.pathsep``-separated) on a filesystem every node of the cluster mounts
#: at the same path, as the control plane does
SHARED_PATHS_ENV = "KETCH_SHARED_PATHS"


def connect(address: str | None) -> bool:
    """Connect this process to the Ray cluster at ``address`` (``RAY_ADDRESS`` when
    ``None``); ``False`` when it was connected already. Raises :class:`BackendError`
    naming the address when Ray is missing or the cluster does not answer."""
    address = address or os.environ.get("RAY_ADDRESS") or None
    if not address:
        raise BackendError(
            "the Ray backend needs the address of a Ray cluster",
            hint="pass --ray-address HOST:PORT or set RAY_ADDRESS (ketch ray up starts one)",
        )
    host, _, port = address.split("://", 1)[-1].rpartition(":")
    if not host or not port.isdigit():
        raise BackendError(
            f"the Ray cluster's address {address!r} is not HOST:PORT",
            hint="ketch ray up prints the address of the cluster it starts",
        )
    try:  # ray.init retries an address where nothing answers for minutes
        socket.create_connection((host, int(port)), timeout=_PROBE).close()
    except OSError as exc:
        raise BackendError(
            f"nothing answers at the Ray cluster's address {address}: {exc.strerror or exc}",
            hint="check that the cluster runs (ray status, or ketch ray up) and the address",
        ) from exc
    if host in ("127.0.0.1", "localhost"):
        os.environ.setdefault(LOOPBACK_ENV, "0")
    try:
        import ray
    except ImportError as exc:
        raise BackendError(
            f"the Ray backend needs Ray, which is not installed ({exc})",
            hint="pip install 'ketch[ray]'",
        ) from exc
    if ray.is_initialized():
        return False
    try:
        ray.init(
            address=address,
            namespace="ketch",
            log_to_driver=False,
            logging_level=logging.WARNING,
            ignore_reinit_error=True,
        )
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise BackendError(
            f"cannot connect to the Ray cluster at {address}: {exc}",
            hint="check that the cluster runs (ray status, or ketch ray up) and the address",
        ) from exc
    return True


class RayBackend(Backend):
    """Runs ProcessSpecs on a Ray cluster through a warm pool of runners per node.

    ``runners_per_node``: how many runner actors each node keeps (each owns any
    number of processes; more spread the calls of a busy node).

    ``shared_paths``: folders every node mounts at the same path as the control plane
    (a shared filesystem); default: ``KETCH_SHARED_PATHS``. When the cluster's nodes
    are on more than one machine, only paths under them count as reachable
    (:meth:`unreachable`).

    ``max_warm_interpreters``: how many warm interpreters each runner keeps (one per
    interpreter, preload list and start-up environment); ``0``: none, every process
    starts new (``spec.python`` is ignored).
    """

    abilities = Abilities(exit_callbacks=True, prewarm=True)

    def __init__(
        self,
        address: str | None = None,
        *,
        runners_per_node: int = 1,
        shared_paths: Sequence[str | Path] | None = None,
        max_warm_interpreters: int = 4,
    ) -> None:
        if runners_per_node < 1:
            raise ValueError("runners_per_node must be >= 1")
        if max_warm_interpreters < 0:
            raise ValueError("max_warm_interpreters must be >= 0")
        self.max_warm_interpreters = max_warm_interpreters
        if shared_paths is None:
            shared_paths = [p for p in os.environ.get(SHARED_PATHS_ENV, "").split(os.pathsep) if p]
        self.shared_paths = tuple(Path(p).expanduser().resolve() for p in shared_paths)
        self._connected = connect(address)
        #: the cluster's address, as the processes on it reach it
        self.address = str(address or os.environ.get("RAY_ADDRESS") or "")
        import ray

        self._ray = ray
        self._id = uuid.uuid4().hex[:8]
        self._per_node = runners_per_node
        self._lock = threading.Lock()
        self._placing = threading.Lock()
        self._closed = False
        self._seq = itertools.count(1)
        self._runners: dict[str, list[Runner]] = {}  # node id -> its pool
        self._nodes: list[NodeInfo] = []
        self._nodes_read = 0.0
        self._ports: dict[int, Runner] = {}  # port -> the runner that holds it
        self._logs = LogFiles("ketch-ray-")
        self._actor = ray.remote(ProcessRunner)
        self._pump = Pump(self._runner_lost)
        self._gangs = Gangs(self.nodes, prefix=f"ketch-{self._id}")
        # before Ray's own exit hook (registered by ray.init: hooks run last first)
        atexit.register(self.shutdown, 2.0)
        self._warm([n for n in self.nodes() if n.alive])

    def __enter__(self) -> RayBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    @property
    def closed(self) -> bool:
        """Whether :meth:`shutdown` was called (nothing starts any more)."""
        return self._closed

    # -- the cluster ---------------------------------------------------------------

    def nodes(self, fresh: bool = False) -> list[NodeInfo]:
        """The cluster's nodes (alive or not), as last read (at most 2 s ago)."""
        with self._lock:
            if not fresh and time.monotonic() - self._nodes_read < _NODES_FRESH:
                return list(self._nodes)
        found = [
            NodeInfo(
                str(n["NodeID"]),
                str(n["NodeManagerAddress"]),
                {str(k): float(v) for k, v in (n.get("Resources") or {}).items()},
                bool(n.get("Alive")),
            )
            for n in self._ray.nodes()
        ]
        with self._lock:
            self._nodes, self._nodes_read = found, time.monotonic()
        return list(found)

    def _warm(self, nodes: list[NodeInfo]) -> None:
        """Start the runners of ``nodes`` that have none, and wait until they answer."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        made: list[Runner] = []
        with self._lock:
            for node in nodes:
                if node.node_id in self._runners:
                    continue
                pool = []
                for _ in range(self._per_node):
                    actor = self._actor.options(
                        num_cpus=0,
                        max_concurrency=_MAX_CONCURRENCY,
                        scheduling_strategy=NodeAffinitySchedulingStrategy(
                            node.node_id, soft=False
                        ),
                    ).remote(node.node_id, node_gpus(node), self.max_warm_interpreters)
                    pool.append(Runner(actor, node))
                self._runners[node.node_id] = pool
                made.extend(pool)
        if not made:
            return
        ready = [r.actor.where.remote() for r in made]
        try:
            self._ray.get(ready, timeout=_CALL * 2)
        except Exception as exc:  # noqa: BLE001 - Ray's errors vary: each is named
            raise BackendError(f"the Ray backend's process runners did not start: {exc}") from exc
        for runner in made:
            self._pump.add(runner)

    def _pool(self, node_id: str) -> list[Runner]:
        with self._lock:
            pool = [r for r in self._runners.get(node_id, []) if not r.lost]
        if pool:
            return pool
        node = next((n for n in self.nodes(fresh=True) if n.node_id == node_id and n.alive), None)
        if node is None:
            raise BackendError(f"Ray node {node_id} is not part of the cluster any more")
        with self._lock:
            self._runners.pop(node_id, None)
        self._warm([node])
        with self._lock:
            return list(self._runners[node_id])

    def _runner_on(self, node_id: str) -> Runner:
        """The least busy runner of ``node_id``'s pool."""
        return min(self._pool(node_id), key=lambda r: len(r.tasks))

    def _least_busy(self, gpus: int = 0) -> Runner:
        """A runner on the alive node running the fewest of this backend's processes
        (of those that have ``gpus`` GPUs)."""
        alive = [n for n in self.nodes() if n.alive]
        if not alive:
            raise BackendError("the Ray cluster has no alive node to run on")
        if gpus > 0:
            alive = [n for n in alive if node_gpus(n) >= gpus]
            if not alive:
                raise BackendError(
                    f"no alive node of the Ray cluster has {gpus} GPU(s) (nvidia.com/gpu)"
                )
        new = [n for n in alive if n.node_id not in self._runners]
        if new:
            self._warm(new)
        with self._lock:
            pools = [[r for r in self._runners.get(n.node_id, []) if not r.lost] for n in alive]
        pools = [p for p in pools if p]
        if not pools:
            raise BackendError("the Ray cluster has no node with a process runner")
        pool = min(pools, key=lambda p: (sum(len(r.tasks) for r in p), p[0].node.node_id))
        return min(pool, key=lambda r: len(r.tasks))

    def _runner_lost(self, runner: Runner) -> None:
        with self._lock:
            pool = self._runners.get(runner.node.node_id, [])
            if runner in pool:
                pool.remove(runner)
            for port in [p for p, r in self._ports.items() if r is runner]:
                del self._ports[port]

    # -- processes -------------------------------------------------------------------

    def start(self, spec: ProcessSpec) -> RayHandle:
        """Start ``spec`` on its node; its handle once the process runs there."""
        if self._closed:
            raise BackendError(f"cannot start {spec.name!r}: the Ray backend is shut down")
        if not spec.command:
            raise InvalidSpec(f"{spec.name!r}: the command is empty", field="command")
        memory = _memory_limit(spec)
        if self.isolation is not None and spec.namespace is not None and spec.run_as is None:
            spec = self.isolation.isolate(spec)
        env = {**spec.env, **spec.secret_env}
        if spec.run_as is not None:
            env.update(spec.run_as.env())
        cpu_limit = parse_cpu(spec.resources.cpu_limit) if spec.resources.cpu_limit else None
        with self._placing:  # a node is chosen and counted busy in one step
            runner = self._runner_for(spec)
            stdout, stderr = self._logs.paths(spec)
            task = f"{self._id}-{next(self._seq)}"
            handle = RayHandle(spec, stdout, stderr, runner, task)
            self._pump.register(handle)
        env.setdefault(NODE_HOST_ENV, runner.node.ip)
        env.setdefault(NODE_NAME_ENV, runner.node.node_id)
        launch = Launch(
            task=task,
            command=list(spec.command),
            env=env,
            cwd=os.path.abspath(spec.cwd) if spec.cwd is not None else self._default_cwd(),
            merged=handle.merged,
            rlimit_as=memory,
            run_as=(spec.run_as.uid, spec.run_as.gid) if spec.run_as is not None else None,
            python=spec.python if self.max_warm_interpreters > 0 else None,
            gpus=gpus_asked(spec),
            cpu_limit=cpu_limit,
        )
        try:
            started = self._ray.get(runner.actor.start.remote(launch), timeout=_CALL)
        except Exception as exc:  # noqa: BLE001 - Ray's errors vary: the message names it
            self._pump.forget(handle)
            handle._set_exit(-9)
            raise BackendError(
                f"cannot start {spec.name!r} on Ray node {runner.node.node_id}: {exc}"
            ) from exc
        if "error" in started:
            self._pump.forget(handle)
            handle._set_exit(127 if started.get("kind") == "not-found" else 126)
            raise BackendError(
                f"cannot start {spec.name!r} on Ray node {runner.node.node_id} "
                f"({runner.node.ip}): {started['error']} (command: {' '.join(spec.command)[:300]})",
                hint="check the command and PATH" if started.get("kind") == "not-found" else None,
            )
        if started.get("note"):
            log.warning("ray backend: on Ray node %s: %s", runner.node.node_id, started["note"])
        handle._set_pid(int(started["pid"]), bool(started.get("forked")))
        handle.cpu_enforced = bool(started.get("cpu_enforced"))
        return handle

    def _default_cwd(self) -> str | None:
        """Where a process whose spec names no folder runs: the control plane's working
        folder where every node reaches it, else the runner's own on its node."""
        here = os.getcwd()
        return here if self.unreachable(Path(here)) is None else None

    def _runner_for(self, spec: ProcessSpec) -> Runner:
        if spec.placement is not None:
            node = self._gangs.node_of(spec.placement.group, spec.placement.member)
            if node is not None:
                return self._runner_on(node)
        with self._lock:
            held = [self._ports[p] for p in spec.ports if p in self._ports]
        for runner in held:
            if not runner.lost:
                return self._runner_on(runner.node.node_id)
        try:
            return self._least_busy(gpus_asked(spec))
        except BackendError as exc:
            raise BackendError(f"cannot start {spec.name!r}: {exc.message}") from exc

    def running(self) -> list[RayHandle]:
        """Handles of the processes still running."""
        return self._pump.running()

    def prewarm(
        self,
        python: str,
        preload: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        warmup: tuple[str, list[str]] | None = None,
    ) -> Future[bool]:
        """Start the warm interpreter of (``python``, ``preload``) on every alive node
        (a Python process may start on any), in the background: in the least busy
        runner of each. Resolves to whether every node's is ready."""
        future: Future[bool] = Future()
        if self._closed or self.max_warm_interpreters == 0:
            future.set_result(False)
            return future

        def run() -> None:
            try:
                runners = [self._runner_on(n.node_id) for n in self.nodes() if n.alive]
                refs = [
                    r.actor.prewarm.remote(python, list(preload), dict(env or {}), warmup)
                    for r in runners
                ]
                ready = self._ray.get(refs, timeout=_CALL * 3)
                future.set_result(bool(ready) and all(ready))
            except Exception as exc:  # noqa: BLE001 - an optimisation only: said, and False
                log.warning(
                    "ray backend: warming up %s failed: %s: %s", python, type(exc).__name__, exc
                )
                future.set_result(False)

        threading.Thread(target=run, name="ketch-ray-prewarm", daemon=True).start()
        return future

    def shutdown(self, grace: float = 5.0) -> None:
        """Stop every process (SIGTERM, SIGKILL after ``grace``), remove the placement
        groups and the runners, and leave the cluster (if this backend joined it)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            runners = [r for pool in self._runners.values() for r in pool if not r.lost]
            self._runners.clear()
        atexit.unregister(self.shutdown)
        # without Ray (shut down already) the runners are gone, and their processes
        # with them (their parent-death signal)
        joined = self._ray.is_initialized()
        if joined:
            try:
                refs = [r.actor.shutdown.remote(grace) for r in runners]
                self._ray.get(refs, timeout=grace + 35.0)
            except Exception as exc:  # noqa: BLE001 - a runner already gone has nothing to stop
                log.debug("ray backend: stopping the runners: %s", exc)
            for handle in self._pump.running():
                handle.wait(2.0)
        self._pump.close()
        for handle in self._pump.running():
            self._pump.forget(handle)
            handle._set_exit(-9)
        if joined:
            self._gangs.release_all()
            for runner in runners:
                try:
                    self._ray.kill(runner.actor)
                except Exception as exc:  # noqa: BLE001 - a runner already gone is fine
                    log.debug("ray backend: removing a runner: %s", exc)
        if self._connected and joined:
            self._ray.shutdown()
        self._logs.remove()

    # -- the cluster's resources -----------------------------------------------------

    def admit(self, key: Hashable, request: Request) -> tuple[bool, str]:
        """Admit ``key`` once a placement group of its members is reserved."""
        if self._closed:
            return False, "the Ray backend is shut down"
        return self._gangs.admit(key, request)

    def release(self, key: Hashable) -> None:
        self._gangs.release(key)

    def reserve_port(self, preferred: int = 0, placement: Placement | None = None) -> int:
        """A port free on the node the process will run on: ``placement``'s node, else
        the least busy node (a spec listing the port then starts there)."""
        runner: Runner | None = None
        if placement is not None:
            node = self._gangs.node_of(placement.group, placement.member)
            if node is not None:
                runner = self._runner_on(node)
        if runner is None:
            runner = self._least_busy()
        for _ in range(16):  # a port number is handed out once, whichever node holds it
            port = int(self._ray.get(runner.actor.reserve_port.remote(preferred), timeout=_CALL))
            with self._lock:
                if port not in self._ports:
                    self._ports[port] = runner
                    return port
            runner.actor.release_ports.remote([port])
            preferred = 0
        raise BackendError(f"no free TCP port found on Ray node {runner.node.node_id}")

    def release_ports(self, ports: Iterable[int]) -> None:
        by_runner: dict[int, tuple[Runner, list[int]]] = {}
        with self._lock:
            for port in ports:
                runner = self._ports.pop(port, None)
                if runner is not None:
                    by_runner.setdefault(id(runner), (runner, []))[1].append(port)
        for runner, held in by_runner.values():
            if not runner.lost:
                runner.actor.release_ports.remote(held)

    def host_of(self, placement: Placement | None = None) -> str:
        """The address of ``placement``'s node (admitted gangs only; else the first
        alive node's)."""
        node_id = (
            self._gangs.node_of(placement.group, placement.member)
            if placement is not None
            else None
        )
        nodes = [n for n in self.nodes() if n.alive]
        for node in nodes:
            if node.node_id == node_id:
                return node.ip
        if node_id is not None:
            found = next((n for n in self.nodes(fresh=True) if n.node_id == node_id), None)
            if found is not None:
                return found.ip
        return nodes[0].ip if nodes else "127.0.0.1"

    def remote_shell(self, placement: Placement | None) -> list[str] | None:
        """``python -m ketch.core.backend.ray.onnode`` for ``placement``'s node (an
        admitted gang's member; ``None`` otherwise)."""
        node = self._gangs.node_of(placement.group, placement.member) if placement else None
        if node is None:
            return None
        onnode = "ketch.core.backend.ray.onnode"
        return [sys.executable, "-m", onnode, "--address", self.address, "--node", node]

    def unreachable(self, path: Path) -> str | None:
        """Why processes on some nodes cannot reach ``path``: the cluster's nodes are
        on several machines and ``path`` is not under a shared path."""
        return unreachable(self.nodes(), Path(path), self.shared_paths)

    def cpus(self) -> int:
        """The CPUs of the cluster's alive nodes (at least 1)."""
        return max(1, int(sum(n.total.get("CPU", 0.0) for n in self.nodes() if n.alive)))

    def gpus(self) -> int:
        """The GPUs of the cluster's alive nodes."""
        return int(sum(n.total.get("GPU", 0.0) for n in self.nodes() if n.alive))


def unreachable(nodes: Sequence[NodeInfo], path: Path, shared: Sequence[Path]) -> str | None:
    """Why a process on one of ``nodes`` could not reach ``path`` of the control plane
    (``None``: all of them can): every node on one machine reaches its paths; nodes on
    several machines reach only the ``shared`` folders (mounted at the same path)."""
    machines = sorted({n.ip for n in nodes if n.alive})
    if len(machines) <= 1:
        return None
    resolved = path.expanduser().resolve()
    if any(resolved.is_relative_to(folder) for folder in shared):
        return None
    where = ", ".join(machines[:4]) + (", ..." if len(machines) > 4 else "")
    return (
        f"{resolved} is on the control plane's disk, but the Ray cluster's nodes are on "
        f"{len(machines)} machines ({where}); declare a filesystem every node mounts at the "
        f"same path in {SHARED_PATHS_ENV}"
        + (f" (now: {os.pathsep.join(map(str, shared))})" if shared else "")
    )


def node_gpus(node: NodeInfo) -> int:
    """How many GPUs ``node`` declares to Ray."""
    return int(node.total.get("GPU", 0.0))


def gpus_asked(spec: ProcessSpec) -> int:
    """How many of its node's GPUs ``spec`` asks for: its accelerators, unless their
    type names something other than an NVIDIA GPU (``nvidia.com/gpu`` when none)."""
    resources = spec.resources
    kind = (resources.accelerator_type or "nvidia.com/gpu").lower()
    return max(resources.accelerator_count, 0) if "nvidia" in kind else 0


def _memory_limit(spec: ProcessSpec) -> int | None:
    """Validate the spec's quantities; the memory limit to apply (``RLIMIT_AS``)."""
    resources = spec.resources
    for value, parse in (
        (resources.cpu_request, parse_cpu),
        (resources.cpu_limit, parse_cpu),
        (resources.memory_request, parse_memory),
    ):
        if value is not None:
            parse(value)
    if resources.memory_limit is None:
        return None
    memory = parse_memory(resources.memory_limit)
    if memory <= 0:
        raise InvalidSpec(
            f"invalid memory limit {resources.memory_limit!r}: must be more than 0",
            field="resources.memory_limit",
        )
    return memory
