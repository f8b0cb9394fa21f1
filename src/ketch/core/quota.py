"""Profile quotas, as Kubernetes' ResourceQuota enforces them.

Kubeflow's Profile controller turns a profile's ``spec.resourceQuotaSpec`` into a
ResourceQuota named ``kf-resource-quota`` in the profile's namespace. Ketch reads the
quota straight from the stored Profile (cluster-scoped, so kept in the ``default``
namespace, and named like the namespace it governs) and enforces it in two places:

- **Object counts** (``count/<plural>.<group>``, ``count/<plural>`` for the core
  group, and the bare ``configmaps``, ``secrets``, ``services``,
  ``persistentvolumeclaims``): a create that would take a namespace past its limit is
  refused with 403 Forbidden and Kubernetes' message (:class:`QuotaExceeded`,
  :func:`admit_create`); nothing is stored. The API checks a client's creates; a
  controller that creates objects itself (a Katib trial's job, a recurring run's
  run) goes through :func:`create_counted` or the same :func:`admit_create`, so
  Kubernetes' rule holds for them too. Creates are checked and stored one at a time
  per store (:func:`count_lock`): two cannot both take the last place.
- **Compute** (``cpu``/``requests.cpu``, ``memory``/``requests.memory``,
  ``limits.cpu``, ``limits.memory``, ``requests.nvidia.com/gpu``, ``pods``): the
  pods a workload is about to start are charged to the namespace's ledger
  (:mod:`ketch.core.charges`) before they start; when they do not fit under the hard
  limits next to the pods already charged there, none starts: the workload stays
  pending (recording Kubernetes' ``FailedCreate`` message naming ``kf-resource-quota``)
  and asks again later, until enough is released. As in Kubernetes, a pod's request
  defaults to its limit, a resource a pod does not ask for is not checked for it,
  and a pod is charged until its process ends.

Quantities are added exactly (:func:`amount` gives fractions: ``"100m"`` ten times is
``1``, ``"1Gi"`` is 1073741824), as Kubernetes adds its quantities.
"""

from __future__ import annotations

import math
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from fractions import Fraction
from typing import Any

from ketch.core.backend.resources import exact_quantity
from ketch.core.errors import Forbidden, InvalidSpec, NotFound
from ketch.core.kinds import Kind
from ketch.core.resource import DEFAULT_NAMESPACE, Resource
from ketch.core.store.resources import ResourceStore
from ketch.core.workloads.pods import Container, ResourceRequirements

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
#: what a pod is charged, by resource
RESOURCES = (REQUESTS_CPU, REQUESTS_MEMORY, LIMITS_CPU, LIMITS_MEMORY, REQUESTS_GPU, PODS)

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
_SMALL = (("m", 10**3), ("u", 10**6), ("n", 10**9))

Amounts = dict[str, Fraction]
"""Quantities by resource (``requests.cpu`` -> 1/2)."""


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


def amount(value: str | float | int) -> Fraction:
    """A quantity, exactly (``"500m"`` -> 1/2, ``"1Gi"`` -> 1073741824)."""
    return exact_quantity(value)


def show(resource: str, value: Fraction | float | int) -> str:
    """``value`` of ``resource`` as Kubernetes prints a quantity: ``500m``, ``2``,
    ``1Gi`` (memory in the largest binary unit that divides it)."""
    exact = Fraction(value)
    if exact.denominator != 1:
        for suffix, scale in _SMALL:
            scaled = exact * scale
            if scaled.denominator == 1:
                return f"{scaled.numerator}{suffix}"
        return f"{math.ceil(exact * 10**9)}n"
    number = exact.numerator
    if COMPUTE.get(resource) in _MEMORY and number:
        for suffix, scale in _BINARY:
            if number % scale == 0:
                return f"{number // scale}{suffix}"
    return str(number)


def _listing(values: Mapping[str, Fraction]) -> str:
    return ",".join(f"{name}={show(name, values[name])}" for name in sorted(values))


def exceeded(
    requested: Mapping[str, Fraction], used: Mapping[str, Fraction], limited: Mapping[str, Fraction]
) -> str:
    """Kubernetes' words for a quota that does not fit (each by the hard limit's name)."""
    return (
        f"exceeded quota: {QUOTA_NAME}, requested: {_listing(requested)}, "
        f"used: {_listing(used)}, limited: {_listing(limited)}"
    )


def limits(hard: Mapping[str, str], names: Iterable[str]) -> Amounts:
    """The hard limits among ``names`` that are quantities, as amounts."""
    found: Amounts = {}
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


_COUNT_LOCKS: weakref.WeakKeyDictionary[Any, threading.RLock] = weakref.WeakKeyDictionary()
_COUNT_LOCKS_LOCK = threading.Lock()


