"""A pipeline run as the engine holds it: the run's context, one :class:`Node` per
task instance (container and importer tasks, DAGs, loops and their iterations), the
:class:`Scope` of each DAG being executed, and what executes a leaf task
(:class:`TaskRunner`). Task states are KFP's (:class:`~ketch.core.conditions.RunState`).
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ketch.core.conditions import TERMINAL_RUN_STATES, RunState
from ketch.pipelines.spec import PipelineIR

if TYPE_CHECKING:
    from ketch.core.store.pods import PodRecord

PENDING = RunState.PENDING.value
RUNNING = RunState.RUNNING.value
SUCCEEDED = RunState.SUCCEEDED.value
FAILED = RunState.FAILED.value
SKIPPED = RunState.SKIPPED.value
CANCELED = RunState.CANCELED.value
TERMINAL = TERMINAL_RUN_STATES


@dataclass
class Node:
    """One task instance in a run: a container/importer task, a DAG, a loop or an iteration."""

    path: str
    name: str
    type: str  # container | importer | dag | loop | iteration
    task: dict[str, Any]
    component: dict[str, Any]
    scope: Scope | None
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    state: str = PENDING
    inputs: dict[str, Any] = field(default_factory=dict)  # parameters by name
    input_artifacts: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    output_artifacts: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    error: str | None = None
    cached: bool = False
    cache_key: str | None = None
    attempts: int = 0
    log_path: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    child: Scope | None = None  # for dag / iteration nodes
    iterations: list[Node] = field(default_factory=list)  # for loop nodes
    items: list[Any] = field(default_factory=list)
    next_iteration: int = 0
    execution_id: int | None = None
    reused: bool = False  # finished in an earlier attempt of the same run
    # True while a worker thread owns the node: its state may already be final,
    # but the engine has not recorded it yet, so nothing may act on it.
    inflight: bool = False
    resources: dict[str, Any] = field(default_factory=dict)  # requests and limits, as recorded
    # The engine handed this leaf to a runner that records its start itself, with its
    # process's pod (TaskRunner.records_start): until it has, the write that records
    # the task's end records its start too.
    start_pending: bool = False
    # The task's pod as its process left it, stored with the task's end.
    pod: PodRecord | None = None
    # The task's outputs go into the task cache (cache_key) with the task's end.
    cache_pending: bool = False

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL and not self.inflight

    @property
    def dir_name(self) -> str:
        return self.path.replace("[", "-").replace("]", "").replace("/", os.sep)


@dataclass
class Scope:
    """A DAG being executed: its inputs and the nodes of its tasks."""

    prefix: str
    dag: dict[str, Any]
    params: dict[str, Any]
    artifacts: dict[str, list[dict[str, Any]]]
    owner: Node | None
    nodes: dict[str, Node] = field(default_factory=dict)
    failing: bool = False

    def done(self) -> bool:
        return all(n.finished for n in self.nodes.values())


class TaskRunner:
    """What the engine needs to execute a leaf task (see ``executor.py``).

    ``records_start``: the runner records a leaf's start itself (the recorder's
    ``task_started``, in one write with the pod of the process it starts), so the
    engine does not record it when it hands the leaf over; a leaf that ends without
    a process (a cache hit, an importer, a failure before its process started) has its
    start recorded with its end.
    """

    records_start: bool = False

    def run(self, node: Node, ctx: RunContext) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def cancel_all(self) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def run_ended(self, ctx: RunContext) -> None:
        """The engine of ``ctx``'s run stopped (finished, or interrupted): give back what
        its tasks held (nothing by default)."""


@dataclass
class RunContext:
    run_id: str
    display_name: str
    ir: PipelineIR
    pipeline_root: str
    work_dir: Path
    enable_caching: bool | None
    created_at: datetime
    # the profile namespace its tasks work for (their OS user in multi-user mode)
    namespace: str = "default"
    canceled: threading.Event = field(default_factory=threading.Event)
    # Set when the process running the engine stops (server shutdown): the run is
    # left RUNNING in the store and resumed by the next start.
    interrupted: bool = False
    # From an earlier attempt of the same run (resume after a crash, retry):
    task_ids: dict[str, str] = field(default_factory=dict)
    finished: dict[str, dict[str, Any]] = field(default_factory=dict)


Listener = Callable[[Node], None]
