"""The work queue and the controller runtime, with real threads and a real store."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest

from ketch.core.controller import Controller, Key, Manager, Result
from ketch.core.errors import NotFound
from ketch.core.resource import ObjectMeta, Resource, set_condition
from ketch.core.store.db import Database
from ketch.core.store.resources import ResourceStore
from ketch.core.workqueue import WorkQueue
from tests.waiting import wait_for

# -- work queue ------------------------------------------------------------------


def test_queue_deduplicates_waiting_keys() -> None:
    queue: WorkQueue[str] = WorkQueue()
    for _ in range(5):
        queue.add("a")
    queue.add("b")
    assert len(queue) == 2
    assert queue.get(timeout=1) == "a"
    assert queue.get(timeout=1) == "b"
    assert queue.get(timeout=0.05) is None


def test_key_added_while_processing_is_requeued_after_done() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    assert queue.get(timeout=1) == "a"
    queue.add("a")
    queue.add("a")
    assert len(queue) == 0  # not handed to a second worker while the first has it
    assert queue.get(timeout=0.05) is None
    queue.done("a")
    assert queue.get(timeout=1) == "a"
    queue.done("a")
    assert queue.idle()


def test_add_after_delays_and_earliest_wins() -> None:
    queue: WorkQueue[str] = WorkQueue()
    start = time.monotonic()
    queue.add_after("a", 0.3)
    queue.add_after("a", 0.1)  # earlier: wins
    queue.add_after("a", 5.0)  # later: ignored
    assert queue.delayed() == 1
    assert queue.get(timeout=2) == "a"
    elapsed = time.monotonic() - start
    assert 0.08 <= elapsed < 0.3
    queue.done("a")
    assert queue.get(timeout=0.4) is None  # the superseded 0.3s entry does not fire
    assert queue.idle()


def test_add_now_cancels_a_delay() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add_after("a", 0.2)
    queue.add("a")
    assert queue.get(timeout=1) == "a"
    queue.done("a")
    assert queue.get(timeout=0.4) is None


def test_shutdown_wakes_blocked_getters() -> None:
    queue: WorkQueue[str] = WorkQueue()
    results: list[str | None] = []
    thread = threading.Thread(target=lambda: results.append(queue.get()))
    thread.start()
    time.sleep(0.05)
    queue.shutdown()
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert results == [None]
    queue.add("late")
    assert queue.get(timeout=0.01) is None


# -- controllers -----------------------------------------------------------------


KIND = "Widget"


def widget(name: str, size: int = 1, namespace: str = "default") -> Resource:
    return Resource(
        apiVersion="ketch.dev/v1",
        kind=KIND,
        metadata=ObjectMeta(name=name, namespace=namespace),
        spec={"size": size},
    )


class WidgetController(Controller):
    """Marks each widget Ready with the generation it saw; counts calls per key."""

    kind = KIND
    workers = 3

    def __init__(self, store: ResourceStore) -> None:
        super().__init__(store)
        self.calls: Counter[Key] = Counter()
        self.deleted: list[Key] = []
        self.lock = threading.Lock()
        self.in_flight: set[Key] = set()
        self.overlaps = 0
        self.delay = 0.0

    def reconcile(self, key: Key) -> Result | None:
        with self.lock:
            if key in self.in_flight:
                self.overlaps += 1
            self.in_flight.add(key)
            self.calls[key] += 1
        try:
            time.sleep(self.delay)
            namespace, name = key
            try:
                resource = self.store.get(KIND, namespace, name)
            except NotFound:
                with self.lock:
                    self.deleted.append(key)
                return None
            status = dict(resource.status)
            status["observedGeneration"] = resource.metadata.generation
            status["size"] = resource.spec["size"]
            set_condition(status, "Ready", "True", "Reconciled", f"size {resource.spec['size']}")
            if status != resource.status:
                self.store.update_status(KIND, namespace, name, status)
            return None
        finally:
            with self.lock:
                self.in_flight.discard(key)


@pytest.fixture
def store(sqlite_database: Database) -> ResourceStore:
    return ResourceStore(sqlite_database)


def test_existing_resources_are_reconciled_on_start(store: ResourceStore) -> None:
    for i in range(5):
        store.create(widget(f"w{i}", size=i, namespace="a" if i % 2 else "b"))
    controller = WidgetController(store)
    manager = Manager(resync_period=60)
    manager.add(controller)
    with manager:
        assert manager.wait_idle(timeout=20)
        for resource in store.list(KIND, namespace=None):
            assert resource.status["observedGeneration"] == 1
            assert resource.status["size"] == resource.spec["size"]
            assert resource.condition("Ready") is not None
        assert sorted(controller.calls) == [
            ("a", "w1"),
            ("a", "w3"),
            ("b", "w0"),
            ("b", "w2"),
            ("b", "w4"),
        ]
        assert set(controller.calls.values()) == {1}


def test_enqueue_after_a_write_reconciles_the_change(store: ResourceStore) -> None:
    controller = WidgetController(store)
    manager = Manager(resync_period=60)
    manager.add(controller)
    manager.start()
    try:
        store.apply(widget("w", size=1))
        manager.enqueue(KIND, "default", "w")
        wait_for(
            lambda: store.get(KIND, "default", "w").status.get("size") == 1,
            10,
            0.01,
            what="widget w reconciled to size 1",
        )
        store.apply(widget("w", size=7))
        manager.enqueue(KIND, "default", "w")
        wait_for(
            lambda: store.get(KIND, "default", "w").status.get("size") == 7,
            10,
            0.01,
            what="widget w reconciled to size 7",
        )
        final = store.get(KIND, "default", "w")
        assert final.status["observedGeneration"] == 2
        manager.enqueue("OtherKind", "default", "w")  # no controller: ignored
        store.delete(KIND, "default", "w")
        manager.enqueue(KIND, "default", "w")
        wait_for(
            lambda: ("default", "w") in controller.deleted,
            10,
            0.01,
            what="the deletion of widget w reconciled",
        )
    finally:
        manager.stop()


def test_periodic_resync_finds_resources_nobody_enqueued(store: ResourceStore) -> None:
    controller = WidgetController(store)
    manager = Manager(resync_period=0.2)
    manager.add(controller)
    manager.start()
    try:
        store.create(widget("quiet", size=3))  # written without enqueue
        wait_for(
            lambda: store.get(KIND, "default", "quiet").status.get("size") == 3,
            10,
            0.01,
            what="the resync reconciled widget quiet",
        )
        calls = controller.calls[("default", "quiet")]
        wait_for(  # and again, level-triggered
            lambda: controller.calls[("default", "quiet")] > calls,
            10,
            0.01,
            what="the resync reconciled widget quiet again",
        )
    finally:
        manager.stop()


def test_a_key_is_never_reconciled_twice_at_once_and_bursts_collapse(
    store: ResourceStore,
) -> None:
    store.create(widget("hot"))
    controller = WidgetController(store)
    controller.delay = 0.2
    manager = Manager(resync_period=60)
    manager.add(controller)
    manager.start()
    try:
        wait_for(
            lambda: controller.calls[("default", "hot")] == 1,
            10,
            0.01,
            what="widget hot reconciled once at start",
        )
        for _ in range(200):
            manager.enqueue(KIND, "default", "hot")
        assert manager.wait_idle(timeout=20)
        # one call from start, and at most one more for the whole burst
        assert controller.calls[("default", "hot")] == 2
        assert controller.overlaps == 0
    finally:
        manager.stop()


class FlakyController(Controller):
    kind = "Flaky"

    def __init__(self, store: ResourceStore, fail_times: int) -> None:
        super().__init__(store)
        self.fail_times = fail_times
        self.times: list[float] = []

    def list_keys(self) -> list[Key]:
        return [("default", "f")]

    def reconcile(self, key: Key) -> Result | None:
        self.times.append(time.monotonic())
        if len(self.times) <= self.fail_times:
            raise RuntimeError(f"failure {len(self.times)}")
        return None


def test_failures_are_retried_with_capped_exponential_backoff(store: ResourceStore) -> None:
    controller = FlakyController(store, fail_times=5)
    manager = Manager(resync_period=60, backoff_base=0.02, backoff_cap=0.1)
    manager.add(controller)
    manager.start()
    try:
        wait_for(
            lambda: len(controller.times) == 6,
            10,
            0.01,
            what="five failures retried and a sixth call succeeded",
        )
        assert manager.wait_idle(timeout=5, include_delayed=True)
        gaps = [b - a for a, b in zip(controller.times, controller.times[1:], strict=False)]
        # 0.02, 0.04, 0.08, then capped at 0.1
        for gap, expected in zip(gaps, [0.02, 0.04, 0.08, 0.1, 0.1], strict=True):
            assert gap >= expected * 0.9
            assert gap < expected + 0.5
        assert manager.failures("Flaky", "default", "f") == 0  # reset by the success
        time.sleep(0.3)
        assert len(controller.times) == 6  # no retries after success
    finally:
        manager.stop()


class PollingController(Controller):
    kind = "Poller"

    def __init__(self, store: ResourceStore) -> None:
        super().__init__(store)
        self.count = 0

    def list_keys(self) -> list[Key]:
        return [("default", "p")]

    def reconcile(self, key: Key) -> Result | None:
        self.count += 1
        return Result(requeue_after=0.05) if self.count < 4 else Result()


def test_requeue_after_reconciles_again(store: ResourceStore) -> None:
    controller = PollingController(store)
    manager = Manager(resync_period=60)
    manager.add(controller)
    manager.start()
    try:
        wait_for(lambda: controller.count == 4, 10, 0.01, what="four reconciles requeued")
        assert manager.wait_idle(timeout=5, include_delayed=True)
        time.sleep(0.2)
        assert controller.count == 4
    finally:
        manager.stop()


def test_stop_waits_for_running_reconciles_and_ends_threads(store: ResourceStore) -> None:
    store.create(widget("slow"))
    controller = WidgetController(store)
    controller.delay = 0.3
    manager = Manager(resync_period=60)
    manager.add(controller)
    manager.start()
    wait_for(lambda: bool(controller.in_flight), 10, 0.01, what="a reconcile is running")
    manager.stop(timeout=10)
    assert not controller.in_flight
    assert store.get(KIND, "default", "slow").status["size"] == 1  # the running one finished
    assert not [t for t in threading.enumerate() if t.name.startswith("ketch-WidgetController")]
    with pytest.raises(RuntimeError):
        manager.start()
