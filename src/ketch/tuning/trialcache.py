"""Each experiment's trials, as the Experiment controller reads them on every pass.

A :class:`TrialCache` lists an experiment's trials from the store once, then keeps
them current from the store's change feed (the controller's ``seen``), so a pass
does not list every trial again. A write seen while the first list is under way
is kept when it is newer; a trial deleted meanwhile stays out.
"""

from __future__ import annotations

import threading

from ketch.core.controller import Key
from ketch.core.resource import Resource
from ketch.core.store.resources import ResourceStore
from ketch.tuning.trials import EXPERIMENT_LABEL


class TrialCache:
    """Each experiment's trials, listed from the store once and then kept current
    from the store's change feed (so a reconcile does not list every trial again)."""

    def __init__(self, store: ResourceStore) -> None:
        self.store = store
        self._trials: dict[Key, dict[str, Resource]] = {}
        self._gone: dict[Key, set[str]] = {}
        self._lock = threading.Lock()

    def of(self, key: Key) -> list[Resource]:
        with self._lock:
            cached = self._trials.get(key)
            if cached is not None:
                return list(cached.values())
            self._trials[key] = {}  # from now on, writes are kept (and win if newer)
            self._gone[key] = set()
        listed = self.store.list("Trial", key[0], label_selector=f"{EXPERIMENT_LABEL}={key[1]}")
        with self._lock:
            cached = self._trials.setdefault(key, {})
            gone = self._gone.pop(key, set())
            for trial in listed:
                name = trial.metadata.name
                if name in gone:
                    continue
                newer = cached.get(name)
                if newer is None or _version(newer) < _version(trial):
                    cached[name] = trial
            return list(cached.values())

    def seen(self, resource: Resource, deleted: bool) -> None:
        experiment = resource.metadata.labels.get(EXPERIMENT_LABEL)
        if not experiment:
            return
        key = (resource.metadata.namespace, experiment)
        with self._lock:
            cached = self._trials.get(key)
            if cached is None:
                return
            name = resource.metadata.name
            if deleted:
                cached.pop(name, None)
                if key in self._gone:
                    self._gone[key].add(name)
                return
            current = cached.get(name)
            if current is None or _version(current) <= _version(resource):
                cached[name] = resource

    def drop(self, key: Key) -> None:
        with self._lock:
            self._trials.pop(key, None)
            self._gone.pop(key, None)


def _version(resource: Resource) -> int:
    try:
        return int(resource.metadata.resourceVersion or 0)
    except ValueError:
        return 0
