"""What a run leaves in the store — runs, tasks, lineage, cache — on SQLite and PostgreSQL."""

import pytest
from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output
from sqlalchemy import select

import ketch
from ketch.core.store.db import Database
from ketch.pipelines.tables import (
    ArtifactRow,
    CacheEntryRow,
    ExecutionRow,
    LineageEventRow,
    PipelineRunRow,
    PipelineTaskRow,
)


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
