"""The ``pods`` table: what the capabilities record of their processes, and how a
``DELETE`` of a pod is answered."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import event

from ketch.core.errors import Conflict, Expired, NotFound
from ketch.core.resource import ObjectMeta, Resource
from ketch.core.store import db
from ketch.core.store.pods import (
    ContainerRecord,
    LogRef,
    Owner,
    PodRecord,
    PodStore,
    Terminated,
    delete_owned_in,
    parse_times,
)
from ketch.core.store.resources import ResourceStore
from ketch.core.timestamps import utcnow

OWNER = Owner("kubeflow.org/v1", "PyTorchJob", "mnist", "owner-uid-1")


@pytest.fixture
def pods(database: db.Database) -> PodStore:
    database.migrate()
    return PodStore(database)


@pytest.fixture
def store(pods: PodStore) -> ResourceStore:
    return ResourceStore(pods.database, migrate=False)


def record(
    name: str,
    *,
    phase: str = "Running",
    log: str | None = None,
    owner: Owner = OWNER,
    **extra: object,
) -> PodRecord:
    state = "running" if phase == "Running" else "terminated"
    ended = (
        Terminated(0 if phase == "Succeeded" else 2, utcnow(), utcnow())
        if state == "terminated"
        else None
    )
    return PodRecord(
        namespace="ns",
        name=name,
        owner=owner,
        labels={"training.kubeflow.org/job-name": "mnist", "index": name[-1]},
        containers=[
            ContainerRecord(
                name="pytorch",
                spec={"image": "img"},
                state=state,  # type: ignore[arg-type]
                started_at=utcnow(),
                ended=ended,
                log=LogRef(log) if log else None,
            )
        ],
        phase=phase,  # type: ignore[arg-type]
        start_time=utcnow(),
        **extra,  # type: ignore[arg-type]
    )


def test_put_is_written_once_and_updated_when_it_changes(
    pods: PodStore, store: ResourceStore
) -> None:
    first = record("mnist-master-0")
    pods.put([first, record("mnist-worker-0")])
    pod = pods.get("ns", "mnist-master-0")
    # each pod's write takes the store's next revision
    assert pod["metadata"]["resourceVersion"] == "1"
    assert pods.get("ns", "mnist-worker-0")["metadata"]["resourceVersion"] == "2"
    assert pod["metadata"]["ownerReferences"][0]["uid"] == "owner-uid-1"
    assert pod["spec"]["containers"] == [{"image": "img", "name": "pytorch"}]
    assert pod["status"]["containerStatuses"][0]["state"]["running"]
    pods.put([first])  # unchanged: nothing written
    assert pods.get("ns", "mnist-master-0")["metadata"]["resourceVersion"] == "1"
    assert store.revision() == 2
    first.phase = "Succeeded"
    first.containers[0].state = "terminated"
    first.containers[0].ended = Terminated(0, utcnow(), utcnow())
    pods.put([first])
    pod = pods.get("ns", "mnist-master-0")
    assert pod["metadata"]["resourceVersion"] == "3" and pod["status"]["phase"] == "Succeeded"
    assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"
    # a new pod under the same name replaces the old one
    again = record("mnist-master-0")
    pods.put([again])
    assert pods.get("ns", "mnist-master-0")["metadata"]["uid"] == again.uid != first.uid


def test_list_selectors_paging_and_removal(pods: PodStore) -> None:
    pods.put([record(f"mnist-worker-{i}") for i in range(5)])
    first = pods.list("ns", limit=2)
    items, token = first.items, first.continue_token
    assert [p["metadata"]["name"] for p in items] == ["mnist-worker-0", "mnist-worker-1"]
    rest = pods.list("ns", continue_token=token)
    assert [p["metadata"]["name"] for p in rest.items] == [
        "mnist-worker-2",
        "mnist-worker-3",
        "mnist-worker-4",
    ]
    assert rest.continue_token is None
    picked = pods.list(None, label_selector="index in (1,3)").items
    assert {p["metadata"]["name"] for p in picked} == {"mnist-worker-1", "mnist-worker-3"}
    # a page that ends exactly at the last match has no next page
    assert pods.list("ns", label_selector="index in (1,3)", limit=2).continue_token is None
    assert pods.remove("ns", ["mnist-worker-0", "nope"]) == 1
    assert pods.remove_owned("PyTorchJob", "ns", "mnist", keep_uid="owner-uid-1") == 0
    assert pods.remove_owned("PyTorchJob", "ns", "mnist") == 4
    assert pods.list("ns").items == []


def test_a_delete_is_answered_by_the_pods_rule(pods: PodStore) -> None:
    pods.put(
        [
            record("mnist-master-0"),
            record("done", phase="Succeeded", deletion="remove"),
            record("task", deletion="refuse", refusal="cancel the run instead"),
        ]
    )
    marked, owner = pods.request_deletion("ns", "mnist-master-0")
    assert owner is not None and (owner.kind, owner.name) == ("PyTorchJob", "mnist")
    assert marked["metadata"]["deletionTimestamp"].endswith("Z")
    assert pods.deletion_requests("owner-uid-1") == {"mnist-master-0"}
    removed, nobody = pods.request_deletion("ns", "done")
    assert nobody is None and removed["metadata"]["name"] == "done"
    with pytest.raises(NotFound):
        pods.get("ns", "done")
    with pytest.raises(Conflict, match="cancel the run instead"):
        pods.request_deletion("ns", "task")
    with pytest.raises(Conflict, match="no controller runs"):
        pods.request_deletion("ns", "mnist-master-0", owner_acts=False)
    with pytest.raises(NotFound):
        pods.request_deletion("ns", "nope")


def test_the_log_grows_marks(pods: PodStore, tmp_path: Path) -> None:
    log = tmp_path / "mnist-master-0.log"
    log.write_text("one\n")
    pod = record("mnist-master-0", log=str(log))
    pods.put([pod])
    with log.open("a") as out:
        out.write("two\n")
    pods.put([pod])
    pods.put([pod])  # nothing new: no mark
    marks = parse_times((tmp_path / "mnist-master-0.log.times").read_text())
    assert [offset for offset, _ in marks] == [0, 4, 8]
    assert [n for _, n in marks] == sorted(n for _, n in marks)
    found = pods.logs_of("ns", "mnist-master-0")
    assert found.logs["pytorch"].path == str(log)
    assert "logs" not in found.manifest["status"]  # where logs are is never served


def test_parse_times_keeps_the_earliest_time_of_each_offset() -> None:
    assert parse_times("0 5\n4 9\nnonsense\n4 7\n8 6\n") == [(0, 5), (4, 7), (8, 7)]


def test_a_restarted_container_shows_its_last_run() -> None:
    started = utcnow() - timedelta(seconds=5)
    container = ContainerRecord(
        name="c",
        state="waiting",
        reason="CrashLoopBackOff",
        restarts=2,
        last=Terminated(-9, started, utcnow()),
    )
    status = container.status()
    assert status["state"] == {"waiting": {"reason": "CrashLoopBackOff"}}
    assert status["lastState"]["terminated"]["exitCode"] == 137
    assert status["lastState"]["terminated"]["signal"] == 9
    assert status["restartCount"] == 2 and status["ready"] is False


# -- revisions and the change journal --------------------------------------------------


def job(name: str) -> Resource:
    return Resource(
        apiVersion="kubeflow.org/v1",
        kind="PyTorchJob",
        metadata=ObjectMeta(name=name, namespace="ns"),
        spec={"replicas": 1},
    )


def finish(pod: PodRecord, code: int = 0) -> PodRecord:
    pod.phase = "Succeeded" if code == 0 else "Failed"
    pod.containers[0].state = "terminated"
    pod.containers[0].ended = Terminated(code, utcnow(), utcnow())
    return pod


def test_every_pod_write_takes_the_store_revision_and_is_journaled(
    pods: PodStore, store: ResourceStore
) -> None:
    """Pods and resources share one sequence: a pod's creation, status change,
    replacement (a restart under the same name), mark for deletion and removal each
    take the next revision, which is its resourceVersion, and are journaled."""
    store.create(job("mnist"))  # 1
    master, worker = record("mnist-master-0"), record("mnist-worker-0")
    pods.put([master, worker])  # 2, 3
    pods.put([finish(worker)])  # 4
    again = record("mnist-master-0")
    pods.put([again])  # 5: the old master DELETED, 6: the new one ADDED
    marked, _owner = pods.request_deletion("ns", "mnist-master-0")  # 7
    assert marked["metadata"]["resourceVersion"] == "7"
    assert pods.get("ns", "mnist-master-0")["metadata"]["resourceVersion"] == "7"
    pods.put([record("done", phase="Succeeded", deletion="remove")])  # 8
    removed, _nobody = pods.request_deletion("ns", "done")  # 9
    assert removed["metadata"]["resourceVersion"] == "8"  # as it was
    assert store.revision() == 9

    found = store.changes(1, kind="Pod")
    assert found.revision == 9
    assert [(c.revision, c.type, c.name) for c in found] == [
        (2, "ADDED", "mnist-master-0"),
        (3, "ADDED", "mnist-worker-0"),
        (4, "MODIFIED", "mnist-worker-0"),
        (5, "DELETED", "mnist-master-0"),
        (6, "ADDED", "mnist-master-0"),
        (7, "MODIFIED", "mnist-master-0"),
        (8, "ADDED", "done"),
        (9, "DELETED", "done"),
    ]
    assert [c.uid for c in found.items[3:6]] == [master.uid, again.uid, again.uid]
    # each object as written: its kind, its version, what changed
    for change in found:
        assert change.object["kind"] == "Pod" and change.namespace == "ns"
        assert change.object["metadata"]["resourceVersion"] == str(change.revision)
        assert "logs" not in change.object["status"]
    assert found.items[2].object["status"]["phase"] == "Succeeded"
    assert found.items[3].object["metadata"]["uid"] == master.uid  # as it was when replaced
    assert "deletionTimestamp" in found.items[5].object["metadata"]
    assert store.previous("Pod", master.uid, 5) == found.items[0].object
    # the resources' changes are the resources' only
    assert [c.revision for c in store.changes(0, kind="PyTorchJob")] == [1]

    # removals (pods by name, an owner's, by owner uid, in the owner's deletion): each
    # pod removed is DELETED at a revision of its own
    other = Owner("kubeflow.org/v1", "PyTorchJob", "other", "owner-uid-2")
    third = Owner("kubeflow.org/v1", "PyTorchJob", "third", "owner-uid-3")
    pods.put([record(f"w-{i}", owner=other) for i in range(3)] + [record("x-0", owner=third)])
    assert pods.remove("ns", ["w-0", "nope"]) == 1  # 14
    assert pods.remove_owned("PyTorchJob", "ns", "other") == 2  # 15, 16
    assert pods.remove_owner_uids([third.uid]) == 1  # 17
    with store.database.session() as session:
        delete_owned_in(session, OWNER.uid)  # 18, 19
    gone = store.changes(13, kind="Pod")
    assert [(c.revision, c.type) for c in gone] == [(r, "DELETED") for r in range(14, 20)]
    assert [c.name for c in gone] == [
        "w-0",
        "w-1",
        "w-2",
        "x-0",
        "mnist-master-0",
        "mnist-worker-0",
    ]
    assert all(c.object["metadata"]["resourceVersion"] == str(c.revision) for c in gone)
    assert pods.list(None).items == [] and store.revision() == 19


def test_a_pod_list_answers_the_revision_it_was_read_at(
    pods: PodStore, store: ResourceStore
) -> None:
    pods.put([record(f"p-{i}") for i in range(3)])
    store.create(job("j"))  # the store's revision moves with any write
    first = pods.list("ns", limit=2)
    assert first.resource_version == "4" == str(store.revision())
    assert first.continue_token
    pods.put([record("p-3")])
    # the next page is served at the first one's version
    rest = pods.list("ns", continue_token=first.continue_token)
    assert [p["metadata"]["name"] for p in rest.items] == ["p-2", "p-3"]
    assert rest.resource_version == "4"
    assert pods.list(None).resource_version == "5"
    # a continue token older than the journal keeps: 410, list again
    store.compact(keep_seconds=0, min_entries=0)
    with pytest.raises(Expired, match="continue parameter is too old"):
        pods.list("ns", continue_token=first.continue_token)
    assert pods.list("ns", limit=2).resource_version == "5"


def test_pod_and_resource_writers_number_their_writes_in_commit_order(
    pods: PodStore, store: ResourceStore
) -> None:
    """Pod writers and resource writers in parallel share one sequence with no gap,
    and a reader of the journal sees every write exactly once."""
    import threading

    rounds = 12
    barrier = threading.Barrier(3)
    errors: list[BaseException] = []
    seen: list[int] = []
    total = 3 * rounds  # the pods' writes (an ADDED and a MODIFIED a round), the job's

    def write_pods() -> None:
        mine = PodStore(pods.database)
        try:
            barrier.wait()
            for step in range(rounds):
                pod = record(f"c-{step}")
                mine.put([pod])
                mine.put([finish(pod)])
        except BaseException as exc:  # noqa: BLE001  # pragma: no cover - asserted below
            errors.append(exc)

    def write_job() -> None:
        mine = ResourceStore(store.database, migrate=False)
        try:
            barrier.wait()
            mine.create(job("c"))
            for step in range(rounds - 1):
                mine.update_status("PyTorchJob", "ns", "c", {"step": step})
        except BaseException as exc:  # noqa: BLE001  # pragma: no cover - asserted below
            errors.append(exc)

    def read() -> None:
        reader = ResourceStore(store.database, migrate=False)
        position = 0
        barrier.wait()
        while position < total and not errors:
            found = reader.changes(position)
            seen.extend(change.revision for change in found)
            position = found.revision

    threads = [threading.Thread(target=f) for f in (write_pods, write_job, read)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    assert seen == list(range(1, total + 1)) and store.revision() == total
    versions = {p["metadata"]["resourceVersion"] for p in pods.list("ns").items}
    assert len(versions) == rounds


def test_pods_and_events_from_before_revisions_upgrade_in_place(
    database: db.Database,
) -> None:
    """A store at 0006 (pods counted their own writes, events had no version) keeps
    its pods and events; they get the store's revision, and the journal, which never
    had their writes, is marked complete only from there (older versions: 410)."""
    from alembic import command
    from sqlalchemy import select, text

    from ketch.core.store.models import ResourceEventRow

    command.upgrade(database.alembic_config(), "0006")
    old = ResourceStore(database, migrate=False)
    created = old.create(job("mnist"))
    old.update_status("PyTorchJob", "ns", "mnist", {"phase": "Running"})
    uid = created.metadata.uid
    pod = record("mnist-master-0")
    now = utcnow()
    with database.engine.begin() as connection:  # as the Ketch before wrote them
        connection.execute(
            text(
                "INSERT INTO pods (uid, namespace, name, owner_api_version, owner_kind, "
                "owner_name, owner_uid, labels, annotations, spec, status, logs, deletion, "
                "refusal, resource_version, created_at, updated_at) VALUES (:uid, 'ns', "
                "'mnist-master-0', 'kubeflow.org/v1', 'PyTorchJob', 'mnist', :owner, '{}', "
                "'{}', '{}', '{}', '{}', 'owner', '', 3, :now, :now)"
            ),
            {"uid": pod.uid, "owner": uid, "now": now},
        )
        connection.execute(
            text(
                "INSERT INTO resource_events (resource_uid, kind, namespace, name, type, "
                "reason, message, created_at, count, last_seen_at) VALUES (:uid, "
                "'PyTorchJob', 'ns', 'mnist', 'Normal', 'Created', 'made', :now, 2, :now)"
            ),
            {"uid": uid, "now": now},
        )
    assert old.revision() == 2

    database.migrate()
    store = ResourceStore(database, migrate=False)
    pods = PodStore(database)
    assert store.revision() == 2
    listed = pods.list("ns")
    (kept,) = listed.items
    assert kept["metadata"]["uid"] == pod.uid and kept["metadata"]["resourceVersion"] == "2"
    assert listed.resource_version == "2"
    with database.session(readonly=True) as session:
        versions = session.scalars(select(ResourceEventRow.resource_version)).all()
    assert versions == [2]
    assert [(e.reason, e.count) for e in store.list_events("PyTorchJob", "ns", "mnist")] == [
        ("Created", 2)
    ]
    # the journal holds no pod's writes from before: a watch from before is 410
    with pytest.raises(Expired, match=r"too old resource version: 1 \(2\)"):
        store.changes(1)
    assert list(store.changes(2)) == []
    # writes go on from there
    pods.put([pod])
    assert pods.get("ns", "mnist-master-0")["metadata"]["resourceVersion"] == "3"
    (change,) = store.changes(2)
    assert (change.type, change.kind, change.uid) == ("MODIFIED", "Pod", pod.uid)


def test_put_in_writes_in_the_callers_transaction(pods: PodStore, store: ResourceStore) -> None:
    written = record("mnist-master-0")
    with pytest.raises(RuntimeError), pods.database.session() as session:
        pods.put_in(session, [written])
        raise RuntimeError("the caller's write fails")
    with pytest.raises(NotFound):  # rolled back with it, and not taken as written
        pods.get("ns", "mnist-master-0")
    revision = store.revision()
    with pods.database.session() as session:
        pods.put_in(session, [written])
    pod = pods.get("ns", "mnist-master-0")
    assert pod["metadata"]["resourceVersion"] == str(revision + 1)
    assert [c.type for c in store.changes(revision, kind="Pod")] == ["ADDED"]
    pods.put([written])  # as it was written: nothing to write
    assert store.revision() == revision + 1


def test_removing_pods_that_are_not_there_takes_no_write(pods: PodStore) -> None:
    pods.put([record("mnist-master-0")])
    commits: list[object] = []
    event.listen(pods.database.engine, "commit", commits.append)
    assert pods.remove("ns", ["nope"]) == 0
    assert pods.remove_owned("PyTorchJob", "ns", "mnist", keep_uid=OWNER.uid) == 0
    assert pods.remove_owned("PyTorchJob", "ns", "other") == 0
    assert pods.remove_owner_uids(["no-such-uid"]) == 0
    assert commits == []
    assert pods.remove_owned("PyTorchJob", "ns", "mnist") == 1
    assert len(commits) == 1
