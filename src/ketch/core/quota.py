"""Profile quotas, as Kubernetes' ResourceQuota enforces them.

Kubeflow's Profile controller turns a profile's ``spec.resourceQuotaSpec`` into a
ResourceQuota named ``kf-resource-quota`` in the profile's namespace. Ketch reads the
quota straight from the stored Profile (cluster-scoped, so kept in the ``default``
namespace, and named like the namespace it governs) and enforces it in two places:

- **Object counts** (``count/<plural>.<group>``, ``count/<plural>`` for the core
  group, and the bare ``configmaps``, ``secrets``, ``services``,
  ``persistentvolumeclaims``): a create that would take a namespace past its limit is
  refused at admission with 403 Forbidden and Kubernetes' message
  (:class:`QuotaExceeded`, :func:`admit_create`); nothing is stored.
- **Compute** (``cpu``/``requests.cpu``, ``memory``/``requests.memory``,
  ``limits.cpu``, ``limits.memory``, ``requests.nvidia.com/gpu``, ``pods``): the
  pods a workload is about to start are charged to the namespace's
  :class:`QuotaLedger` as one gang; when they do not all fit under the hard limits
  next to the pods already charged there, none starts: the workload stays pending
  (its controller records a ``FailedCreate`` Warning naming ``kf-resource-quota``
  and asks again later) until enough is released. As in Kubernetes, a pod's request
  defaults to its limit, a resource a pod does not ask for is not checked for it,
  and a pod is charged until its process ends.

The ledger lives with the control plane that starts the processes (one per store's
:class:`~ketch.core.store.db.Database`, like the access implementation of
:mod:`ketch.core.access`): on a restart it is empty, and the workloads that had not
finished are charged again as they start again. :func:`usage` reports a namespace's
``hard`` and ``used``, as a ResourceQuota's status does.
"""

from __future__ import annotations

import math
import threading
import weakref
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from ketch.core.backend.resources import parse_cpu
from ketch.core.errors import Forbidden, InvalidSpec, NotFound
from ketch.core.kinds import Kind, KindRegistry
from ketch.core.resource import DEFAULT_NAMESPACE, Resource
from ketch.core.store.resources import ResourceStore
from ketch.core.workloads.pods import Container

#: the name of the ResourceQuota Kubeflow's Profile controller makes for a profile
QUOTA_NAME = "kf-resource-quota"
PROFILE = "Profile"
GPU = "nvidia.com/gpu"

REQUESTS_CPU = "requests.cpu"
REQUESTS_MEMORY = "requests.memory"
LIMITS_CPU = "limits.cpu"
LIMITS_MEMORY = "limits.memory"
REQUESTS_GPU = f"requests.{GPU}"
PODS = "pods"

