"""The pipelines capability's namespace finalizer
(:data:`~ketch.core.capability.NamespaceFinalizer`): when a namespace is deleted (its
Profile was), what this capability keeps for it in its own tables goes too, so nothing
of it is left to whoever gets a namespace of that name later.

In order, each step idempotent (a restart that interrupted it runs it again):

1. its recurring runs, so that nothing new is fired;
2. its runs in flight are terminated as ``terminate`` does it (the run service stops
   their tasks' processes; a run a ``ketch run`` process executes is marked
   CANCELING, which that process obeys; one whose process is gone ends CANCELED).
   Until every one has ended, the finalizer answers "not done" and is called again;
3. each run: first its folders on disk, then its rows (its tasks, KFP fields,
   lineage, task cache entries and its tasks' pods; the run journaled as DELETED, so
   watches see it go). Only folders Ketch made for it are removed: its working folder
   ``KETCH_HOME/runs/<run>`` (its logs among them) and its artifacts' folder
   ``<root>/<pipeline>/<run>`` when that lies under the local artifacts root.
   Artifacts under another root (a run's own ``pipelineRoot``, an object store) are
   left where they are: a path read from a run is never trusted to delete;
4. its experiments and its namespaced pipelines, with their versions.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from ketch.core import config
from ketch.core.conditions import RunState
from ketch.core.errors import NotFound
from ketch.core.services import ServiceContext
from ketch.core.store.db import Database
from ketch.core.store.pods import delete_owned_in
from ketch.pipelines.catalog.store import write_in
from ketch.pipelines.manifests import journal_run
from ketch.pipelines.owners import ACTIVE_STATES
from ketch.pipelines.records import Recorder
from ketch.pipelines.service import RunService, cancel_stored
from ketch.pipelines.tables import (
    ArtifactRow,
    CacheEntryRow,
    ExecutionRow,
    KfpExperimentRow,
    KfpPipelineRow,
    KfpPipelineVersionRow,
    KfpRecurringRunRow,
    KfpRunMetaRow,
    LineageEventRow,
    PipelineRunRow,
    PipelineTaskRow,
)

log = logging.getLogger(__name__)

R = PipelineRunRow


def finalize(context: ServiceContext, namespace: str) -> bool:
    """Remove what the pipelines capability keeps for ``namespace``; False while a run
    of it is still stopping (call again)."""
    database = context.database
    write_in(
        database,
        lambda s: s.execute(
            delete(KfpRecurringRunRow).where(KfpRecurringRunRow.namespace == namespace)
        ),
    )
    if _stopping(database, context.services.find(RunService), namespace):
        return False
    with database.session(readonly=True) as s:
        run_ids = list(s.scalars(select(R.id).where(R.namespace == namespace)))
    for run_id in run_ids:
        _remove_run(database, run_id)
    _remove_catalog(database, namespace)
    if run_ids:
        log.info("namespace %s deleted: removed its %d pipeline run(s)", namespace, len(run_ids))
    return True


def _stopping(database: Database, service: RunService | None, namespace: str) -> bool:
    """Terminate the runs of ``namespace`` in flight; whether any has not ended yet."""
    with database.session(readonly=True) as s:
        rows = s.execute(
            select(R.id, R.state, R.owner).where(
                R.namespace == namespace, R.state.in_(ACTIVE_STATES)
            )
        ).all()
        ids = list(s.scalars(select(R.id).where(R.namespace == namespace)))
    recorder = Recorder(database)
    for run_id, state, owner in rows:
        if state == RunState.CANCELING:
            if service is None or service.busy(run_id):
                continue  # asked already: its owner (or the next server) ends it
            # asked, but nothing here executes it any more (its engine ended as it was
            # asked): CANCELED now, unless another live process owns it and obeys
            cancel_stored(recorder, run_id, owner)
            continue
        try:
            if service is not None:
                service.cancel(run_id)
            else:
                cancel_stored(recorder, run_id, owner)
        except NotFound:  # deleted meanwhile
            continue
    if service is not None and any(service.busy(run_id) for run_id in ids):
        return True
    with database.session(readonly=True) as s:
        left = s.scalar(
            select(R.id).where(R.namespace == namespace, R.state.in_(ACTIVE_STATES)).limit(1)
        )
    return left is not None


def _remove_run(database: Database, run_id: str) -> None:
    """Remove run ``run_id``'s folders, then its rows."""
    with database.session(readonly=True) as s:
        row = s.get(R, run_id)
        if row is None:
            return
        folders = run_folders(row.id, row.pipeline_name, row.pipeline_root)
    for folder in folders:
        try:
            shutil.rmtree(folder)
        except FileNotFoundError:
            continue
        except OSError as exc:  # its rows go still: nothing shows it any more
            log.warning("could not remove the folder %s of run %s: %s", folder, run_id, exc)

    def write(s: Session) -> None:
        found = s.get(R, run_id, with_for_update=True)  # removed once, journaled once
        if found is None:  # removed meanwhile
            return
        journal_run(s, found, "DELETED")  # the run as it was, for PipelineRun watches
        executions = select(ExecutionRow.id).where(ExecutionRow.run_id == run_id)
        artifacts = select(ArtifactRow.id).where(ArtifactRow.run_id == run_id)
        s.execute(delete(LineageEventRow).where(LineageEventRow.execution_id.in_(executions)))
        s.execute(delete(LineageEventRow).where(LineageEventRow.artifact_id.in_(artifacts)))
        s.execute(delete(ExecutionRow).where(ExecutionRow.run_id == run_id))
        s.execute(delete(ArtifactRow).where(ArtifactRow.run_id == run_id))
        s.execute(delete(CacheEntryRow).where(CacheEntryRow.run_id == run_id))
        s.execute(delete(KfpRunMetaRow).where(KfpRunMetaRow.run_id == run_id))
        s.execute(delete(PipelineTaskRow).where(PipelineTaskRow.run_id == run_id))
        s.execute(delete(R).where(R.id == run_id))
        delete_owned_in(s, run_id)  # its tasks' pods

    write_in(database, write)