def count_lock(store: ResourceStore) -> AbstractContextManager[Any]:
    """The lock creates of counted objects are checked and stored under, one per
    store's database (the API's creates and controllers' alike). It is re-entrant: a
    create the API admitted may be checked again by the code that stores it."""
    with _COUNT_LOCKS_LOCK:
        found = _COUNT_LOCKS.get(store.database)
        if found is None:
            found = _COUNT_LOCKS[store.database] = threading.RLock()
        return found


@contextmanager
def admit_create(
    store: ResourceStore,
    lock: AbstractContextManager[Any],
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
        # pods are charged as they start (the ledger), not as objects are written
        yield
        return
    limited = limits(hard_limits(store, namespace), count_names(kind))
    if not limited:
        yield
        return
    with lock:
        have = Fraction(count())
        over = {name: limit for name, limit in limited.items() if have + 1 > limit}
        if over:
            plural = f"{kind.plural}.{kind.group}" if kind.group else kind.plural
            message = exceeded(dict.fromkeys(over, Fraction(1)), dict.fromkeys(over, have), over)
            raise QuotaExceeded(f'{plural} "{resource.metadata.name}" is forbidden: {message}')
        yield


def create_counted(store: ResourceStore, kind: Kind, resource: Resource) -> Resource:
    """``store.create(resource)`` as the API server would make it for a controller:
    refused with :class:`QuotaExceeded` (nothing stored) when a count quota of its
    namespace's profile is reached."""
    namespace = resource.metadata.namespace or DEFAULT_NAMESPACE

    def count() -> int:
        return len(store.list_manifests(kind.kind, namespace).items)

    with admit_create(store, count_lock(store), kind, resource, count):
        return store.create(resource)


# -- compute, as pods start ---------------------------------------------------------------


def _quantity(values: Mapping[str, Any], resource: str) -> Fraction | None:
    value = values.get(resource)
    if value is None:
        return None
    try:
        return amount(value)
    except InvalidSpec:
        return None


def _add(total: Amounts, more: Mapping[str, Fraction]) -> Amounts:
    for name, value in more.items():
        total[name] = total.get(name, Fraction(0)) + value
    return total


def resources_demand(resources: Iterable[ResourceRequirements]) -> Amounts:
    """What one pod whose containers have ``resources`` is charged: their requests
    (each defaulting to its limit), limits and GPUs, and itself (``pods``)."""
    demand: Amounts = dict.fromkeys(RESOURCES, Fraction(0))
    demand[PODS] = Fraction(1)
    for needs in resources:
        requests, limited = needs.requests, needs.limits
        for charged, resource in (
            (REQUESTS_CPU, "cpu"),
            (REQUESTS_MEMORY, "memory"),
            (REQUESTS_GPU, GPU),
        ):
            asked = _quantity(requests, resource)
            if asked is None:
                asked = _quantity(limited, resource)
            demand[charged] += asked or 0
        demand[LIMITS_CPU] += _quantity(limited, "cpu") or 0
        demand[LIMITS_MEMORY] += _quantity(limited, "memory") or 0
    return demand


def pod_demand(containers: Iterable[Container]) -> Amounts:
    """What one pod running ``containers`` is charged (see :func:`resources_demand`)."""
    return resources_demand(container.resources for container in containers)


def refusal(
    pods: list[tuple[str, Amounts]],
    limited: Mapping[str, Fraction],
    used: Mapping[str, Fraction],
) -> str | None:
    """Kubernetes' ``FailedCreate`` message when ``pods`` (``(name, demand)``) do not fit
    under ``limited`` next to ``used``; ``None`` when they fit."""
    demand: Amounts = {}
    for _name, needs in pods:
        _add(demand, needs)
    requested: Amounts = {}
    using: Amounts = {}
    over: Amounts = {}
    for name, limit in limited.items():
        resource = COMPUTE[name]
        want = demand.get(resource, Fraction(0))
        if want <= 0:
            continue  # the pods do not ask for it
        have = used.get(resource, Fraction(0))
        if have + want > limit:
            requested[name], using[name], over[name] = want, have, limit
    if not over:
        return None
    first = pods[0][0] if pods else "pod"
    also = f" (and {len(pods) - 1} more pods of the gang)" if len(pods) > 1 else ""
    return f'Error creating: pods "{first}"{also} is forbidden: {exceeded(requested, using, over)}'


def never_fits(store: ResourceStore, namespace: str, pods: list[tuple[str, Amounts]]) -> str | None:
    """The refusal of ``pods`` when they alone ask for more than the namespace's quota
    allows (they could never start, whatever else ends); ``None`` otherwise."""
    limited = limits(hard_limits(store, namespace), COMPUTE)
    return refusal(pods, limited, {}) if limited else None


__all__ = [
    "COMPUTE",
    "QUOTA_NAME",
    "RESOURCES",
    "Amounts",
    "QuotaExceeded",
    "admit_create",
    "amount",
    "count_lock",
    "count_names",
    "create_counted",
    "exceeded",
    "hard_limits",
    "limits",
    "never_fits",
    "pod_demand",
    "refusal",
    "resources_demand",
    "show",
]
