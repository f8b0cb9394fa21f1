"""The ``pods`` table: what the capabilities record of their processes, and how a
``DELETE`` of a pod is answered."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from ketch.core.errors import Conflict, NotFound
from ketch.core.store import db
from ketch.core.store.pods import (
    ContainerRecord,
    LogRef,
    Owner,
    PodRecord,
    PodStore,
    Terminated,
    parse_times,
)
from ketch.core.timestamps import utcnow

OWNER = Owner("kubeflow.org/v1", "PyTorchJob", "mnist", "owner-uid-1")


@pytest.fixture
def pods(database: db.Database) -> PodStore:
    database.migrate()
    return PodStore(database)


def record(
    name: str, *, phase: str = "Running", log: str | None = None, **extra: object
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
        owner=OWNER,
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


def test_put_is_written_once_and_updated_when_it_changes(pods: PodStore) -> None:
    first = record("mnist-master-0")
    pods.put([first, record("mnist-worker-0")])
    pod = pods.get("ns", "mnist-master-0")
    assert pod["metadata"]["resourceVersion"] == "1"
    assert pod["metadata"]["ownerReferences"][0]["uid"] == "owner-uid-1"
    assert pod["spec"]["containers"] == [{"image": "img", "name": "pytorch"}]
    assert pod["status"]["containerStatuses"][0]["state"]["running"]
    pods.put([first])  # unchanged: nothing written
    assert pods.get("ns", "mnist-master-0")["metadata"]["resourceVersion"] == "1"
    first.phase = "Succeeded"
    first.containers[0].state = "terminated"
    first.containers[0].ended = Terminated(0, utcnow(), utcnow())
    pods.put([first])
    pod = pods.get("ns", "mnist-master-0")
    assert pod["metadata"]["resourceVersion"] == "2" and pod["status"]["phase"] == "Succeeded"
    assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"
    # a new pod under the same name replaces the old one
    again = record("mnist-master-0")
    pods.put([again])
    assert pods.get("ns", "mnist-master-0")["metadata"]["uid"] == again.uid != first.uid


def test_list_selectors_paging_and_removal(pods: PodStore) -> None:
    pods.put([record(f"mnist-worker-{i}") for i in range(5)])
    items, token = pods.list("ns", limit=2)
    assert [p["metadata"]["name"] for p in items] == ["mnist-worker-0", "mnist-worker-1"]
    rest, end = pods.list("ns", continue_token=token)
    assert [p["metadata"]["name"] for p in rest] == [
        "mnist-worker-2",
        "mnist-worker-3",
        "mnist-worker-4",
    ]
    assert end is None
    picked, _ = pods.list(None, label_selector="index in (1,3)")
    assert {p["metadata"]["name"] for p in picked} == {"mnist-worker-1", "mnist-worker-3"}
    assert pods.remove("ns", ["mnist-worker-0", "nope"]) == 1
    assert pods.remove_owned("PyTorchJob", "ns", "mnist", keep_uid="owner-uid-1") == 0
    assert pods.remove_owned("PyTorchJob", "ns", "mnist") == 4
    assert pods.list("ns")[0] == []


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
