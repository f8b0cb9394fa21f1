"""What a run leaves in the store — runs, tasks, lineage, cache — on SQLite and PostgreSQL."""

import re
import threading
from pathlib import Path
from typing import Any

import pytest
from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output
from sqlalchemy import event, select

import ketch
from ketch.core.store.db import Database
from ketch.core.store.models import PodRow
from ketch.core.store.pods import PodStore
from ketch.pipelines.tables import (
    MIGRATIONS,
    ArtifactRow,
    CacheEntryRow,
    ExecutionRow,
    LineageEventRow,
    PipelineRunRow,
    PipelineTaskRow,
)
from ketch.pipelines.taskpods import pod_name
from tests.waiting import wait_for


@dsl.component
def make_data(rows: int, data: Output[Dataset]):
    with open(data.path, "w") as f:
        f.write("\n".join(str(i) for i in range(rows)))
    data.metadata["rows"] = rows


@dsl.component
def fit(data: Input[Dataset], model: Output[Model]) -> int:
    n = len(open(data.path).read().splitlines())
    with open(model.path, "w") as f:
        f.write(f"mean={sum(range(n)) / n}")
    return n


@dsl.pipeline(name="lineage")
def lineage_pipeline(rows: int = 4) -> int:
    d = make_data(rows=rows)
    return fit(data=d.outputs["data"]).outputs["Output"]


@pytest.fixture
def store(db_url: str, database: Database, monkeypatch: pytest.MonkeyPatch) -> Database:
    """The database ``ketch.run`` stores runs in (this test reads it through ``database``)."""
    monkeypatch.setenv("KETCH_DATABASE_URL", db_url)
    return database


def test_run_tasks_and_lineage_are_stored(store: Database) -> None:
    run = ketch.run(lineage_pipeline, {"rows": 5})
    assert run.state == "SUCCEEDED", run.error
    with store.session(readonly=True) as s:
        row = s.get(PipelineRunRow, run.id)
        assert row is not None and row.state == "SUCCEEDED"
        assert row.parameters == {"rows": 5} and row.outputs == {"Output": 5}
        assert row.owner and row.owner.startswith("process:")
        tasks = {
            t.path: t
            for t in s.execute(
                select(PipelineTaskRow).where(PipelineTaskRow.run_id == run.id)
            ).scalars()
        }
        assert set(tasks) == {"make-data", "fit"}
        assert all(t.state == "SUCCEEDED" and t.finished_at is not None for t in tasks.values())
        assert tasks["fit"].outputs["parameters"] == {"Output": 5}
        executions = {
            e.task_id: e
            for e in s.execute(select(ExecutionRow).where(ExecutionRow.run_id == run.id)).scalars()
        }
        assert {e.state for e in executions.values()} == {"COMPLETE"}
        fit_exec = executions[tasks["fit"].id]
        events = list(
            s.execute(
                select(LineageEventRow).where(LineageEventRow.execution_id == fit_exec.id)
            ).scalars()
        )
        kinds = sorted((e.type, e.key) for e in events)
        assert kinds == [("INPUT", "data"), ("OUTPUT", "model")]
        data_event = next(e for e in events if e.type == "INPUT")
        produced = s.execute(
            select(LineageEventRow).where(
                LineageEventRow.artifact_id == data_event.artifact_id,
                LineageEventRow.type == "OUTPUT",
            )
        ).scalar_one()
        # the dataset fit read is the one make-data wrote
        assert produced.execution_id == executions[tasks["make-data"].id].id
        artifact = s.get(ArtifactRow, data_event.artifact_id)
        assert artifact is not None and artifact.type == "system.Dataset"
        assert artifact.metadata_ == {"rows": 5}


def test_cache_survives_across_runs(store: Database, tmp_path) -> None:
    first = ketch.run(lineage_pipeline, {"rows": 3})
    second = ketch.run(lineage_pipeline, {"rows": 3})
    assert first.state == second.state == "SUCCEEDED"
    assert [t.cached for t in second.tasks.values()] == [True, True]
    assert second.outputs == first.outputs == {"Output": 3}
    with store.session(readonly=True) as s:
        entries = list(s.execute(select(CacheEntryRow)).scalars())
        assert len(entries) == 2 and {e.run_id for e in entries} == {first.id}
        cached_execs = (
            s.execute(select(ExecutionRow.state).where(ExecutionRow.run_id == second.id))
            .scalars()
            .all()
        )
        assert set(cached_execs) == {"CACHED"}


@dsl.component
def echo(n: int) -> int:
    return n


@dsl.pipeline(name="writes-one")
def one_task() -> None:
    echo(n=100)


@dsl.pipeline(name="writes-four")
def four_tasks() -> None:
    for n in range(4):
        echo(n=n)


_WRITES = re.compile(r'^\s*(?:INSERT INTO|UPDATE|DELETE FROM)\s+"?(\w+)', re.IGNORECASE)


