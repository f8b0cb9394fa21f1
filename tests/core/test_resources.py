"""ResourceStore against a real SQLite file and, when configured, PostgreSQL."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from ketch.core.errors import Conflict, InvalidSpec, NotFound
from ketch.core.resource import ObjectMeta, Resource, set_condition
from ketch.core.store.db import Database
from ketch.core.store.resources import ResourceStore


def job(
    name: str, namespace: str = "default", labels: dict[str, str] | None = None, **spec: object
) -> Resource:
    return Resource(
        apiVersion="kubeflow.org/v1",
        kind="PyTorchJob",
        metadata=ObjectMeta(name=name, namespace=namespace, labels=labels or {}),
        spec=dict(spec) or {"replicas": 1},
    )


@pytest.fixture
def store(database: Database) -> ResourceStore:
    return ResourceStore(database)


def test_create_then_get(store: ResourceStore) -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)
    created = store.create(job("train", labels={"team": "a"}, replicas=2))
    assert created.metadata.uid and len(created.metadata.uid) == 36
    assert created.metadata.generation == 1
    assert created.metadata.resourceVersion == "1"
    got = store.get("PyTorchJob", "default", "train")
    assert got.metadata.uid == created.metadata.uid
    assert got.spec == {"replicas": 2}
    assert got.metadata.labels == {"team": "a"}
    assert got.apiVersion == "kubeflow.org/v1"
    assert got.metadata.creationTimestamp is not None
    assert got.metadata.creationTimestamp.tzinfo is not None
    assert before <= got.metadata.creationTimestamp <= datetime.now(UTC) + timedelta(seconds=1)
    assert got.to_manifest()["metadata"]["creationTimestamp"].endswith("Z")


def test_create_twice_is_a_conflict(store: ResourceStore) -> None:
    store.create(job("train"))
    with pytest.raises(Conflict, match="PyTorchJob 'train' already exists in namespace 'default'"):
        store.create(job("train"))
    # same name in another namespace or of another kind is a different resource
    store.create(job("train", namespace="team-b"))
    other = job("train")
    other.kind = "TFJob"
    store.create(other)
    assert len(store.list("PyTorchJob", namespace=None)) == 2


def test_get_missing_names_kind_namespace_and_name(store: ResourceStore) -> None:
    with pytest.raises(NotFound) as info:
        store.get("PyTorchJob", "team-a", "nope")
    assert "PyTorchJob" in str(info.value)
    assert "'nope'" in str(info.value) and "'team-a'" in str(info.value)
    assert info.value.http_status == 404


def test_create_rejects_bad_names(store: ResourceStore) -> None:
    with pytest.raises(InvalidSpec, match=r"metadata\.name"):
        store.create(job("Bad_Name"))
    with pytest.raises(InvalidSpec, match=r"metadata\.namespace"):
        store.create(job("ok", namespace="a.b"))
    assert len(store.list("PyTorchJob", namespace=None)) == 0


def test_apply_bumps_generation_only_on_spec_change(store: ResourceStore) -> None:
    first = store.apply(job("train", replicas=1))
    assert (first.metadata.generation, first.metadata.resourceVersion) == (1, "1")

    same = store.apply(job("train", replicas=1))
    assert (same.metadata.generation, same.metadata.resourceVersion) == (1, "1")

    relabeled = store.apply(job("train", labels={"x": "y"}, replicas=1))
    assert (relabeled.metadata.generation, relabeled.metadata.resourceVersion) == (1, "2")
    assert relabeled.metadata.labels == {"x": "y"}

    respecced = store.apply(job("train", labels={"x": "y"}, replicas=3))
    assert (respecced.metadata.generation, respecced.metadata.resourceVersion) == (2, "3")
    assert respecced.metadata.uid == first.metadata.uid

    status = {"phase": "Running"}
    store.update_status("PyTorchJob", "default", "train", status)
    reapplied = store.apply(job("train", labels={"x": "y"}, replicas=4))
    assert reapplied.status == status  # apply leaves the controller's status alone
    assert (reapplied.metadata.generation, reapplied.metadata.resourceVersion) == (3, "5")


def test_update_status_with_optimistic_concurrency(store: ResourceStore) -> None:
    created = store.create(job("train"))
    status: dict[str, object] = {}
    set_condition(status, "Created", "True", "JobCreated", "created")
    updated = store.update_status(
        "PyTorchJob", "default", "train", status, resource_version=created.metadata.resourceVersion
    )
    assert updated.metadata.resourceVersion == "2"
    assert updated.metadata.generation == 1
    assert updated.status["conditions"][0]["type"] == "Created"
    with pytest.raises(Conflict, match="resourceVersion 2, not 1"):
        store.update_status("PyTorchJob", "default", "train", {"x": 1}, resource_version="1")
    assert store.get("PyTorchJob", "default", "train").status == updated.status
    with pytest.raises(NotFound):
        store.update_status("PyTorchJob", "default", "missing", {})
    with pytest.raises(InvalidSpec, match="resourceVersion"):
        store.update_status("PyTorchJob", "default", "train", {}, resource_version="abc")


def test_delete(store: ResourceStore) -> None:
    store.create(job("train"))
    store.record_event("PyTorchJob", "default", "train", reason="Created")
    deleted = store.delete("PyTorchJob", "default", "train")
    assert deleted.metadata.name == "train"
    with pytest.raises(NotFound):
        store.get("PyTorchJob", "default", "train")
    with pytest.raises(NotFound):
        store.delete("PyTorchJob", "default", "train")
    assert store.list_events("PyTorchJob", "default", "train") == []
    recreated = store.create(job("train"))
    assert recreated.metadata.uid != deleted.metadata.uid


def test_list_by_namespace_and_across_namespaces(store: ResourceStore) -> None:
    for ns, name in [("b", "two"), ("a", "one"), ("a", "three"), ("default", "zero")]:
        store.create(job(name, namespace=ns))
    assert [r.metadata.name for r in store.list("PyTorchJob")] == ["zero"]
    assert [r.metadata.name for r in store.list("PyTorchJob", "a")] == ["one", "three"]
    everything = store.list("PyTorchJob", namespace=None)
    assert [r.key for r in everything] == [
        ("a", "one"),
        ("a", "three"),
        ("b", "two"),
        ("default", "zero"),
    ]
    assert everything.continue_token is None
    assert len(store.list("TFJob", namespace=None)) == 0


def test_label_selectors(store: ResourceStore) -> None:
    store.create(job("a1", labels={"app": "a", "tier": "gpu"}))
    store.create(job("a2", labels={"app": "a"}))
    store.create(job("b1", labels={"app": "b", "tier": "cpu"}))
    store.create(job("c1", labels={"app.kubernetes.io/name": "c"}))

    def names(selector: str) -> list[str]:
        return [r.metadata.name for r in store.list("PyTorchJob", label_selector=selector)]

    assert names("app=a") == ["a1", "a2"]
    assert names("app==a") == ["a1", "a2"]
    assert names("app!=a") == ["b1", "c1"]
    assert names("tier") == ["a1", "b1"]
    assert names("!tier") == ["a2", "c1"]
    assert names("app=a,tier") == ["a1"]
    assert names("app=a, tier!=gpu") == ["a2"]
    assert names("") == ["a1", "a2", "b1", "c1"]
    assert names("app.kubernetes.io/name=c") == ["c1"]
    with pytest.raises(InvalidSpec, match="labelSelector"):
        names("app=a,,b")
    assert names("app in (a, b)") == ["a1", "a2", "b1"]
    assert names("app notin (a),tier") == ["b1"]
    with pytest.raises(InvalidSpec, match="labelSelector"):
        names("app in (a, b")


def test_paging_with_limit_and_continue(store: ResourceStore) -> None:
    for i in range(7):
        store.create(job(f"job-{i}", labels={"even": str(i % 2 == 0).lower()}))
    store.create(job("job-x", namespace="other"))

    seen: list[str] = []
    token: str | None = None
    pages = 0
    while True:
        page = store.list("PyTorchJob", limit=3, continue_token=token)
        pages += 1
        assert len(page) <= 3
        seen += [r.metadata.name for r in page]
        token = page.continue_token
        if token is None:
            break
    assert seen == [f"job-{i}" for i in range(7)]
    assert pages == 3

    first = store.list("PyTorchJob", label_selector="even=true", limit=2)
    assert [r.metadata.name for r in first] == ["job-0", "job-2"]
    assert first.continue_token is not None
    second = store.list(
        "PyTorchJob", label_selector="even=true", limit=2, continue_token=first.continue_token
    )
    assert [r.metadata.name for r in second] == ["job-4", "job-6"]
    assert second.continue_token is None  # nothing else matches

    all_ns = store.list("PyTorchJob", namespace=None, limit=7)
    assert all_ns.continue_token is not None
    rest = store.list("PyTorchJob", namespace=None, limit=7, continue_token=all_ns.continue_token)
    assert [r.key for r in rest] == [("other", "job-x")]

    with pytest.raises(InvalidSpec, match="continue"):
        store.list("PyTorchJob", continue_token="not-a-token!")
    with pytest.raises(InvalidSpec, match="limit"):
        store.list("PyTorchJob", limit=0)


def test_events(store: ResourceStore) -> None:
    created = store.create(job("train"))
    store.create(job("other"))
    store.record_event("PyTorchJob", "default", "train", reason="Created", message="made")
    store.record_event(
        "PyTorchJob", "default", "train", reason="Failed", message="exit 1", type="Warning"
    )
    store.record_event("PyTorchJob", "default", "other", reason="Created")
    events = store.list_events("PyTorchJob", "default", "train")
    assert [(e.type, e.reason, e.message) for e in events] == [
        ("Normal", "Created", "made"),
        ("Warning", "Failed", "exit 1"),
    ]
    assert events[0].involvedObject.uid == created.metadata.uid
    assert events[0].eventTime.tzinfo is not None
    assert len(store.list_events()) == 3
    assert [e.reason for e in store.list_events("PyTorchJob", "default", "train", limit=1)] == [
        "Failed"
    ]
    with pytest.raises(NotFound):
        store.record_event("PyTorchJob", "default", "missing", reason="X")
    with pytest.raises(InvalidSpec):
        store.record_event("PyTorchJob", "default", "train", reason="X", type="Bad")  # type: ignore[arg-type]


def test_concurrent_applies_are_serialised(store: ResourceStore) -> None:
    """Every apply changes the spec, so the final generation counts every writer."""
    writers = 6
    errors: list[BaseException] = []
    barrier = threading.Barrier(writers)

    def write(i: int) -> None:
        try:
            barrier.wait()
            ResourceStore(store.database).apply(job("shared", writer=i))
        except BaseException as exc:  # noqa: BLE001  # pragma: no cover - a thread's errors, asserted below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    final = store.get("PyTorchJob", "default", "shared")
    assert final.metadata.generation == writers
    assert final.metadata.resourceVersion == str(writers)


def test_concurrent_status_updates_detect_conflicts(store: ResourceStore) -> None:
    created = store.create(job("train"))
    version = created.metadata.resourceVersion
    outcomes: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(4)

    def write(i: int) -> None:
        barrier.wait()
        try:
            ResourceStore(store.database).update_status(
                "PyTorchJob", "default", "train", {"writer": i}, resource_version=version
            )
            result = "ok"
        except Conflict:
            result = "conflict"
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["conflict", "conflict", "conflict", "ok"]
    assert store.get("PyTorchJob", "default", "train").metadata.resourceVersion == "2"


def test_apply_says_what_it_did_whatever_status_writes_happen(store: ResourceStore) -> None:
    """The outcome is decided where the write happens: a controller's status write (which
    bumps resourceVersion) does not make a later identical apply look configured."""
    created, outcome = store.apply_outcome(job("train"))
    assert outcome == "created"
    store.update_status("PyTorchJob", "default", "train", {"phase": "Running"})
    again, outcome = store.apply_outcome(job("train"))
    assert outcome == "unchanged"
    assert again.metadata.resourceVersion == "2" and again.status == {"phase": "Running"}
    changed, outcome = store.apply_outcome(job("train", x=2))
    assert outcome == "configured" and changed.metadata.generation == 2
    assert created.metadata.uid == changed.metadata.uid
