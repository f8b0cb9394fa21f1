"""What each namespace's pods are charged against its profile's compute quota (see
:mod:`ketch.core.quota`), and what a ResourceQuota's status reports of it.

A :class:`QuotaLedger` holds a charge per workload (a key its controller chooses: a
job's gang, a batch Job's pod, a pipeline run, an InferenceService), each the pods
it started, by name, with what each asks for. A workload's pods are charged before
they start, all of them or none (:meth:`QuotaLedger.admit`); a workload may add pods
to its charge later (an elastic job's new workers, another replica) and give some
back (:meth:`QuotaLedger.release` with ``pods``) or all of them.

The ledger lives with the control plane that starts the processes, one per store's
:class:`~ketch.core.store.db.Database` (:func:`ledger_of`, like the access
implementation of :mod:`ketch.core.access`). It is kept in memory, so a restarted
server starts with none of the charges its workloads had; before it charges
anything, it holds what the stored pods that had not ended (``Pending`` or
``Running``) asked for, by the object that owns them (:func:`stored_claims`). Those
held charges are handed over to their owner's workload as it starts again
(``owner`` of :meth:`QuotaLedger.admit`: what it starts is taken out of what its
owner held) and dropped once its controller has decided what runs
(:meth:`QuotaLedger.settle`), or after :data:`HOLD_SECONDS` when no controller
comes back for them. So a workload created just after a restart never takes the
place of one that was running before it.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from sqlalchemy import select

from ketch.core.kinds import Kind, KindRegistry
from ketch.core.quota import (
    COMPUTE,
    PODS,
    PROFILE,
    RESOURCES,
    Amounts,
    count_names,
    hard_limits,
    limits,
    pod_demand,
    refusal,
    resources_demand,
    show,
)
from ketch.core.resource import DEFAULT_NAMESPACE
from ketch.core.store.models import PodRow
from ketch.core.store.resources import ResourceStore
from ketch.core.workloads.pods import Container, ResourceRequirements

#: how long what a stored pod held waits for its owner's controller, at most
HOLD_SECONDS = 300.0
#: the phases of a pod that had not ended
_LIVE = frozenset({"Pending", "Running"})

Claim = tuple[Hashable, str, Amounts]
"""What an owner's stored pods held: ``(owner key, namespace, amounts)``."""


def owner_key(kind: str, namespace: str, name: str) -> tuple[str, str, str]:
    """The key of what the pods of object ``kind`` ``namespace/name`` held before a
    restart (what a controller names as ``owner`` when it charges them again)."""
    return (kind, namespace, name)


@dataclass
class _Charge:
    namespace: str
    pods: dict[str, Amounts] = field(default_factory=dict)


@dataclass
class _Held:
    namespace: str
    amounts: Amounts
    until: float


def _total(into: Amounts, more: Mapping[str, Fraction]) -> Amounts:
    for name, value in more.items():
        into[name] = into.get(name, Fraction(0)) + value
    return into


class QuotaLedger:
    """The pods charged to each namespace's quota, by the key of what started them,
    and what stored pods held before a restart (``claims``, see the module)."""

    def __init__(self, claims: Iterable[Claim] = (), *, hold: float = HOLD_SECONDS) -> None:
        self._changed = threading.Condition()
        self._charged: dict[Hashable, _Charge] = {}
        self._held: dict[Hashable, _Held] = {}
        until = time.monotonic() + hold
        for key, namespace, amounts in claims:
            held = self._held.setdefault(key, _Held(namespace, {}, until))
            _total(held.amounts, amounts)

    # -- reading -------------------------------------------------------------------

    def used(self, namespace: str) -> Amounts:
        """What the pods charged (and held) in ``namespace`` use, by resource."""
        with self._changed:
            return self._used(namespace)

    def _used(self, namespace: str) -> Amounts:
        total: Amounts = dict.fromkeys(RESOURCES, Fraction(0))
        for charge in self._charged.values():
            if charge.namespace == namespace:
                for amounts in charge.pods.values():
                    _total(total, amounts)
        for held in self._live_held():
            if held.namespace == namespace:
                _total(total, held.amounts)
        return total

    def _live_held(self) -> list[_Held]:
        now = time.monotonic()
        for key in [k for k, held in self._held.items() if held.until <= now]:
            del self._held[key]
        return list(self._held.values())

    def holds(self, key: Hashable) -> bool:
        """Whether ``key`` still holds what its stored pods asked for."""
        with self._changed:
            self._live_held()
            return key in self._held

    def charged(self, key: Hashable) -> tuple[str, ...]:
        """The pods charged for ``key``."""
        with self._changed:
            charge = self._charged.get(key)
            return tuple(charge.pods) if charge is not None else ()

    # -- charging ------------------------------------------------------------------

    def admit(
        self,
        store: ResourceStore,
        key: Hashable,
        namespace: str,
        pods: Iterable[tuple[str, Sequence[Container]]],
        *,
        owner: Hashable | None = None,
    ) -> str | None:
        """Charge ``pods`` (``(pod name, its containers)``) to ``namespace`` for ``key``
        when all of them fit under its profile's quota, and answer ``None``; else
        charge nothing and answer Kubernetes' message saying which limits they exceed.
        Pods already charged for ``key`` are not charged again. What ``owner``
        (default ``key``) held before a restart pays for them first."""
        return self.admit_amounts(
            store, key, namespace, [(n, pod_demand(c)) for n, c in pods], owner=owner
        )

    def admit_amounts(
        self,
        store: ResourceStore,
        key: Hashable,
        namespace: str,
        pods: Iterable[tuple[str, Amounts]],
        *,
        owner: Hashable | None = None,
    ) -> str | None:
        """:meth:`admit`, with what each pod asks for given as amounts."""
        owner = key if owner is None else owner
        with self._changed:
            charge = self._charged.get(key)
            new = [(n, a) for n, a in pods if charge is None or n not in charge.pods]
            if not new:
                return None
            demand: Amounts = {}
            for _name, amounts in new:
                _total(demand, amounts)
            self._live_held()
            held = self._held.get(owner)
            covered: Amounts = {}
            if held is not None and held.namespace == namespace:
                covered = {
                    name: min(value, held.amounts.get(name, Fraction(0)))
                    for name, value in demand.items()
                }
            limited = limits(hard_limits(store, namespace), COMPUTE)
            if limited:
                used = self._used(namespace)
                for name, value in covered.items():
                    used[name] = used.get(name, Fraction(0)) - value
                refused = refusal(new, limited, used)
                if refused is not None:
                    return refused
            if held is not None and covered:
                for name, value in covered.items():
                    held.amounts[name] = held.amounts.get(name, Fraction(0)) - value
                if all(value <= 0 for value in held.amounts.values()):
                    del self._held[owner]
            if charge is None:
                charge = self._charged[key] = _Charge(namespace)
            charge.pods.update(new)
            return None

    def release(self, key: Hashable, pods: Iterable[str] | None = None) -> None:
        """Give back what ``key`` was charged (only ``pods`` of it, when given), and
        what it held before a restart when all of it goes."""
        with self._changed:
            if pods is None:
                self._charged.pop(key, None)
                self._held.pop(key, None)
            else:
                charge = self._charged.get(key)
                if charge is not None:
                    for name in pods:
                        charge.pods.pop(name, None)
                    if not charge.pods:
                        del self._charged[key]
            self._changed.notify_all()

    def settle(self, owner: Hashable) -> None:
        """Drop what ``owner`` still holds of its pods before a restart: its controller
        charged what it starts again (or starts nothing)."""
        with self._changed:
            if self._held.pop(owner, None) is not None:
                self._changed.notify_all()

    def wait(self, timeout: float) -> None:
        """Wait until something is given back, at most ``timeout`` seconds."""
        with self._changed:
            self._changed.wait(timeout)


