r"""Make ``data/ketch-main-0003.sqlite``: a Ketch database at revision 0003 with rows
in every table, written through Ketch's own code paths.

This script runs against the Ketch of the commit that wrote the fixture, not
against today's code: it uses that Ketch's store API (``dispose_engines``,
``ResourceStore(url)``, ``Catalog(url)``, the tables in ``ketch.core.store.models``),
which later versions replaced. It is not a test (pytest does not collect it, see
``tests/core/conftest.py``) and nothing imports it. The commit is the one that
added the fixture, ``git log -1 --format=%H -- tests/core/store/data/ketch-main-0003.sqlite``
(``85550bcaaf133c6a3f8716dcec4beafd84c35a6e``; its ``src/`` is that of its parent
``155173703a8aa739f9f4dc1064e8a16246e86c28``). To write the fixture again, from the
repository root::

    rev=$(git log -1 --format=%H -- tests/core/store/data/ketch-main-0003.sqlite)
    rm -rf /tmp/ketch-old && mkdir /tmp/ketch-old
    git archive "$rev" | tar -x -C /tmp/ketch-old
    (cd /tmp/ketch-old && PYTHONPATH=/tmp/ketch-old/src \
      "$OLDPWD/.venv/bin/python" tests/core/store/make_fixture.py \
      "$OLDPWD/tests/core/store/data/ketch-main-0003.sqlite")

(the script and the code both come from that commit; the database is only as old
as the code that writes it). A fixture of a newer revision is made the same way
from the commit that should write it, with a script written for that commit's API.

It runs a small pipeline twice with ``ketch.run`` (runs, tasks, artifacts,
executions, lineage events; the second run is served from the cache entries the
first one made), writes a few resources and events through ``ResourceStore``, and
fills the KFP catalog (pipelines, versions, experiments, a recurring run, run
metadata) through ``ketch.pipelines.catalog.Catalog``. The result is checkpointed
out of WAL mode and vacuumed, so it is one small file.
"""

# No "from __future__ import annotations": kfp reads the component annotations.
import argparse
import os
import shutil
import sqlite3
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from kfp import dsl
from kfp.dsl import Dataset, Input, Output


@dsl.component
def make_numbers(count: int, numbers: Output[Dataset]) -> None:
    with open(numbers.path, "w") as f:
        f.write("\n".join(str(i) for i in range(count)))
    numbers.metadata["rows"] = count


@dsl.component
def total(numbers: Input[Dataset]) -> int:
    with open(numbers.path) as f:
        return sum(int(line) for line in f if line.strip())


@dsl.pipeline(name="fixture-sum", description="Write numbers, then add them up.")
def fixture_pipeline(count: int = 5) -> int:
    made = make_numbers(count=count)
    return total(numbers=made.outputs["numbers"]).output


def fill(home: Path) -> Path:
    """Write every kind of row into a new database under ``home``; its path."""
    os.environ["KETCH_HOME"] = str(home)
    os.environ.pop("KETCH_DATABASE_URL", None)

    import ketch
    from ketch.core import config
    from ketch.core.resource import Resource
    from ketch.core.store.db import dispose_engines
    from ketch.core.store.models import KfpRecurringRunRow
    from ketch.core.store.resources import ResourceStore
    from ketch.pipelines import catalog as kfp_catalog
    from ketch.pipelines.catalog import Catalog

    url = config.database_url(home)

    first = ketch.run(fixture_pipeline, arguments={"count": 5}, enable_caching=True)
    second = ketch.run(fixture_pipeline, arguments={"count": 5}, enable_caching=True)
    for run in (first, second):
        if run.state != "SUCCEEDED":
            raise SystemExit(f"run {run.id} ended {run.state}: {run.error}")

    store = ResourceStore(url)
    experiment = store.create(
        Resource.model_validate(
            {
                "apiVersion": "kubeflow.org/v1beta1",
                "kind": "Experiment",
                "metadata": {"name": "fixture-tune", "namespace": "default", "labels": {"a": "b"}},
                "spec": {"maxTrialCount": 2},
            }
        )
    )
    store.create(
        Resource.model_validate(
            {
                "apiVersion": "kubeflow.org/v1beta1",
                "kind": "Suggestion",
                "metadata": {
                    "name": "fixture-tune",
                    "namespace": "default",
                    "annotations": {"note": "owned"},
                    "ownerReferences": [
                        {
                            "apiVersion": "kubeflow.org/v1beta1",
                            "kind": "Experiment",
                            "name": "fixture-tune",
                            "uid": experiment.metadata.uid,
                            "controller": True,
                        }
                    ],
                },
                "spec": {"requests": 1},
            }
        )
    )
    store.update_status(
        "Experiment",
        "default",
        "fixture-tune",
        {"conditions": [{"type": "Created", "status": "True", "reason": "Fixture"}]},
    )
    for _ in range(2):  # the repeat raises the event's count
        store.record_event(
            "Experiment",
            "default",
            "fixture-tune",
            reason="ExperimentCreated",
            message="the fixture made this experiment",
        )
    store.record_event(
        "Experiment",
        "default",
        "fixture-tune",
        reason="Fixture",
        message="a second, different event",
        type="Warning",
    )

    catalog = Catalog(url)
    catalog.default_experiment()
    group = catalog.create_experiment("fixture-experiment", "runs of the fixture", None)
    spec = kfp_catalog.normalize_spec(first_spec())[0]
    pipeline, version = catalog.create_pipeline(
        "fixture-sum",
        "Fixture sum",
        "the fixture's pipeline",
        None,
        version={"spec": spec, "description": "first version"},
    )
    assert version is not None
    catalog.create_version(pipeline.id, name="v2", spec=spec, code_source_url="https://example.com")
    stamp = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    catalog.create_recurring(
        KfpRecurringRunRow(
            id=kfp_catalog.new_id(),
            display_name="fixture-nightly",
            description="nightly sum",
            namespace="default",
            experiment_id=group.id,
            pipeline_id=pipeline.id,
            pipeline_version_id=version.id,
            pipeline_spec=spec,
            parameters={"count": 3},
            pipeline_root=None,
            service_account="",
            max_concurrency=1,
            cron="0 0 3 * * *",
            interval_second=None,
            start_time=stamp,
            end_time=None,
            mode="DISABLE",
            no_catchup=True,
            last_scheduled_at=stamp,
            pending_since=None,
            error=None,
            created_at=stamp,
            updated_at=stamp,
        )
    )
    catalog.set_run_meta(
        first.id, description="the fixture's first run", service_account="default-editor"
    )
    dispose_engines()
    return home / "ketch.db"


def first_spec() -> dict[str, object]:
    """The compiled IR of :func:`fixture_pipeline`."""
    import yaml
    from kfp import compiler

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pipeline.yaml"
        compiler.Compiler().compile(fixture_pipeline, str(path))
        loaded = yaml.safe_load(path.read_text())
    assert isinstance(loaded, dict)
    return loaded


def compact(database: Path, output: Path) -> None:
    """Copy ``database`` to ``output`` as one vacuumed file (no WAL)."""
    connection = sqlite3.connect(database)
    try:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        connection.execute("PRAGMA journal_mode=DELETE")
        connection.execute("PRAGMA page_size=1024")  # small pages: a small file
        connection.execute("VACUUM")
    finally:
        connection.close()
    output.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(database, output)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path, help="where to write the SQLite file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ketch-fixture-") as tmp:
        compact(fill(Path(tmp)), args.output.resolve())
    import ketch

    print(f"wrote {args.output} with the Ketch in {Path(ketch.__file__).parent}")


if __name__ == "__main__":
    main()
