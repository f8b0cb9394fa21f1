"""A pipeline's runs and tasks and their namespace's quota (the profile's
``kf-resource-quota``, :mod:`ketch.core.quota`).

Runs are counted objects: ``count/pipelineruns.pipelines.ketch.dev`` limits how many
runs (of any state) a namespace keeps, as ``count/<plural>.<group>`` limits any kind
in Kubernetes. However a run is made (the KFP v2beta1 API, a ``PipelineRun``
applied, a recurring run firing), a run past the limit is refused with 403 and
Kubernetes' ``exceeded quota`` message, and nothing is stored (:func:`admit_run`).

Each task's pod (:mod:`ketch.pipelines.taskpods`) is charged to the namespace's
ledger (:mod:`ketch.core.charges`) with its requests and limits before its process
starts, under its run (``("PipelineRun", namespace, run id)``, the pod by name), and
gives its charge back when its process ends. A task that does not fit waits:
``PENDING``, its ``error`` saying Kubernetes' ``exceeded quota`` message (which
limits, what is used, what is limited), until a release makes room; a task that
alone asks for more than the quota allows can never start, and fails saying so
instead of waiting forever. A canceled run stops waiting.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy import func, select

from ketch.core import charges, quota
from ketch.core.backend import ProcessSpec
from ketch.core.resource import Resource
from ketch.core.store.db import Database
from ketch.core.store.resources import ResourceStore
from ketch.core.workloads.pods import ResourceRequirements
from ketch.pipelines.kinds import PIPELINE_RUN
from ketch.pipelines.resources import pod_resources
from ketch.pipelines.tables import PipelineRunRow
from ketch.pipelines.taskpods import pod_name
from ketch.pipelines.tasks import Node, RunContext

log = logging.getLogger(__name__)

#: seconds between looks at the quota while a task waits (a release wakes it sooner)
LOOK = 1.0


@contextmanager
def admit_run(database: Database, namespace: str, run_id: str) -> Iterator[None]:
    """Held while run ``run_id`` is stored in ``namespace``: raises
    :class:`~ketch.core.quota.QuotaExceeded` when the namespace has as many runs as a
    count quota of its profile allows (checked and stored one at a time with every
    other counted create of the store)."""
    store = ResourceStore(database, migrate=False)
    run = Resource.from_manifest(
        {
            "apiVersion": PIPELINE_RUN.api_version,
            "kind": PIPELINE_RUN.kind,
            "metadata": {"name": run_id, "namespace": namespace},
            "spec": {},
        }
    )

    def count() -> int:
        with database.session(readonly=True) as session:
            query = select(func.count()).where(PipelineRunRow.namespace == namespace)
            return int(session.execute(query).scalar_one())

    with quota.admit_create(store, quota.count_lock(store), PIPELINE_RUN, run, count):
        yield


def run_key(ctx: RunContext) -> tuple[str, str, str]:
    """What a run's tasks are charged under (and what they held before a restart)."""
    return charges.owner_key(PIPELINE_RUN.kind, ctx.namespace, ctx.run_id)


class TaskQuota:
    """Charges the tasks of the runs stored in ``database`` to their namespaces'
    quotas; ``waiting(ctx, node, reason)`` records a task that waits."""

    def __init__(
        self, database: Database, waiting: Callable[[RunContext, Node, str], None]
    ) -> None:
        self.store = ResourceStore(database, migrate=False)
        self.waiting = waiting

    def acquire(
        self, node: Node, ctx: RunContext, spec: ProcessSpec, canceled: threading.Event
    ) -> str | None:
        """Charge the task's pod, waiting until it fits; ``None`` once charged, else
        why it cannot start (it never fits; or ``""``: the run was canceled)."""
        ledger = charges.ledger_of(self.store)
        name = pod_name(ctx.run_id, node.path)
        needs = ResourceRequirements.model_validate(pod_resources(spec.resources))
        pods = [(name, quota.resources_demand([needs]))]
        shown: str | None = None
        while True:
            refused = ledger.admit_amounts(self.store, run_key(ctx), ctx.namespace, pods)
            if refused is None:
                if shown is not None:
                    log.info("run %s task %s: the quota has room now", ctx.run_id, node.path)
                return None
            never = quota.never_fits(self.store, ctx.namespace, pods)
            if never is not None:
                return (
                    f"{never}: the task asks for more than the quota of namespace "
                    f"{ctx.namespace!r} allows, so it can never start; lower its requests "
                    "and limits (set_cpu_request, set_memory_limit, ...) or raise the "
                    f"profile's spec.resourceQuotaSpec.hard (kubectl edit profile "
                    f"{ctx.namespace}), then retry the run"
                )
            if refused != shown:
                shown = refused
                log.info("run %s task %s waits: %s", ctx.run_id, node.path, refused)
                self.waiting(ctx, node, f"{refused} (the task waits until the quota has room)")
            if canceled.is_set() or ctx.canceled.is_set():
                return ""
            ledger.wait(LOOK)

    def release(self, node: Node, ctx: RunContext) -> None:
        """The task's process ended: its pod's charge goes back."""
        charges.ledger_of(self.store).release(run_key(ctx), [pod_name(ctx.run_id, node.path)])

    def run_ended(self, ctx: RunContext) -> None:
        """The run's engine stopped: nothing of it stays charged or held."""
        charges.ledger_of(self.store).release(run_key(ctx))


__all__ = ["LOOK", "TaskQuota", "admit_run", "run_key"]