class Transactions:
    """The write transactions committed on a database: for each, the tables its
    statements wrote to, as the database received them."""

    def __init__(self, database: Database) -> None:
        self._lock = threading.Lock()
        self._committed: list[frozenset[str]] = []
        event.listen(database.engine, "after_cursor_execute", self._statement)
        event.listen(database.engine, "commit", self._commit)
        event.listen(database.engine, "rollback", self._rollback)

    def _statement(self, conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        written = _WRITES.match(statement)
        if written:
            conn.info.setdefault("written_tables", set()).add(written.group(1))

    def _commit(self, conn: Any) -> None:
        tables = conn.info.pop("written_tables", None)
        if tables:
            with self._lock:
                self._committed.append(frozenset(tables))

    def _rollback(self, conn: Any) -> None:
        conn.info.pop("written_tables", None)

    def take(self) -> list[frozenset[str]]:
        """Those committed since the last call."""
        with self._lock:
            taken, self._committed = self._committed, []
        return taken


def test_a_container_task_is_two_write_transactions(store: Database) -> None:
    """A container task's start is one write with its pod's (once its process started),
    its end one with its pod's end and its cache entry; a cache hit is one write."""
    store.migrate([MIGRATIONS])
    transactions = Transactions(store)
    totals = {}
    for pipeline, count in ((one_task, 1), (four_tasks, 4)):
        run = ketch.run(pipeline, database=store)
        assert run.state == "SUCCEEDED", run.error
        writes = transactions.take()
        of_tasks = [w for w in writes if "pipeline_tasks" in w]
        assert len(of_tasks) == 2 * count
        # a pod is written with its task, its start and its end: never alone
        assert [w for w in writes if "pods" in w] == of_tasks
        # the cache entry is written with the task's end
        assert sum("cache_entries" in w for w in of_tasks) == count
        assert sum("cache_entries" in w for w in writes) == count
        totals[count] = len(writes)
    assert totals[4] - totals[1] == 2 * 3  # what three more tasks add to a run

    hit = ketch.run(one_task, database=store)
    assert hit.tasks["echo"].cached
    writes = transactions.take()
    assert len([w for w in writes if "pipeline_tasks" in w]) == 1  # its start with its end
    assert not any("pods" in w for w in writes)  # no process, no pod


@dsl.component
def held(release: str) -> str:
    import os
    import time

    print("holding", flush=True)
    while not os.path.exists(release):
        time.sleep(0.05)
    return "released"


@dsl.pipeline(name="held")
def held_pipeline(release: str) -> str:
    return held(release=release).output


def test_a_task_is_running_with_its_pod_while_its_process_runs(store: Database, tmp_path) -> None:
    store.migrate([MIGRATIONS])
    release = tmp_path / "release"
    ended: dict[str, Any] = {}
    thread = threading.Thread(
        target=lambda: ended.update(
            run=ketch.run(held_pipeline, {"release": str(release)}, database=store)
        )
    )
    thread.start()

    def running() -> tuple[PipelineTaskRow, PodRow] | None:
        with store.session(readonly=True) as s:
            task = s.scalars(select(PipelineTaskRow).where(PipelineTaskRow.name == "held")).first()
            if task is None:
                return None
            pod = s.scalars(select(PodRow).where(PodRow.owner_name == task.run_id)).first()
        return (task, pod) if task.state == "RUNNING" else None

    try:
        task, pod = wait_for(running, 120, what="the task RUNNING")
        # the task and its pod are written together: the one is never seen without the other
        assert pod is not None and pod.name == pod_name(task.run_id, "held")
        assert pod.status["phase"] == "Running"
        assert pod.status["containerStatuses"][0]["state"]["running"]
    finally:
        release.touch()
        thread.join(120)
    run = ended["run"]
    assert run.state == "SUCCEEDED", run.error
    found = PodStore(store).get("default", pod_name(run.id, "held"))
    assert found["status"]["phase"] == "Succeeded"
    terminated = found["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == 0
    with store.session(readonly=True) as s:
        row = s.get(PipelineTaskRow, task.id)
        assert row is not None and row.state == "SUCCEEDED" and row.finished_at is not None


@dsl.component
def fails_once(marker: str) -> str:
    import os

    if not os.path.exists(marker):
        open(marker, "w").close()
        print("first attempt", flush=True)
        raise SystemExit(3)
    print("second attempt", flush=True)
    return "ok"


def test_a_retried_tasks_pod_restarts(store: Database, tmp_path) -> None:
    @dsl.pipeline(name="retried")
    def retried(marker: str) -> str:
        return fails_once(marker=marker).set_retry(num_retries=1, backoff_duration="0s").output

    run = ketch.run(retried, {"marker": str(tmp_path / "marker")})
    assert run.state == "SUCCEEDED", run.error
    assert run.tasks["fails-once"].attempts == 2
    pods = PodStore(store)
    name = pod_name(run.id, "fails-once")
    pod = pods.get("default", name)
    assert pod["status"]["phase"] == "Succeeded"
    (status,) = pod["status"]["containerStatuses"]
    assert status["restartCount"] == 1
    assert status["lastState"]["terminated"]["exitCode"] == 3
    assert status["state"]["terminated"]["exitCode"] == 0
    log = pods.logs_of("default", name).logs["main"]
    assert log.previous is not None
    text = Path(log.path).read_bytes()
    assert b"first attempt" in text[log.previous : log.start]
    assert b"second attempt" in text[log.start :]
    assert b"first attempt" not in text[log.start :]
