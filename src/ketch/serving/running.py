"""What runs for an InferenceService in this process: the service (its routers and
revisions), each revision (a predictor or transformer spec, named as KServe names
them: ``NAME-predictor-00001``) and the replicas that run it.

Nothing here starts or stops anything: :mod:`ketch.serving.replicas` does, and the
controller (:mod:`ketch.serving.controller`) holds these records.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ketch.core import config
from ketch.core.backend import ProcessHandle
from ketch.core.controller import Key
from ketch.core.store.pods import new_uid
from ketch.core.timestamps import utcnow
from ketch.core.workloads.pods import ResourceRequirements
from ketch.serving.autoscaler import Autoscaler
from ketch.serving.components import ModelSource
from ketch.serving.router import ComponentRouter
from ketch.serving.upstream import ReplicaAddress

RETRY_BASE = 10.0  # seconds before a revision that failed to start is tried again, doubling
RETRY_CAP = 300.0


@dataclass
class Replica:
    """One ``ketch serve`` process of a revision."""

    name: str
    revision: str
    handle: ProcessHandle
    log_path: Path
    offset: int  # where this replica's output starts in its log
    started: float = field(default_factory=time.monotonic)
    started_wall: datetime = field(default_factory=utcnow)
    uid: str = field(default_factory=new_uid)  # its pod's
    host: str = ""
    port: int = 0
    ready: bool = False
    #: what its router sends it with each request (:mod:`ketch.serving.secret`)
    secret: str = field(default="", repr=False)


@dataclass
class Revision:
    """One component spec, its replicas, its autoscaler and its failures."""

    name: str
    component: str
    source: ModelSource
    replicas: dict[str, Replica] = field(default_factory=dict)
    autoscaler: Autoscaler = field(default_factory=Autoscaler)
    next_index: int = 1
    failed: str | None = None
    #: what each replica asks for (charged to the namespace's quota as it starts)
    resources: ResourceRequirements = field(default_factory=ResourceRequirements)
    #: why no more replicas start now: the namespace's quota has no room for one
    waiting: str | None = None
    ever_ready: bool = False
    attempts: int = 0  # failed starts in a row
    retry_at: float = 0.0  # after a failure, when to try once more

    def fail(self, reason: str) -> None:
        self.failed = reason
        self.attempts += 1
        self.retry_at = time.monotonic() + min(RETRY_BASE * 2 ** (self.attempts - 1), RETRY_CAP)

    def ready_replicas(self) -> list[Replica]:
        return [r for r in self.replicas.values() if r.ready]

    def addresses(self) -> tuple[ReplicaAddress, ...]:
        """Where the ready replicas listen, for the router."""
        return tuple(
            ReplicaAddress(r.name, r.host, r.port, r.secret) for r in self.ready_replicas()
        )


@dataclass
class Service:
    """One InferenceService: its routers, its running revisions, the logs of replicas
    that ended, and the threads still stopping replicas."""

    key: Key
    predictor: ComponentRouter
    uid: str = ""  # the object's metadata.uid: logs are kept per object, not per name
    transformer: ComponentRouter | None = None
    revisions: dict[str, Revision] = field(default_factory=dict)
    logger_spec: dict[tuple[str, str], Any] = field(default_factory=dict)
    exited_logs: dict[str, str] = field(default_factory=dict)
    stopping: list[threading.Thread] = field(default_factory=list)

    def router_of(self, revision: Revision) -> ComponentRouter | None:
        """The router in front of ``revision``'s component."""
        return self.transformer if revision.component == "transformer" else self.predictor

    def routers(self) -> list[ComponentRouter]:
        return [r for r in (self.predictor, self.transformer) if r is not None]


def addresses(revision: Revision | None) -> tuple[ReplicaAddress, ...]:
    """Where ``revision``'s ready replicas listen (none when it does not run)."""
    return () if revision is None else revision.addresses()


def log_dir(namespace: str, name: str, uid: str) -> Path:
    """Where an InferenceService's replica logs go: one folder per object (its uid), so
    a service deleted and created again under its name starts with fresh logs."""
    folder = config.ketch_home() / "logs" / "inferenceservices" / namespace / name
    return folder / uid if uid else folder
