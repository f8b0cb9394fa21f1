"""Gangs on a Ray cluster: what :meth:`Backend.admit` takes becomes a placement group.

A gang's request lists its members (one per process, see
:class:`~ketch.core.backend.host.Request`); each member is a bundle of Ray
resources (``CPU``, ``memory`` in bytes, ``GPU`` for ``nvidia.com/gpu``), placed
with the gang's strategy (PACK by default, SPREAD on request). The gang is admitted
once Ray has reserved every bundle, all at once; until then it waits, and the
reason says what the cluster lacks. A group that can never fit (a member larger
than any node, a strict spread over more nodes than there are) waits too, as a pod
that no node can take stays Pending: a node may join the cluster.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any

from ketch.core.backend.host import Request

#: the least CPU a bundle asks: Ray refuses a bundle that asks for nothing
MIN_CPU = 0.01
#: the label of a Ray node that holds its ID (a member's ``node`` selects on it)
NODE_LABEL = "ray.io/node-id"
#: how long the first admission of a gang waits for Ray to reserve its group
FIRST_WAIT = 0.5


@dataclass(frozen=True)
class NodeInfo:
    """A node of the cluster as Ray describes it."""

    node_id: str
    ip: str
    total: Mapping[str, float]
    alive: bool = True


def bundle(member: Request) -> dict[str, float]:
    """The Ray resources of one member."""
    out = {"CPU": max(member.cpu, MIN_CPU)}
    if member.memory > 0:
        out["memory"] = float(int(member.memory))
    if member.gpu > 0:
        out["GPU"] = member.gpu
    return out


def describe(resources: Mapping[str, float]) -> str:
    parts = [f"cpu={resources.get('CPU', 0):g}"]
    if resources.get("memory"):
        parts.append(f"memory={resources['memory'] / 2**20:.0f}Mi")
    if resources.get("GPU"):
        parts.append(f"nvidia.com/gpu={resources['GPU']:g}")
    return ", ".join(parts)


def why_pending(request: Request, nodes: list[NodeInfo]) -> str:
    """Why a gang of ``request``'s members does not fit ``nodes`` now (or ever)."""
    bundles = [bundle(m) for m in request.bundles()]
    alive = [n for n in nodes if n.alive]
    count = len(bundles)
    placed = f"its {count} member{'s' if count != 1 else ''} ({request.strategy})"
    for index, member in enumerate(request.bundles()):
        node = next((n for n in alive if n.node_id == member.node), None)
        if member.node and node is None:
            return (
                f"waiting for Ray node {member.node}, which member {index} must run on: "
                "it is not an alive node of the cluster"
            )
        if node is not None and not all(
            node.total.get(k, 0.0) >= v for k, v in bundles[index].items()
        ):
            return (
                f"member {index} asks {describe(bundles[index])} of Ray node {node.node_id}, "
                "more than it has"
            )
    for index, asked in enumerate(bundles):
        if not any(all(n.total.get(k, 0.0) >= v for k, v in asked.items()) for n in alive):
            return (
                f"waiting for a Ray node that can hold {placed}: member {index} asks "
                f"{describe(asked)}, more than any of the cluster's {len(alive)} nodes has"
            )
    if request.strategy == "STRICT_SPREAD" and count > len(alive):
        return (
            f"waiting for Ray nodes: {placed} must each be on a node of its own, "
            f"and the cluster has {len(alive)}"
        )
    if request.strategy == "STRICT_PACK":
        summed = {k: sum(b.get(k, 0.0) for b in bundles) for b in bundles for k in b}
        if not any(all(n.total.get(k, 0.0) >= v for k, v in summed.items()) for n in alive):
            return (
                f"waiting for a Ray node that can hold {placed} together "
                f"({describe(summed)}): none of the cluster's {len(alive)} nodes is that large"
            )
    total = {k: sum(b.get(k, 0.0) for b in bundles) for b in bundles for k in b}
    return (
        f"waiting for resources on the Ray cluster: {placed} ask {describe(total)} in all, "
        "and the nodes are busy with other work"
    )


@dataclass
class _Group:
    request: Request
    group: Any  # ray.util.placement_group.PlacementGroup
    nodes: tuple[str, ...] | None = None  # each bundle's node, once reserved


class Gangs:
    """The placement groups of the gangs admitted, and of those waiting."""

    def __init__(self, nodes: Callable[[], list[NodeInfo]], prefix: str) -> None:
        self._nodes = nodes
        self._prefix = prefix
        self._lock = threading.Lock()
        self._groups: dict[Hashable, _Group] = {}

    def admit(self, key: Hashable, request: Request) -> tuple[bool, str]:
        """Admit ``key`` once its placement group is reserved; ``(admitted, why not)``."""
        from ray.util import placement_group

        wait = 0.0
        with self._lock:
            group = self._groups.get(key)
            if group is None:
                name = f"{self._prefix}-{hashlib.sha256(repr(key).encode()).hexdigest()[:16]}"
                members = request.bundles()
                made = placement_group(
                    [bundle(m) for m in members],
                    strategy=request.strategy,
                    name=name,
                    bundle_label_selector=[{NODE_LABEL: m.node} if m.node else {} for m in members],
                )
                group = self._groups[key] = _Group(request, made)
                wait = FIRST_WAIT  # a group that fits is reserved in milliseconds
            if group.nodes is not None:
                return True, ""
        nodes = _reserved(group.group, wait)
        if nodes is not None:
            with self._lock:
                group.nodes = nodes
            return True, ""
        return False, why_pending(group.request, self._nodes())

    def release(self, key: Hashable) -> None:
        """Remove ``key``'s placement group, reserved or waiting."""
        from ray.util import remove_placement_group

        with self._lock:
            group = self._groups.pop(key, None)
        if group is not None:
            try:
                remove_placement_group(group.group)
            except Exception:  # noqa: BLE001 - Ray's errors vary; a group already gone is fine
                pass

    def node_of(self, key: Hashable, member: int) -> str | None:
        """The node member ``member`` of admitted ``key`` is on (``None``: not admitted,
        or no such member)."""
        with self._lock:
            group = self._groups.get(key)
            if group is None or group.nodes is None or not 0 <= member < len(group.nodes):
                return None
            node = group.nodes[member]
        if any(n.node_id == node and n.alive for n in self._nodes()):
            return node
        # its node was lost: Ray reserves the bundle again on another node, if one fits
        nodes = _reserved(group.group, FIRST_WAIT)
        if nodes is None or not 0 <= member < len(nodes):
            return node  # not yet: a start there fails, saying the node is gone
        with self._lock:
            group.nodes = nodes
        return nodes[member]

    def release_all(self) -> None:
        with self._lock:
            keys = list(self._groups)
        for key in keys:
            self.release(key)


def _reserved(group: Any, wait: float = 0.0) -> tuple[str, ...] | None:
    """The node of each bundle of ``group`` once Ray has reserved them all."""
    from ray.util import placement_group_table

    deadline = time.monotonic() + wait
    while True:
        table = placement_group_table(group)
        if table.get("state") == "CREATED":
            placed = table.get("bundles_to_node_id") or {}
            return tuple(str(placed[i]) for i in sorted(placed))
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.05)
