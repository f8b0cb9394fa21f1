"""The KFP catalog in the store: pipelines and versions, experiments, recurring
runs, and the KFP views of runs (pages, task details, archive, delete), one module
per resource; :class:`Catalog` is all of them over one store.

Runs themselves are created and executed by :class:`ketch.pipelines.service.RunService`;
the catalog reads them and keeps the KFP fields a run row lacks. Every write runs
in its own transaction, retried when SQLite reports a busy database.
"""

from __future__ import annotations

from ketch.pipelines.catalog.experiments import ExperimentCatalog
from ketch.pipelines.catalog.pipelines import PipelineCatalog
from ketch.pipelines.catalog.recurring import RecurringCatalog
from ketch.pipelines.catalog.runs import RunCatalog


class Catalog(PipelineCatalog, ExperimentCatalog, RunCatalog, RecurringCatalog):
    """KFP pipelines, versions, experiments, recurring runs and run views in one store."""
