"""An existing database opened by today's Ketch: it upgrades in place and keeps every
row.

``data/ketch-main-0003.sqlite`` was written by Ketch when its migrations were one
line in core's folder (see ``data/README.md``). The API server opens a copy the way
``ketch up`` does (its app, on real HTTP); the rows are then read back through
Ketch's own code: the resource store, the KFP API and the run recorder.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import inspect

from ketch.capabilities import ASSEMBLY, create_app
from ketch.core.store import db
from ketch.core.store.models import Base
from ketch.core.store.resources import ResourceStore
from ketch.pipelines.records import Recorder
from ketch.pipelines.tables import MIGRATIONS
from tests.server.helpers import ThreadServer

FIXTURE = Path(__file__).parent / "data" / "ketch-main-0003.sqlite"
# What the server migrates: every assembled capability's folder (pipelines' among
# them, however the server is assembled).
FOLDERS = (*ASSEMBLY.migrations, MIGRATIONS)
KFP = "/apis/v2beta1"

Rows = dict[str, list[tuple[Any, ...]]]


def _rows(path: Path) -> Rows:
    """Every row of every table but ``alembic_version``, in a stable order."""
    raw = sqlite3.connect(path)
    try:
        tables = [
            name
            for (name,) in raw.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' "
                "AND name NOT LIKE 'sqlite_%' AND name != 'alembic_version'"
            )
        ]
        return {
            table: sorted(raw.execute(f'SELECT * FROM "{table}"').fetchall(), key=repr)
            for table in tables
        }
    finally:
        raw.close()


def _kept(path: Path, before: Rows) -> Rows:
    """The rows of the tables in ``before``, as they are now, in the fixture's columns
    (a column added since, such as ``resources.managed_fields``, is new: not a change)."""
    raw = sqlite3.connect(FIXTURE)
    try:
        columns = {
            table: [row[1] for row in raw.execute(f'PRAGMA table_info("{table}")')]
            for table in before
        }
    finally:
        raw.close()
    raw = sqlite3.connect(path)
    try:
        kept: Rows = {}
        for table, names in columns.items():
            selected = ", ".join(f'"{name}"' for name in names)
            rows = raw.execute(f'SELECT {selected} FROM "{table}"').fetchall()
            kept[table] = sorted(rows, key=repr)
        return kept
    finally:
        raw.close()


def _schema(path: Path) -> list[tuple[Any, ...]]:
    raw = sqlite3.connect(path)
    try:
        return raw.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()
    finally:
        raw.close()


def _serve_once(url: str) -> dict[str, Any]:
    """Start the API server on ``url`` (no background work: nothing may change what
    is stored), read the KFP catalog over HTTP, stop it; what it answered."""
    app = create_app(database_url=url, background=False)
    with ThreadServer(app) as server, httpx.Client(base_url=server.url, timeout=30) as client:

        def get(path: str, **params: Any) -> dict[str, Any]:
            response = client.get(KFP + path, params=params)
            assert response.status_code == 200, response.text
            body = response.json()
            assert isinstance(body, dict)
            return body

        answers: dict[str, Any] = {
            "experiments": get("/experiments", page_size=100),
            "pipelines": get("/pipelines", page_size=100),
            "runs": get("/runs", page_size=100),
            "recurringruns": get("/recurringruns", page_size=100),
        }
        for pipeline in answers["pipelines"].get("pipelines", []):
            versions = get(f"/pipelines/{pipeline['pipeline_id']}/versions", page_size=100)
            answers[f"versions:{pipeline['display_name']}"] = versions
        for run in answers["runs"].get("runs", []):
            answers[f"run:{run['run_id']}"] = get(f"/runs/{run['run_id']}")
    return answers


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("KETCH_HOME", str(home))
    monkeypatch.delenv("KETCH_DATABASE_URL", raising=False)
    return home


def test_a_database_from_before_the_split_upgrades_in_place(home: Path) -> None:
    path = home / "ketch.db"
    shutil.copyfile(FIXTURE, path)
    url = f"sqlite:///{path}"
    before = _rows(path)
    assert all(before.values()), "the fixture has rows in every table"
    with db.Database(url) as database:
        assert database.current_revisions() == {"0003"}

    answers = _serve_once(url)

    # The revisions are the new heads: core's branch and pipelines' (0002 recorded,
    # its tables kept, then 0008), and no row changed (the tables core added since are
    # checked in test_revisions.py).
    with db.Database(url) as database:
        assert database.current_revisions() == db.head_revisions(FOLDERS)
        assert "0008" in database.current_revisions()
    assert _kept(path, before) == before
    # The runs were given the store's revision, and the journal starts there: their
    # writes before the upgrade were never journaled (a watch from before is a 410).
    raw = sqlite3.connect(path)
    try:
        ((revision, compacted),) = raw.execute(
            "SELECT revision, compacted FROM resource_revision"
        ).fetchall()
        versions = {v for (v,) in raw.execute("SELECT resource_version FROM pipeline_runs")}
    finally:
        raw.close()
    assert revision >= 1 and compacted == revision and versions == {revision}

    # The KFP API serves the catalog, the runs and their tasks.
    experiments = {e["display_name"] for e in answers["experiments"]["experiments"]}
    assert experiments == {"Default", "fixture-experiment"}
    (pipeline,) = answers["pipelines"]["pipelines"]
    assert (pipeline["display_name"], pipeline["description"]) == (
        "Fixture sum",
        "the fixture's pipeline",
    )
    versions = answers["versions:Fixture sum"]["pipeline_versions"]
    assert {v["display_name"] for v in versions} == {"fixture-sum", "v2"}
    (recurring,) = answers["recurringruns"]["recurringRuns"]
    assert (recurring["display_name"], recurring["mode"]) == ("fixture-nightly", "DISABLE")
    assert recurring["trigger"]["cron_schedule"]["cron"] == "0 0 3 * * *"
    runs = answers["runs"]["runs"]
    assert [r["state"] for r in runs] == ["SUCCEEDED", "SUCCEEDED"]
    described = [r for r in runs if r.get("description") == "the fixture's first run"]
    assert len(described) == 1 and described[0]["service_account"] == "default-editor"
    for run in runs:
        details = answers[f"run:{run['run_id']}"]["run_details"]["task_details"]
        by_name = {t["display_name"]: t for t in details}
        # lineage: the dataset one task made is the one the next task read
        made = by_name["make-numbers"]["outputs"]["numbers"]["artifact_ids"]
        read = by_name["total"]["inputs"]["numbers"]["artifact_ids"]
        assert made == read and len(made) == 1

    # The run recorder finds the tasks' outputs and the cache entries.
    database = db.Database(url)
    recorder = Recorder(database)
    first, second = sorted(runs, key=lambda r: r["created_at"])
    for run in (first, second):
        ids, done = recorder.load_progress(run["run_id"])
        assert set(ids) == set(done) == {"make-numbers", "total"}
        assert done["total"]["parameters"]["Output"] == 10  # 0 + 1 + 2 + 3 + 4
        assert done["total"]["cached"] is (run is second)
    for key in before["cache_entries"]:
        assert recorder.cache_lookup(key[0]) is not None
    ((uri,),) = {(row[4],) for row in before["artifacts"]}
    assert recorder.find_artifact(uri, "system.Dataset") is not None

    # The resource store reads the resources and their events.
    store = ResourceStore(database, migrate=False)
    experiment = store.get("Experiment", "default", "fixture-tune")
    assert experiment.metadata.labels == {"a": "b"}
    assert experiment.status["conditions"][0]["reason"] == "Fixture"
    suggestion = store.get("Suggestion", "default", "fixture-tune")
    (owner,) = suggestion.metadata.ownerReferences or []
    assert (owner["kind"], owner["uid"]) == ("Experiment", experiment.metadata.uid)
    counts = {e.reason: e.count for e in store.list_events("Experiment", "default", "fixture-tune")}
    assert counts == {"ExperimentCreated": 2, "Fixture": 1}

    # Opening it again does nothing: not even Alembic is loaded.
    database.dispose()
    schema = _schema(path)
    code = (
        "import sys; from pathlib import Path; from ketch.core.store import db; "
        "db.Database(sys.argv[1]).migrate([Path(p) for p in sys.argv[2:]]); "
        "print('alembic' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, url, *map(str, FOLDERS)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
    assert _schema(path) == schema
    assert _kept(path, before) == before
    with database:  # opened again for this read, closed after it
        assert database.current_revisions() == db.head_revisions(FOLDERS)


def test_a_new_database_gets_every_table(home: Path) -> None:
    url = f"sqlite:///{home / 'ketch.db'}"
    _serve_once(url)
    with db.Database(url) as database:
        names = set(inspect(database.engine).get_table_names())
        assert names == set(Base.metadata.tables) | {"alembic_version"}
        assert database.current_revisions() == db.head_revisions(FOLDERS)
