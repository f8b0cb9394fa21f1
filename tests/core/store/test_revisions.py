"""The store's revision and change journal: one sequence numbers every write to every
resource (its ``resourceVersion``), each write is journaled in its own transaction,
the journal is compacted, and a database from before them upgrades in place."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest
from sqlalchemy import select

from ketch.core.errors import Conflict, Expired
from ketch.core.paging import encode_token
from ketch.core.resource import ObjectMeta, Resource
from ketch.core.store import db, resources
from ketch.core.store.models import ChangeRow, ResourceRow
from ketch.core.store.resources import ResourceStore
from ketch.pipelines.tables import MIGRATIONS

FIXTURE = Path(__file__).parent / "data" / "ketch-main-0003.sqlite"


def job(name: str, namespace: str = "default", **spec: object) -> Resource:
    return Resource(
        apiVersion="kubeflow.org/v1",
        kind="PyTorchJob",
        metadata=ObjectMeta(name=name, namespace=namespace),
        spec=dict(spec) or {"replicas": 1},
    )


@pytest.fixture
def store(database: db.Database) -> ResourceStore:
    return ResourceStore(database)


def test_every_write_takes_the_next_revision_and_is_journaled(store: ResourceStore) -> None:
    assert store.revision() == 0
    a = store.create(job("a"))
    b = store.create(job("b", namespace="team"))
    relabeled = store.apply(job("a", replicas=2))
    unchanged, outcome = store.apply_outcome(job("a", replicas=2))
    status = store.update_status("PyTorchJob", "team", "b", {"phase": "Running"})
    deleted = store.delete("PyTorchJob", "default", "a")
    versions = [r.metadata.resourceVersion for r in (a, b, relabeled, unchanged, status, deleted)]
    # an apply that changes nothing writes nothing: no revision taken
    assert versions == ["1", "2", "3", "3", "4", "3"] and outcome == "unchanged"
    assert store.revision() == 5

    found = store.changes(0)
    assert found.revision == 5
    assert [(c.revision, c.type, c.namespace, c.name) for c in found] == [
        (1, "ADDED", "default", "a"),
        (2, "ADDED", "team", "b"),
        (3, "MODIFIED", "default", "a"),
        (4, "MODIFIED", "team", "b"),
        (5, "DELETED", "default", "a"),
    ]
    # the object as written; a deleted one as it was, at the revision of its deletion
    assert found.items[2].object["spec"] == {"replicas": 2}
    assert found.items[3].object["status"] == {"phase": "Running"}
    gone = found.items[4].object
    assert gone["metadata"]["resourceVersion"] == "5" and gone["spec"] == {"replicas": 2}
    assert {c.uid for c in found.items if c.name == "a"} == {a.metadata.uid}

    # after a revision, of a kind, in a namespace, a page at a time
    assert [c.revision for c in store.changes(3)] == [4, 5]
    assert [c.revision for c in store.changes(0, namespace="team")] == [2, 4]
    assert (
        list(store.changes(0, kind="TFJob")) == [] and store.changes(0, kind="TFJob").revision == 5
    )
    page = store.changes(0, limit=2)
    assert [c.revision for c in page] == [1, 2] and page.revision == 2
    assert store.changes(9).revision == 9  # a version from the future: nothing yet

    assert store.previous("PyTorchJob", a.metadata.uid or "", 5) == found.items[2].object
    assert store.previous("PyTorchJob", a.metadata.uid or "", 1) is None


def test_a_list_answers_the_revision_it_was_read_at(store: ResourceStore) -> None:
    for name in ("a", "b", "c"):
        store.create(job(name))
    first = store.list("PyTorchJob", limit=2)
    assert first.resource_version == "3" and first.continue_token
    store.create(job("d"))
    # the next page is served at the first one's version: a watch from it repeats a
    # change the later pages show rather than missing one
    rest = store.list("PyTorchJob", limit=2, continue_token=first.continue_token)
    assert [r.metadata.name for r in rest] == ["c", "d"] and rest.resource_version == "3"
    assert store.list("PyTorchJob").resource_version == "4"


def test_a_continue_token_older_than_the_journal_is_expired(store: ResourceStore) -> None:
    for name in ("a", "b", "c"):
        store.create(job(name))
    first = store.list("PyTorchJob", limit=1)
    store.apply(job("a", replicas=3))
    assert store.compact(keep_seconds=0, min_entries=0) == 4
    with pytest.raises(Expired, match="continue parameter is too old") as info:
        store.list("PyTorchJob", limit=1, continue_token=first.continue_token)
    assert info.value.http_status == 410 and info.value.status_reason == "Expired"
    # a token from before tokens carried a version still continues
    old_token = encode_token({"ns": "default", "name": "a"})
    assert [r.metadata.name for r in store.list("PyTorchJob", continue_token=old_token)] == [
        "b",
        "c",
    ]


def test_compaction_keeps_the_newest_changes_and_refuses_older_versions(
    store: ResourceStore,
) -> None:
    for index in range(6):
        store.create(job(f"j{index}"))
    # kept: the last ten minutes, or at least the newest two (whichever keeps more)
    assert store.compact(min_entries=2) == 0
    assert store.compact(keep_seconds=0, min_entries=2) == 4
    assert [c.revision for c in store.changes(4)] == [5, 6]
    with pytest.raises(Expired, match=r"^too old resource version: 3 \(4\)$"):
        store.changes(3)
    # at most max_entries, however recent
    assert store.compact(max_entries=1) == 5
    assert [c.revision for c in store.changes(5)] == [6]
    assert store.compact(keep_seconds=0, min_entries=0) == 6
    assert list(store.changes(6)) == [] and store.changes(6).revision == 6
    # the objects are not the journal: all still there, and writes go on numbering
    assert len(store.list("PyTorchJob")) == 6
    assert store.apply(job("j0", replicas=9)).metadata.resourceVersion == "7"


def test_writes_compact_the_journal_as_they_go(
    store: ResourceStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(resources, "COMPACT_EVERY", 4)
    monkeypatch.setattr(resources, "HISTORY_MIN_ENTRIES", 2)
    monkeypatch.setenv(resources.HISTORY_ENV, "0")
    for index in range(9):
        store.create(job(f"j{index}"))
    # the write of revision 8 compacted the journal to its newest two
    with store.database.session(readonly=True) as session:
        kept = session.scalars(select(ChangeRow.revision).order_by(ChangeRow.revision)).all()
    assert kept == [7, 8, 9]
    with pytest.raises(Expired):
        store.changes(5)
    assert [c.revision for c in store.changes(6)] == [7, 8, 9]


def test_concurrent_writers_number_their_writes_in_commit_order(store: ResourceStore) -> None:
    """Writers in parallel get distinct revisions with no gap, and a reader that keeps
    asking for the changes after the last one it read sees every one exactly once (on
    PostgreSQL too: a revision is never committed after a higher one)."""
    writers, each = 4, 15
    total = writers * each
    barrier = threading.Barrier(writers + 1)
    errors: list[BaseException] = []
    seen: list[int] = []

    def write(worker: int) -> None:
        mine = ResourceStore(store.database, migrate=False)
        try:
            barrier.wait()
            mine.create(job(f"w{worker}"))
            for step in range(each - 1):
                mine.update_status("PyTorchJob", "default", f"w{worker}", {"step": step})
        except BaseException as exc:  # noqa: BLE001  # pragma: no cover - a thread's errors, asserted below
            errors.append(exc)

    def read() -> None:
        reader = ResourceStore(store.database, migrate=False)
        position = 0
        barrier.wait()
        while position < total and not errors:
            found = reader.changes(position)
            seen.extend(change.revision for change in found)
            position = found.revision

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    threads.append(threading.Thread(target=read))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    assert seen == list(range(1, total + 1))
    with store.database.session(readonly=True) as session:
        versions = session.scalars(select(ResourceRow.resource_version)).all()
    assert len(set(versions)) == writers and max(versions) == total == store.revision()


def test_a_database_from_before_the_journal_upgrades_in_place(tmp_path: Path) -> None:
    path = tmp_path / "ketch.db"
    shutil.copyfile(FIXTURE, path)
    url = f"sqlite:///{path}"
    with db.Database(url) as database:
        with database.session(readonly=True) as session:
            rows = session.execute(
                select(ResourceRow.kind, ResourceRow.name, ResourceRow.resource_version)
            ).all()
        stored = {(kind, name): str(version) for kind, name, version in rows}
        highest = max(int(version) for version in stored.values())

        database.migrate([MIGRATIONS])
        assert (
            "0004" in db.known_revisions() and db.head_revisions() <= database.current_revisions()
        )
        store = ResourceStore(database, migrate=False)
        # every object kept, with its resourceVersion; the revision starts above them all
        for (kind, name), version in stored.items():
            assert store.list(kind, None).resource_version == str(highest + 1)
            (found,) = [r for r in store.list(kind, None) if r.metadata.name == name]
            assert found.metadata.resourceVersion == version
        assert store.revision() == highest + 1
        # the journal starts empty: a watch from a version issued before is answered 410
        old = int(stored["Experiment", "fixture-tune"])
        with pytest.raises(Expired, match=f"too old resource version: {old} "):
            store.changes(old)
        assert list(store.changes(highest + 1)) == []

        # the next write takes a number no object had; a stale version is a conflict
        meta = store.get("Experiment", "default", "fixture-tune").metadata
        updated = store.update_status(
            "Experiment",
            meta.namespace,
            meta.name,
            {"phase": "Upgraded"},
            resource_version=meta.resourceVersion,
        )
        assert updated.metadata.resourceVersion == str(highest + 2)
        with pytest.raises(Conflict):
            store.update_status(
                "Experiment",
                meta.namespace,
                meta.name,
                {},
                resource_version=meta.resourceVersion,
            )
        (change,) = store.changes(highest + 1)
        assert (change.type, change.name, change.object["status"]) == (
            "MODIFIED",
            meta.name,
            {"phase": "Upgraded"},
        )


def test_listed_manifests_are_the_resources_manifests(store: ResourceStore) -> None:
    owner = store.create(job("owner"))
    child = job("child")
    child.metadata.labels = {"app": "x"}
    child.metadata.annotations = {"note": "hi"}
    child.metadata.ownerReferences = [
        {
            "apiVersion": "kubeflow.org/v1",
            "kind": "PyTorchJob",
            "name": "owner",
            "uid": owner.metadata.uid,
        }
    ]
    store.create(child)
    store.update_status("PyTorchJob", "default", "child", {"phase": "Running", "n": [1, None]})
    with store.database.session() as session:  # a creation time on a whole second
        row = session.scalars(select(ResourceRow).where(ResourceRow.name == "owner")).one()
        row.created_at = row.created_at.replace(microsecond=0)
    listed = store.list_manifests("PyTorchJob", limit=1)
    rest = store.list_manifests("PyTorchJob", continue_token=listed.continue_token)
    expected = [r.to_manifest() for r in store.list("PyTorchJob")]
    assert listed.items + rest.items == expected
    assert "." not in expected[1]["metadata"]["creationTimestamp"]  # the owner's
    assert listed.resource_version == rest.resource_version == str(store.revision())


def test_events_take_the_store_revision_and_are_journaled(store: ResourceStore) -> None:
    """An event recorded, a repeat of it counted, an event recorded with a status
    write and the events removed with their object each take the next revision (the
    event's resourceVersion) and are journaled, under kind Event."""
    store.create(job("a"))  # 1
    made = store.record_event("PyTorchJob", "default", "a", reason="Made", message="m")  # 2
    again = store.record_event("PyTorchJob", "default", "a", reason="Made", message="m")  # 3
    assert (made.resourceVersion, again.resourceVersion) == (2, 3)
    assert again.id == made.id and again.count == 2 and again.uid == made.uid
    store.update_status(  # the object 4, its event 5
        "PyTorchJob", "default", "a", {"phase": "Running"}, events=[("Started", "go", "Normal")]
    )
    listed = store.event_list("PyTorchJob", "default", "a")
    assert listed.resource_version == "5" == str(store.revision())
    assert [(e.reason, e.count, e.resourceVersion) for e in listed] == [
        ("Made", 2, 3),
        ("Started", 1, 5),
    ]
    assert store.list_events("PyTorchJob", "default", "a") == listed.items

    store.delete("PyTorchJob", "default", "a")  # the object 6, its events 7 and 8
    found = store.changes(1, kind=resources.EVENT_KIND)
    assert found.revision == 8
    assert [(c.revision, c.type, c.name) for c in found] == [
        (2, "ADDED", f"a.{made.id}"),
        (3, "MODIFIED", f"a.{made.id}"),
        (5, "ADDED", f"a.{listed.items[1].id}"),
        (7, "DELETED", f"a.{made.id}"),
        (8, "DELETED", f"a.{listed.items[1].id}"),
    ]
    assert {c.uid for c in found.items[:2]} == {made.uid}
    # the journal keeps the event itself: read back as it was at each write
    events = [resources.Event.from_journal(c.object) for c in found]
    assert [(e.count, e.resourceVersion) for e in events] == [
        (1, 2),
        (2, 3),
        (1, 5),
        (2, 7),
        (1, 8),
    ]
    assert events[1] == again and events[1].id == made.id
    assert [c.revision for c in store.changes(0, kind="PyTorchJob")] == [1, 4, 6]
    assert store.list_events("PyTorchJob", "default", "a") == []
