"""A ``Database`` tells its ``commits`` listeners of every committed write that
journaled a change, from whichever thread wrote, and of nothing else: not a read,
not a write that journaled nothing, not a write rolled back; and only its own."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import text

from ketch.core.errors import AlreadyExists
from ketch.core.resource import Resource
from ketch.core.store import db
from ketch.core.store.commits import Commits
from ketch.core.store.pods import ContainerRecord, Owner, PodRecord, PodStore
from ketch.core.store.resources import ResourceStore, journal, next_revision
from ketch.core.timestamps import utcnow


def runtime(name: str, **spec: object) -> Resource:
    return Resource.from_manifest(
        {
            "apiVersion": "trainer.kubeflow.org/v1alpha1",
            "kind": "TrainingRuntime",
            "metadata": {"name": name, "namespace": "ns"},
            "spec": dict(spec),
        }
    )


class Told:
    """The revisions a listener was told, and the threads it was told in."""

    def __init__(self, commits: Commits) -> None:
        self.revisions: list[int] = []
        self.threads: list[str] = []
        self.unsubscribe = commits.subscribe(self)

    def __call__(self, revision: int) -> None:
        self.revisions.append(revision)
        self.threads.append(threading.current_thread().name)


@pytest.fixture
def store(database: db.Database) -> ResourceStore:
    return ResourceStore(database)


def in_thread(name: str, work: object) -> None:
    thread = threading.Thread(target=work, name=name)  # type: ignore[arg-type]
    thread.start()
    thread.join(30)
    assert not thread.is_alive()


def test_each_journaled_commit_is_told_once_with_its_revision_in_the_writers_thread(
    database: db.Database, store: ResourceStore
) -> None:
    told = Told(database.commits)
    made: list[Resource] = []
    in_thread("controller-like", lambda: made.append(store.create(runtime("a"))))
    (created,) = made
    assert told.revisions == [int(created.metadata.resourceVersion or 0)]
    assert told.threads == ["controller-like"]
    updated = store.update_status("TrainingRuntime", "ns", "a", {"phase": "Running"})
    event = store.record_event("TrainingRuntime", "ns", "a", reason="Started")
    before_delete = store.revision()
    store.delete("TrainingRuntime", "ns", "a")  # the object and its event: one transaction
    assert told.revisions == [
        int(created.metadata.resourceVersion or 0),
        int(updated.metadata.resourceVersion or 0),
        int(event.resourceVersion),
        before_delete + 2,  # the highest revision the deletion took (its event's removal)
    ]
    assert store.revision() == before_delete + 2
    assert database.commits.count == 4 and database.commits.revision == store.revision()


def test_pod_writes_are_told_as_they_commit(database: db.Database) -> None:
    database.migrate()
    pods = PodStore(database)
    told = Told(database.commits)
    record = PodRecord(
        namespace="ns",
        name="p",
        owner=Owner("kubeflow.org/v1", "PyTorchJob", "job", "uid-1"),
        containers=[
            ContainerRecord(name="main", spec={"image": "i"}, state="running", started_at=utcnow())
        ],
        start_time=utcnow(),
    )
    in_thread("pod-writer", lambda: pods.put([record]))
    pods.put([record])  # unchanged: no write
    revision = int(pods.get("ns", "p")["metadata"]["resourceVersion"])
    assert told.revisions == [revision] and told.threads == ["pod-writer"]
    assert pods.remove("ns", ["p"]) == 1
    assert told.revisions == [revision, revision + 1]


def test_reads_writes_without_a_journal_and_rollbacks_are_not_told(
    database: db.Database, store: ResourceStore
) -> None:
    store.create(runtime("a"))
    told = Told(database.commits)
    store.get("TrainingRuntime", "ns", "a")
    store.list("TrainingRuntime", "ns")
    with database.session() as session:  # a write that journals nothing
        session.execute(text("UPDATE resource_revision SET compacted = compacted"))
    with pytest.raises(AlreadyExists):
        store.create(runtime("a"))  # journaled nothing before it failed
    store_revision = store.revision()
    with pytest.raises(RuntimeError), database.session() as session:
        journal(session, next_revision(session), "ADDED", runtime("ghost").to_manifest())
        raise RuntimeError("rolled back after journaling")
    assert told.revisions == [] and database.commits.count == 1  # the create before
    assert store.revision() == store_revision
    # the session's mark went with its rollback: the next write is told once
    again = store.apply(runtime("a", x=1))
    assert told.revisions == [int(again.metadata.resourceVersion or 0)]


def test_only_the_database_written_through_tells_its_listeners(db_url: str) -> None:
    """Two Database objects on one store (two apps in one process) are independent:
    each tells its own listeners of its own writes (the other finds them as another
    process's, by reading the store's revision)."""
    with db.Database(db_url) as first, db.Database(db_url) as second:
        first.migrate()
        to_first, to_second = Told(first.commits), Told(second.commits)
        ResourceStore(first, migrate=False).create(runtime("a"))
        ResourceStore(second, migrate=False).create(runtime("b"))
        assert len(to_first.revisions) == len(to_second.revisions) == 1
        assert to_second.revisions[0] == to_first.revisions[0] + 1
        to_first.unsubscribe()
        ResourceStore(first, migrate=False).apply(runtime("a", x=1))
        assert len(to_first.revisions) == 1 and len(to_second.revisions) == 1
        assert first.commits.count == 2


def test_a_failing_listener_neither_stops_the_others_nor_fails_the_write(
    database: db.Database, store: ResourceStore, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(_revision: int) -> None:
        raise ValueError("listener bug")

    database.commits.subscribe(broken)
    told = Told(database.commits)
    created = store.create(runtime("a"))
    assert told.revisions == [int(created.metadata.resourceVersion or 0)]
    assert store.get("TrainingRuntime", "ns", "a").metadata.uid == created.metadata.uid
    assert "a commit listener failed" in caplog.text


def test_the_sessionmaker_made_again_after_dispose_is_followed(
    database: db.Database, store: ResourceStore
) -> None:
    told = Told(database.commits)
    store.create(runtime("a"))
    database.dispose()
    store.create(runtime("b"))
    assert len(told.revisions) == 2 and told.revisions[1] > told.revisions[0]
