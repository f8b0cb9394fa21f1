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
implementation of :mod:`ketch.core.access`): on a restart it is empty, and the
workloads that had not finished are charged again as they start again.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from ketch.core.kinds import Kind, KindRegistry
from ketch.core.quota import (
    COMPUTE,
    PODS,
    RESOURCES,
    Amounts,
    count_names,
    hard_limits,
    limits,
    pod_demand,
    refusal,
    show,
)
from ketch.core.store.resources import ResourceStore
from ketch.core.workloads.pods import Container


def owner_key(kind: str, namespace: str, name: str) -> tuple[str, str, str]:
    """The key the pods of object ``kind`` ``namespace/name`` are charged under, when
    its controller charges them together (a job's gang, a run's tasks, a service's
    replicas)."""
    return (kind, namespace, name)


@dataclass
class _Charge:
    namespace: str
    pods: dict[str, Amounts] = field(default_factory=dict)


def _total(into: Amounts, more: Mapping[str, Fraction]) -> Amounts:
    for name, value in more.items():
        into[name] = into.get(name, Fraction(0)) + value
    return into


class QuotaLedger:
    """The pods charged to each namespace's quota, by the key of what started them."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._charged: dict[Hashable, _Charge] = {}

    # -- reading -------------------------------------------------------------------

    def used(self, namespace: str) -> Amounts:
        """What the pods charged in ``namespace`` use, by resource."""
        with self._changed:
            return self._used(namespace)

    def _used(self, namespace: str) -> Amounts:
        total: Amounts = dict.fromkeys(RESOURCES, Fraction(0))
        for charge in self._charged.values():
            if charge.namespace == namespace:
                for amounts in charge.pods.values():
                    _total(total, amounts)
        return total

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
    ) -> str | None:
        """Charge ``pods`` (``(pod name, its containers)``) to ``namespace`` for ``key``
        when all of them fit under its profile's quota, and answer ``None``; else
        charge nothing and answer Kubernetes' message saying which limits they exceed.
        Pods already charged for ``key`` are not charged again."""
        return self.admit_amounts(store, key, namespace, [(n, pod_demand(c)) for n, c in pods])

    def admit_amounts(
        self,
        store: ResourceStore,
        key: Hashable,
        namespace: str,
        pods: Iterable[tuple[str, Amounts]],
    ) -> str | None:
        """:meth:`admit`, with what each pod asks for given as amounts."""
        with self._changed:
            charge = self._charged.get(key)
            new = [(n, a) for n, a in pods if charge is None or n not in charge.pods]
            if not new:
                return None
            limited = limits(hard_limits(store, namespace), COMPUTE)
            if limited:
                refused = refusal(new, limited, self._used(namespace))
                if refused is not None:
                    return refused
            if charge is None:
                charge = self._charged[key] = _Charge(namespace)
            charge.pods.update(new)
            return None

    def release(self, key: Hashable, pods: Iterable[str] | None = None) -> None:
        """Give back what ``key`` was charged (only ``pods`` of it, when given)."""
        with self._changed:
            if pods is None:
                self._charged.pop(key, None)
            else:
                charge = self._charged.get(key)
                if charge is not None:
                    for name in pods:
                        charge.pods.pop(name, None)
                    if not charge.pods:
                        del self._charged[key]
            self._changed.notify_all()

    def wait(self, timeout: float) -> None:
        """Wait until something is given back, at most ``timeout`` seconds."""
        with self._changed:
            self._changed.wait(timeout)


# -- one ledger per store ---------------------------------------------------------------


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


__all__ = ["PODS", "QuotaLedger", "ledger_of", "owner_key", "usage"]