def run_folders(run_id: str, pipeline_name: str, pipeline_root: str) -> list[Path]:
    """The folders Ketch made for run ``run_id`` that exist: its working folder and,
    under the local artifacts root, its artifacts' folder (each with symlinks and
    ``..`` resolved, and only when it is such a folder of this run)."""
    home = config.ketch_home()
    found = [_own(home / "runs" / run_id, home / "runs", run_id)]
    default = config.artifacts_root(home)
    if _local(pipeline_root) and _local(default):
        root = Path(default.removeprefix("file://")).expanduser()
        path = Path(pipeline_root.removeprefix("file://")) / pipeline_name / run_id
        found.append(_own(path, root, run_id))
    return [folder for folder in found if folder is not None]


def _local(uri: str) -> bool:
    return "://" not in uri or uri.startswith("file://")


def _own(path: Path, root: Path, run_id: str) -> Path | None:
    """``path``, resolved, when it is a folder named ``run_id`` below ``root``."""
    real = Path(os.path.realpath(path))
    base = Path(os.path.realpath(root))
    if real.name != run_id or real == base or not real.is_relative_to(base):
        return None
    return real if real.is_dir() else None


def _remove_catalog(database: Database, namespace: str) -> None:
    def write(s: Session) -> None:
        s.execute(delete(KfpExperimentRow).where(KfpExperimentRow.namespace == namespace))
        pipelines = select(KfpPipelineRow.id).where(KfpPipelineRow.namespace == namespace)
        s.execute(
            delete(KfpPipelineVersionRow).where(KfpPipelineVersionRow.pipeline_id.in_(pipelines))
        )
        s.execute(delete(KfpPipelineRow).where(KfpPipelineRow.namespace == namespace))

    write_in(database, write)
