"""A pipeline's container tasks as pods (:mod:`ketch.core.store.pods`), as Kubeflow
Pipelines' are on Argo: each task that runs a process is a pod named
``<run id>-<task>`` (the task's path made a name: ``for-loop-2[0].train`` becomes
``for-loop-2-0-train``), owned by its ``PipelineRun``, with KFP's and Argo's labels
(``pipeline/runid``, ``pipelines.kubeflow.org/v2_component``,
``workflows.argoproj.io/workflow``) and the task's path in Argo's
``workflows.argoproj.io/node-name`` annotation. Its one container, ``main`` (Argo's
name for it), runs the task's command; a retried task is the same pod restarted (its
earlier attempt is its ``previous`` log).

A running task's pod cannot be deleted (cancel the run instead); a finished one's
can (it is removed). The pods go with their run.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from ketch.core.backend import ProcessSpec
from ketch.core.store.pods import (
    IMAGE_ANNOTATION,
    ContainerRecord,
    LogRef,
    Owner,
    Phase,
    PodRecord,
    PodStore,
    Terminated,
    new_uid,
)
from ketch.core.timestamps import utcnow
from ketch.pipelines.kinds import PIPELINE_RUN
from ketch.pipelines.resources import pod_resources
from ketch.pipelines.tables import PipelineRunRow
from ketch.pipelines.tasks import Node, RunContext

log = logging.getLogger(__name__)

CONTAINER = "main"
#: seconds between looks at a running task (how far its log has grown)
LOOK = 2.0
_UNSAFE = re.compile(r"[^a-z0-9-]+")


def pod_name(run_id: str, path: str) -> str:
    """The pod of task ``path`` of run ``run_id``: a DNS subdomain."""
    task = _UNSAFE.sub("-", path.lower().replace("]", "")).strip("-") or "task"
    return f"{run_id}-{task}"[:253].rstrip("-")


@dataclass
class TaskPod:
    """One task's pod across its attempts."""

    pods: PodStore
    namespace: str
    run_id: str
    node: Node
    uid: str = field(default_factory=new_uid)
    spec: ProcessSpec | None = None
    image: str = ""
    log_path: str = ""
    log_start: int = 0
    previous_start: int | None = None
    started_at: datetime | None = None
    start_time: datetime | None = None
    attempts: int = 0
    last: Terminated | None = None
    ended: Terminated | None = None
    node_name: str | None = None  # the node its attempt runs on (None: this machine)
    ip: str | None = None

    @property
    def name(self) -> str:
        return pod_name(self.run_id, self.node.path)

    def started(
        self,
        spec: ProcessSpec,
        log_path: str,
        image: str = "",
        log_start: int = 0,
        where: tuple[str | None, str | None] = (None, None),
    ) -> PodRecord:
        """An attempt's process started (a later attempt restarts the pod's container);
        ``image``: the component's (not used: the command runs on this machine);
        ``log_start``: how long the log was before the process started (where a later
        attempt's output begins: the process may have written some by now); ``where``:
        the node and address its process runs at, as its handle says. The pod as it is
        now, for the caller to store (see :class:`TaskPods`)."""
        self.node_name, self.ip = where
        self.image = image
        if self.attempts and self.started_at is not None:
            self.last = self.ended
            self.previous_start = self.log_start
        self.attempts += 1
        self.spec = spec
        self.log_path = log_path
        self.log_start = log_start if self.attempts > 1 else 0
        self.started_at = utcnow()
        self.start_time = self.start_time or self.started_at
        self.ended = None
        return self.to_record()

    def finished(self, code: int) -> PodRecord:
        """The attempt's process ended with ``code``: the pod as it is now, for the
        caller to store."""
        self.ended = Terminated(code, self.started_at, utcnow())
        return self.to_record()

    def record(self) -> None:
        """Store the pod as it is now, in a write of its own."""
        try:
            self.pods.put([self.to_record()])
        except SQLAlchemyError as exc:  # the task runs on: only its pod is not up to date
            log.warning("cannot record the pod of task %s: %s", self.node.path, exc)

    def to_record(self) -> PodRecord:
        ended = self.ended
        running = ended is None
        spec: dict[str, object] = {"name": CONTAINER}
        if self.image:
            spec["image"] = self.image
        if self.spec is not None:
            spec["command"] = list(self.spec.command)
            spec["env"] = [{"name": k, "value": v} for k, v in self.spec.env.items()]
            if self.spec.cwd is not None:
                spec["workingDir"] = str(self.spec.cwd)
            resources = pod_resources(self.spec.resources)
            if resources:  # what its namespace's quota charges it
                spec["resources"] = resources
        container = ContainerRecord(
            name=CONTAINER,
            spec=spec,
            state="running" if running else "terminated",
            started_at=self.started_at,
            ended=ended,
            restarts=max(0, self.attempts - 1),
            last=self.last,
            log=LogRef(self.log_path, self.log_start, self.previous_start)
            if self.log_path
            else None,
        )
        phase: Phase = "Running"
        if ended is not None:
            phase = "Succeeded" if ended.exit_code == 0 else "Failed"
        labels = {
            "pipeline/runid": self.run_id,
            "pipelines.kubeflow.org/v2_component": "true",
            "workflows.argoproj.io/workflow": self.run_id,
        }
        if not running:
            labels["workflows.argoproj.io/completed"] = "true"
        annotations = {"workflows.argoproj.io/node-name": f"{self.run_id}.{self.node.path}"}
        if self.image:
            annotations[IMAGE_ANNOTATION] = (
                f"{self.image}: the local backend runs the task's command on this machine"
            )
        owner = Owner(PIPELINE_RUN.api_version, PIPELINE_RUN.kind, self.run_id, self.run_id)
        return PodRecord(
            namespace=self.namespace,
            name=self.name,
            owner=owner,
            uid=self.uid,
            labels=labels,
            annotations=annotations,
            containers=[container],
            phase=phase,
            restart_policy="Never",
            start_time=self.start_time,
            node=self.node_name,
            ip=self.ip,
            deletion="refuse" if running else "remove",
            refusal=(
                f"pod {self.name} runs task {self.node.path!r} of PipelineRun {self.run_id}: a "
                "running pipeline task is not restarted by deleting its pod; cancel the run "
                f"(POST /apis/{PIPELINE_RUN.api_version}/namespaces/{self.namespace}/"
                f"pipelineruns/{self.run_id}/cancel), or retry it once it has ended"
            )
            if running
            else "",
        )


class TaskPods:
    """Makes the pods of a runner's tasks, stored through ``pods`` (the
    :class:`PodStore` the runs' :class:`~ketch.pipelines.records.Recorder` writes
    them with).

    A task's pod is stored with its task: its start in the write that records the
    task's start (once its process started), its end in the write that records the
    task's end (:attr:`Node.pod`). Only what happens in between is a write of the
    pod's own: how far a long task's log has grown (every :data:`LOOK` seconds), and
    how an attempt that is retried ended.
    """

    def __init__(self, pods: PodStore) -> None:
        self.database = pods.database
        self.pods = pods
        self._namespaces: dict[str, str] = {}

    def pod(self, node: Node, ctx: RunContext) -> TaskPod:
        return TaskPod(self.pods, self._namespace(ctx.run_id), ctx.run_id, node)

    def _namespace(self, run_id: str) -> str:
        found = self._namespaces.get(run_id)
        if found is None:
            with self.database.session(readonly=True) as session:
                found = session.scalar(
                    select(PipelineRunRow.namespace).where(PipelineRunRow.id == run_id)
                )
            found = found or "default"
            self._namespaces[run_id] = found
        return found
