"""The controller runtime: reconcile loops over a de-duplicating work queue.

A :class:`Controller` owns one kind. Its :meth:`~Controller.reconcile` reads the
resource named by a key ``(namespace, name)``, compares what is wanted with what
runs, acts, and writes status. It must be idempotent: the :class:`Manager` calls it
whenever the resource may have changed (``Manager.enqueue``), again on every
periodic resync (level-triggered: every resource of the kind is reconciled even
if no one enqueued it), after ``Result.requeue_after``, and, with exponential
backoff, after it raised.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

from ketch.core.errors import NotFound
from ketch.core.resource import Resource
from ketch.core.store.resources import EventType, ResourceStore
from ketch.core.workqueue import WorkQueue

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (namespace, name)


@dataclass(frozen=True)
class Result:
    """What a reconcile asks for next: ``requeue_after`` seconds, or nothing (``None``)."""

    requeue_after: float | None = None


class Controller(ABC):
    """Reconciles resources of one ``kind``; subclasses set ``kind`` and implement
    :meth:`reconcile`."""

    kind: ClassVar[str]
    #: reconcile loops run in parallel for this kind (never two for one key)
    workers: ClassVar[int] = 1
    #: other kinds whose changes concern this controller (see :meth:`related`)
    watches: ClassVar[tuple[str, ...]] = ()

    def __init__(self, store: ResourceStore) -> None:
        self.store = store
        self.manager: Manager | None = None

    def related(self, resource: Resource) -> Iterable[Key]:
        """Keys of this controller's kind to reconcile because ``resource`` (of a
        kind in :attr:`watches`) changed, e.g. the owner of a changed child."""
        return ()

    def seen(self, resource: Resource, deleted: bool) -> None:
        """Called with every write to a kind in :attr:`watches` (before
        :meth:`related`), e.g. to keep a cache of children; quick, must not raise."""
        return None

    def enqueue(self, key: Key, kind: str | None = None) -> None:
        """Ask the manager running this controller to reconcile ``key`` of ``kind``
        (default: this controller's kind) soon. A no-op outside a manager."""
        if self.manager is not None:
            self.manager.enqueue(kind or self.kind, *key)

    @abstractmethod
    def reconcile(self, key: Key) -> Result | None:
        """Drive the resource at ``key`` towards its spec. Raising means: try again later."""

    def list_keys(self) -> Iterable[Key]:
        """Every key of this kind, for the periodic resync (all namespaces), then the
        :meth:`tracked_keys` that are no longer stored (so their reconcile can stop
        what still runs for them)."""
        seen: set[Key] = set()
        token: str | None = None
        while True:
            page = self.store.list(self.kind, namespace=None, limit=500, continue_token=token)
            for resource in page:
                seen.add(resource.key)
                yield resource.key
            token = page.continue_token
            if token is None:
                break
        yield from (key for key in list(self.tracked_keys()) if key not in seen)

    def tracked_keys(self) -> Iterable[Key]:
        """Keys this controller runs something for (processes, routers, …)."""
        return ()

    def stop(self) -> None:
        """Stop what this controller started and still runs (processes, listeners,
        threads). The :class:`Manager` calls it from :meth:`Manager.stop`, once the
        reconcile loops have ended; it may be called more than once."""
        return None


Events = list[tuple[str, str, EventType]]  # (reason, message, Normal|Warning)


class StatusController(Controller):
    """A controller whose pass reads the object, works out its new ``status`` and
    the events to record, then writes what changed.

    Subclasses implement :meth:`sync` (change ``status`` in place, append events)
    and may implement :meth:`gone` (the object no longer exists: stop what runs
    for it) and :meth:`replaced` (it was deleted and created again since the last
    pass, seen as a new uid).
    """

    def reconcile(self, key: Key) -> Result | None:
        namespace, name = key
        try:
            resource = self.store.get(self.kind, namespace, name)
        except NotFound:
            self.gone(key)
            return None
        self.replaced(key, resource.metadata.uid)
        old = resource.status
        status = copy.deepcopy(old)
        events: Events = []
        result = self.sync(key, resource, status, events)
        if status != old:  # the events go in the same transaction
            try:
                self.store.update_status(self.kind, namespace, name, status, events=events)
            except NotFound:
                self.gone(key)
                return None
            return result
        for reason, message, type_ in events:
            with contextlib.suppress(NotFound):
                self.store.record_event(
                    self.kind, namespace, name, reason=reason, message=message, type=type_
                )
        return result

    @abstractmethod
    def sync(
        self, key: Key, resource: Resource, status: dict[str, Any], events: Events
    ) -> Result | None:
        """One pass over ``resource``: update ``status``, append events, act."""

    def gone(self, key: Key) -> None:
        """The object at ``key`` does not exist (any more)."""
        return None

    def replaced(self, key: Key, uid: str | None) -> None:
        """Called before each pass with the object's uid (to notice a new object
        under an old name)."""
        return None


@dataclass
class _Loop:
    controller: Controller
    queue: WorkQueue[Key]
    failures: dict[Key, int]
    lock: threading.Lock


class Manager:
    """Runs every added controller's reconcile loops in threads until :meth:`stop`.

    ``resync_period``: how often every resource of each kind is re-enqueued.
    ``accept``: reconcile only the resources it returns True for.
    ``backoff_base``/``backoff_cap``: after the n-th consecutive failure of a key it
    is retried after ``min(backoff_base * 2**(n-1), backoff_cap)`` seconds.
    """

    def __init__(
        self,
        *,
        resync_period: float = 30.0,
        backoff_base: float = 0.1,
        backoff_cap: float = 60.0,
        accept: Callable[[Resource], bool] | None = None,
    ) -> None:
        if resync_period <= 0:
            raise ValueError("resync_period must be positive")
        self.resync_period = resync_period
        #: when set, only resources it accepts are reconciled (an embedded control
        #: plane that must leave everything else in the store alone)
        self.accept = accept
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self._loops: dict[str, list[_Loop]] = {}
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._started = False
        self._local = threading.local()  # what this thread is reconciling, if anything

    def add(self, controller: Controller) -> None:
        """Register ``controller`` (before :meth:`start`)."""
        if self._started:
            raise RuntimeError("add controllers before Manager.start()")
        loop = _Loop(controller, WorkQueue(), {}, threading.Lock())
        self._loops.setdefault(controller.kind, []).append(loop)
        controller.manager = self

    def watch(self, store: ResourceStore) -> None:
        """Reconcile whatever ``store`` writes: the changed object's own controllers,
        and the keys that controllers watching its kind relate to it."""
        store.add_listener(self._changed)

    def _changed(self, resource: Resource, deleted: bool = False) -> None:
        if self._stop.is_set() or (self.accept is not None and not self.accept(resource)):
            return
        meta = resource.metadata
        # what a pass writes needs no second look by the pass that wrote it
        current = getattr(self._local, "current", None)
        if current != (resource.kind, resource.key):
            self.enqueue(resource.kind, meta.namespace, meta.name)
        for loops in self._loops.values():
            for loop in loops:
                if resource.kind in loop.controller.watches:
                    loop.controller.seen(resource, deleted)
                    for key in loop.controller.related(resource):
                        if current != (loop.controller.kind, key):
                            loop.queue.add(key)

    @property
    def kinds(self) -> list[str]:
        return sorted(self._loops)

    def enqueue(self, kind: str, namespace: str, name: str) -> None:
        """Ask every controller of ``kind`` to reconcile ``namespace/name`` soon."""
        for loop in self._loops.get(kind, []):
            loop.queue.add((namespace, name))

    def enqueue_after(self, kind: str, namespace: str, name: str, delay: float) -> None:
        for loop in self._loops.get(kind, []):
            loop.queue.add_after((namespace, name), delay)

    def start(self) -> None:
        """Start the worker and resync threads; every existing resource is reconciled once."""
        if self._started:
            raise RuntimeError("Manager.start() was already called")
        self._started = True
        for kind, loops in self._loops.items():
            for loop in loops:
                self._enqueue_all(loop)
                name = type(loop.controller).__name__
                for index in range(max(1, loop.controller.workers)):
                    self._spawn(f"ketch-{name}-worker-{index}", self._work, loop)
                self._spawn(f"ketch-{name}-resync", self._resync, loop)
            log.debug("started controllers for %s", kind)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop taking work, let running reconciles finish (up to ``timeout``), join
        threads, then stop each controller (:meth:`Controller.stop`)."""
        self._stop.set()
        for loops in self._loops.values():
            for loop in loops:
                loop.queue.shutdown()
        for thread in self._threads:
            thread.join(timeout)
        alive = [t.name for t in self._threads if t.is_alive()]
        self._threads = [t for t in self._threads if t.is_alive()]
        if alive:
            log.warning("controller threads still running after %.1fs: %s", timeout, alive)
        for loops in self._loops.values():
            for loop in loops:
                try:
                    loop.controller.stop()
                except Exception:
                    log.exception("stopping the %s controller failed", loop.controller.kind)

    def wait_idle(self, timeout: float = 10.0, *, include_delayed: bool = False) -> bool:
        """Block until no key is queued or being reconciled (and, with
        ``include_delayed``, none is waiting for a requeue). False on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            loops = [loop for loops in self._loops.values() for loop in loops]
            if all(loop.queue.idle(include_delayed=include_delayed) for loop in loops):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)

    def __enter__(self) -> Manager:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # -- internals -------------------------------------------------------------

    def _spawn(self, name: str, target: Callable[[_Loop], None], loop: _Loop) -> None:
        thread = threading.Thread(target=target, args=(loop,), name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _enqueue_all(self, loop: _Loop) -> None:
        try:
            for key in loop.controller.list_keys():
                if self.accept is None or self._accepts(loop.controller, key):
                    loop.queue.add(key)
        except Exception:
            log.exception(
                "listing %s for a resync failed; trying again in %.1fs",
                loop.controller.kind,
                self.resync_period,
            )

    def _accepts(self, controller: Controller, key: Key) -> bool:
        assert self.accept is not None
        try:
            resource = controller.store.get(controller.kind, *key)
        except NotFound:
            return True  # gone: its controller may have processes to stop
        return self.accept(resource)

    def _resync(self, loop: _Loop) -> None:
        while not self._stop.wait(self.resync_period):
            self._enqueue_all(loop)

    def _work(self, loop: _Loop) -> None:
        while True:
            key = loop.queue.get()
            if key is None:
                return
            try:
                self._reconcile_one(loop, key)
            finally:
                loop.queue.done(key)

    def _reconcile_one(self, loop: _Loop, key: Key) -> None:
        controller = loop.controller
        self._local.current = (controller.kind, key)
        try:
            result = controller.reconcile(key)
        except Exception as exc:
            with loop.lock:
                failures = loop.failures.get(key, 0) + 1
                loop.failures[key] = failures
            delay = min(self.backoff_base * 2 ** (failures - 1), self.backoff_cap)
            log.warning(
                "reconcile %s %s/%s failed (attempt %d), retrying in %.2fs: %s",
                controller.kind,
                key[0],
                key[1],
                failures,
                delay,
                exc,
                exc_info=log.isEnabledFor(logging.DEBUG),
            )
            loop.queue.add_after(key, delay)
            return
        finally:
            self._local.current = None
        with loop.lock:
            loop.failures.pop(key, None)
        if result is not None and result.requeue_after is not None:
            loop.queue.add_after(key, result.requeue_after)

    def failures(self, kind: str, namespace: str, name: str) -> int:
        """Consecutive failed reconciles of a key (0 after a success)."""
        for loop in self._loops.get(kind, []):
            with loop.lock:
                count = loop.failures.get((namespace, name))
            if count:
                return count
        return 0