# -- one ledger per store ---------------------------------------------------------------


def _stored_resources(container: Any) -> ResourceRequirements:
    """A stored pod's container's ``resources`` (what is not a quantity left out)."""
    resources = container.get("resources") if isinstance(container, dict) else None
    found: dict[str, dict[str, str | int | float]] = {"requests": {}, "limits": {}}
    if isinstance(resources, dict):
        for part in found:
            values = resources.get(part)
            if isinstance(values, dict):
                found[part] = {
                    str(k): v
                    for k, v in values.items()
                    if isinstance(v, str | int | float) and not isinstance(v, bool)
                }
    return ResourceRequirements(requests=found["requests"], limits=found["limits"])


def stored_claims(store: ResourceStore) -> list[Claim]:
    """What the stored pods that had not ended ask for, by owner, in the namespaces
    whose profile has a compute quota (see the module)."""
    limited = {
        profile.metadata.name
        for profile in store.list(PROFILE, DEFAULT_NAMESPACE)
        if limits(hard_limits(store, profile.metadata.name), COMPUTE)
    }
    if not limited:
        return []
    query = select(
        PodRow.namespace, PodRow.owner_kind, PodRow.owner_name, PodRow.spec, PodRow.status
    ).where(PodRow.namespace.in_(sorted(limited)))
    with store.database.session(readonly=True) as session:
        rows = session.execute(query).all()
    claims: dict[Hashable, Claim] = {}
    for namespace, kind, name, spec, status in rows:
        if not isinstance(status, dict) or status.get("phase") not in _LIVE:
            continue
        containers = spec.get("containers") if isinstance(spec, dict) else None
        amounts = resources_demand(_stored_resources(c) for c in containers or [])
        key = owner_key(kind, namespace, name)
        found = claims.setdefault(key, (key, namespace, {}))
        _total(found[2], amounts)
    return list(claims.values())


_LEDGERS: weakref.WeakKeyDictionary[Any, QuotaLedger] = weakref.WeakKeyDictionary()
_LEDGERS_LOCK = threading.Lock()


def ledger_of(store: ResourceStore) -> QuotaLedger:
    """The quota ledger of the control plane over ``store`` (one per Database: every
    controller of the store shares it), holding what the stored pods held when it is
    made (:func:`stored_claims`)."""
    with _LEDGERS_LOCK:
        found = _LEDGERS.get(store.database)
        if found is None:
            found = _LEDGERS[store.database] = QuotaLedger(stored_claims(store))
        return found


# -- status --------------------------------------------------------------------------------


def usage(
    store: ResourceStore,
    namespace: str,
    kinds: KindRegistry | None = None,
    count: Callable[[Kind, str], int] | None = None,
) -> dict[str, dict[str, str]]:
    """The ``hard`` and ``used`` of the namespace's quota, as a ResourceQuota's status
    writes them (by the hard limits' names); counts of a kind ``kinds`` does not
    serve are left out of ``used``. ``count(kind, namespace)`` counts a kind's objects
    (default: those of the store's resources table)."""
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
            kind = counted[name]
            have = (
                count(kind, namespace)
                if count is not None
                else len(store.list_manifests(kind.kind, namespace).items)
            )
            used[name] = str(have)
    return {"hard": dict(hard), "used": used}


__all__ = [
    "HOLD_SECONDS",
    "PODS",
    "Claim",
    "QuotaLedger",
    "ledger_of",
    "owner_key",
    "stored_claims",
    "usage",
]