#: a hard limit's name -> what it limits of the pods' (the compute resources)
COMPUTE = {
    "cpu": REQUESTS_CPU,
    REQUESTS_CPU: REQUESTS_CPU,
    "memory": REQUESTS_MEMORY,
    REQUESTS_MEMORY: REQUESTS_MEMORY,
    LIMITS_CPU: LIMITS_CPU,
    LIMITS_MEMORY: LIMITS_MEMORY,
    GPU: REQUESTS_GPU,
    REQUESTS_GPU: REQUESTS_GPU,
    f"limits.{GPU}": REQUESTS_GPU,
    PODS: PODS,
    "count/pods": PODS,
}
#: core kinds Kubernetes also counts under their bare plural
_BARE_COUNTS = frozenset({"configmaps", "secrets", "services", "persistentvolumeclaims"})
_MEMORY = frozenset({REQUESTS_MEMORY, LIMITS_MEMORY})
_BINARY = (("Ei", 2**60), ("Pi", 2**50), ("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10))
_EPSILON = 1e-9


class QuotaExceeded(Forbidden):
    """A create or a pod that would take a namespace past its profile's quota (403)."""


# -- the quota ------------------------------------------------------------------------


def hard_limits(store: ResourceStore, namespace: str) -> dict[str, str]:
    """The ``spec.resourceQuotaSpec.hard`` of the profile of ``namespace`` (empty when
    it has no profile or no quota)."""
    if namespace == DEFAULT_NAMESPACE:
        return {}
    try:
        profile = store.get(PROFILE, DEFAULT_NAMESPACE, namespace)
    except NotFound:
        return {}
    spec = profile.spec.get("resourceQuotaSpec") if isinstance(profile.spec, dict) else None
    hard = spec.get("hard") if isinstance(spec, dict) else None
    if not isinstance(hard, dict):
        return {}
    return {str(k): str(v) for k, v in hard.items()}


def amount(value: str | float | int) -> float:
    """A quantity as a number (``"500m"`` -> 0.5, ``"1Gi"`` -> 1073741824.0)."""
    return parse_cpu(value)


def show(resource: str, value: float) -> str:
    """``value`` of ``resource`` as Kubernetes prints a quantity: ``500m``, ``2``,
    ``1Gi`` (memory in the largest binary unit that divides it)."""
    whole = math.isclose(value, round(value), abs_tol=_EPSILON)
    if not whole:
        return f"{math.ceil(value * 1000 - _EPSILON)}m"
    number = round(value)
    if COMPUTE.get(resource) in _MEMORY and number:
        for suffix, scale in _BINARY:
            if number % scale == 0:
                return f"{number // scale}{suffix}"
    return str(number)


def _listing(values: Mapping[str, float]) -> str:
    return ",".join(f"{name}={show(name, values[name])}" for name in sorted(values))


def exceeded(
    requested: Mapping[str, float], used: Mapping[str, float], limited: Mapping[str, float]
) -> str:
    """Kubernetes' words for a quota that does not fit (each by the hard limit's name)."""
    return (
        f"exceeded quota: {QUOTA_NAME}, requested: {_listing(requested)}, "
        f"used: {_listing(used)}, limited: {_listing(limited)}"
    )


def _limits(hard: Mapping[str, str], names: Iterable[str]) -> dict[str, float]:
    found: dict[str, float] = {}
    for name in names:
        if name not in hard:
            continue
        try:
            found[name] = amount(hard[name])
        except InvalidSpec:
            continue  # refused when the profile was written; an old one is not enforced
    return found


# -- object counts, at admission --------------------------------------------------------


def count_names(kind: Kind) -> tuple[str, ...]:
    """The hard limits that count objects of ``kind``: ``count/<plural>.<group>``
    (``count/<plural>`` in the core group, and the bare plural for the core kinds
    Kubernetes counts so)."""
    if not kind.group:
        bare = (kind.plural,) if kind.plural in _BARE_COUNTS else ()
        return (f"count/{kind.plural}", *bare)
    return (f"count/{kind.plural}.{kind.group}",)


@contextmanager
def admit_create(
    store: ResourceStore,
    lock: threading.Lock,
    kind: Kind,
    resource: Resource,
    count: Callable[[], int],
) -> Iterator[None]:
    """Hold while ``resource`` (a new object of ``kind``) is stored: raises
    :class:`QuotaExceeded` when its namespace already has as many objects of the kind
    (``count()``) as a count quota of its profile allows. Creates checked with the same
    ``lock`` are checked and stored one at a time, so two cannot both take the last
    place."""
    namespace = resource.metadata.namespace or DEFAULT_NAMESPACE
    if not kind.namespaced or (not kind.group and kind.plural == PODS):
        # pods are charged as they start (QuotaLedger), not as objects are written
        yield
        return
    limited = _limits(hard_limits(store, namespace), count_names(kind))
    if not limited:
        yield
        return
    with lock:
        have = float(count())
        over = {name: limit for name, limit in limited.items() if have + 1 > limit + _EPSILON}
        if over:
            plural = f"{kind.plural}.{kind.group}" if kind.group else kind.plural
            message = exceeded(dict.fromkeys(over, 1.0), dict.fromkeys(over, have), over)
            raise QuotaExceeded(f'{plural} "{resource.metadata.name}" is forbidden: {message}')
        yield


# -- compute, as pods start ---------------------------------------------------------------


def _request(container: Container, resource: str) -> float:
    """What ``container`` requests of ``resource`` (its limit when it sets no request)."""
    requests, limits = container.resources.requests, container.resources.limits
    value = requests.get(resource, limits.get(resource))
    if value is None:
        return 0.0
    try:
        return amount(value)
    except InvalidSpec:
        return 0.0


def _limit(container: Container, resource: str) -> float:
    value = container.resources.limits.get(resource)
    if value is None:
        return 0.0
    try:
        return amount(value)
    except InvalidSpec:
        return 0.0


def pod_demand(containers: Iterable[Container]) -> dict[str, float]:
    """What one pod running ``containers`` is charged: their requests, limits and
    GPUs, and itself (``pods``)."""
    demand = {PODS: 1.0}
    for container in containers:
        _add(
            demand,
            {
                REQUESTS_CPU: _request(container, "cpu"),
                REQUESTS_MEMORY: _request(container, "memory"),
                LIMITS_CPU: _limit(container, "cpu"),
                LIMITS_MEMORY: _limit(container, "memory"),
                REQUESTS_GPU: _request(container, GPU),
            },
        )
    return demand


def _add(total: dict[str, float], more: Mapping[str, float]) -> dict[str, float]:
    for name, value in more.items():
        total[name] = total.get(name, 0.0) + value
    return total


class QuotaLedger:
    """The pods charged to each namespace's quota, by the key of what started them
    (a gang: a job's replicas, charged and released together)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._charged: dict[Hashable, tuple[str, dict[str, float]]] = {}

    def used(self, namespace: str) -> dict[str, float]:
        """What the pods charged in ``namespace`` use, by resource."""
        with self._lock:
            return self._used(namespace)

    def _used(self, namespace: str) -> dict[str, float]:
        total: dict[str, float] = dict.fromkeys(
            (REQUESTS_CPU, REQUESTS_MEMORY, LIMITS_CPU, LIMITS_MEMORY, REQUESTS_GPU, PODS), 0.0
        )
        for where, demand in self._charged.values():
            if where == namespace:
                _add(total, demand)
        return total

    def admit(
        self,
        store: ResourceStore,
        key: Hashable,
        namespace: str,
        pods: Iterable[tuple[str, Sequence[Container]]],
    ) -> str | None:
        """Charge ``pods`` (``(pod name, its containers)``) to ``namespace`` for ``key``
        when all of them fit under its profile's quota, and answer ``None``; else
        charge nothing and answer Kubernetes' message saying which limits they
        exceed. Charging a key again is a no-op."""
        pods = list(pods)
        demand: dict[str, float] = {}
        for _name, containers in pods:
            _add(demand, pod_demand(containers))
        with self._lock:
            if key in self._charged:
                return None
            refused = self._refusal(store, namespace, demand, pods)
            if refused is None:
                self._charged[key] = (namespace, demand)
            return refused

    def _refusal(
        self,
        store: ResourceStore,
        namespace: str,
        demand: Mapping[str, float],
        pods: list[tuple[str, Sequence[Container]]],
    ) -> str | None:
        limited = _limits(hard_limits(store, namespace), COMPUTE)
        if not limited:
            return None
        used = self._used(namespace)
        requested: dict[str, float] = {}
        using: dict[str, float] = {}
        over: dict[str, float] = {}
        for name, limit in limited.items():
            resource = COMPUTE[name]
            want = demand.get(resource, 0.0)
            if want <= 0:
                continue  # the pods do not ask for it
            if used[resource] + want > limit + _EPSILON:
                requested[name], using[name], over[name] = want, used[resource], limit
        if not over:
            return None
        first = pods[0][0] if pods else namespace
        also = f" (and {len(pods) - 1} more pods of the gang)" if len(pods) > 1 else ""
        return (
            f'Error creating: pods "{first}"{also} is forbidden: {exceeded(requested, using, over)}'
        )

    def release(self, key: Hashable) -> None:
        """Give back what ``key`` was charged (nothing when it was not)."""
        with self._lock:
            self._charged.pop(key, None)


_LEDGERS: weakref.WeakKeyDictionary[Any, QuotaLedger] = weakref.WeakKeyDictionary()
_LEDGERS_LOCK = threading.Lock()


def ledger_of(store: ResourceStore) -> QuotaLedger:
    """The quota ledger of the control plane over ``store`` (one per Database: every
    controller of the store shares it)."""
    with _LEDGERS_LOCK:
        found = _LEDGERS.get(store.database)
        if found is None:
            found = _LEDGERS[store.database] = QuotaLedger()
        return found


# -- status --------------------------------------------------------------------------------


def usage(
    store: ResourceStore, namespace: str, kinds: KindRegistry | None = None
) -> dict[str, dict[str, str]]:
    """The ``hard`` and ``used`` of the namespace's quota, as a ResourceQuota's status
    writes them (by the hard limits' names); counts of a kind ``kinds`` does not
    serve, or that are not kept in the store, are left out of ``used``."""
    hard = hard_limits(store, namespace)
    charged = ledger_of(store).used(namespace)
    counted: dict[str, Kind] = {}
    for kind in kinds or ():
        if kind.namespaced:
            counted.update(dict.fromkeys(count_names(kind), kind))
    used: dict[str, str] = {}
    for name in hard:
        if name in COMPUTE:
            used[name] = show(name, charged[COMPUTE[name]])
        elif name in counted:
            used[name] = str(len(store.list_manifests(counted[name].kind, namespace).items))
    return {"hard": dict(hard), "used": used}


__all__ = [
    "QUOTA_NAME",
    "QuotaExceeded",
    "QuotaLedger",
    "admit_create",
    "count_names",
    "exceeded",
    "hard_limits",
    "ledger_of",
    "usage",
]
