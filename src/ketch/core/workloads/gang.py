"""A job run as a gang of replica processes: what to run, and what runs.

A :class:`Gang` is a parsed job: replica types (started in their order), each a
:class:`ReplicaSpec` (a count and a pod template), and a :class:`RunPolicy`
(Kubeflow's: clean-up, TTL, deadline, back-off limit, suspend, gang scheduling).
The kubeflow.org/v1 jobs and Trainer's TrainJob plans are gangs;
:class:`~ketch.core.workloads.controller.GangController` runs them.

While one runs, a :class:`GangRun` holds its :class:`Replica` processes, the ports
they were given (:class:`Addresses`) and the restarts made.
"""

from __future__ import annotations

import abc
import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import Field

from ketch.core.backend import Placement, ProcessHandle, ProcessSpec, Request
from ketch.core.backend.host import LOCAL_HOST, STRATEGIES
from ketch.core.spec import SpecModel
from ketch.core.store.pods import Terminated, new_uid
from ketch.core.workloads.containers import container_request
from ketch.core.workloads.pods import Container, PodTemplateSpec

RestartPolicy = Literal["Always", "OnFailure", "Never", "ExitCode"]
CleanPodPolicy = Literal["All", "Running", "None"]

#: a pod template annotation choosing how a gang's replicas are placed on the nodes
#: of a cluster backend: pack, spread, strict-pack, strict-spread
PLACEMENT_ANNOTATION = "ketch.dev/placement"
HOSTNAME_TOPOLOGY = "kubernetes.io/hostname"

# the states of a replica
RUNNING, SUCCEEDED, FAILED, PENDING = "running", "succeeded", "failed", "pending"
BACKOFF = "backoff"  # failed, waiting out the crash-loop back-off before it starts again


class ReplicaSpec(SpecModel):
    replicas: int = Field(default=1, ge=0)
    template: PodTemplateSpec = Field(default_factory=PodTemplateSpec)
    restartPolicy: RestartPolicy | None = None


class SchedulingPolicy(SpecModel):
    minAvailable: int | None = Field(default=None, ge=0)
    queue: str | None = None
    priorityClass: str | None = None
    minResources: dict[str, str | int | float] | None = None
    scheduleTimeoutSeconds: int | None = None


class RunPolicy(SpecModel):
    cleanPodPolicy: CleanPodPolicy | None = None
    ttlSecondsAfterFinished: int | None = Field(default=None, ge=0)
    activeDeadlineSeconds: int | None = Field(default=None, ge=0)
    backoffLimit: int | None = Field(default=None, ge=0)
    suspend: bool = False
    schedulingPolicy: SchedulingPolicy | None = None
    managedBy: str | None = None


class Gang(abc.ABC):
    """A job to run as a gang of replicas: ``replicas`` by type, named
    ``<name>-<type>-<index>``."""

    name: str
    namespace: str
    replicas: dict[str, ReplicaSpec]

    @property
    @abc.abstractmethod
    def kind(self) -> str:
        """The kind of the object this gang runs for."""

    @property
    @abc.abstractmethod
    def replica_types(self) -> tuple[str, ...]:
        """Every replica type the gang may have, in start order."""

    @property
    @abc.abstractmethod
    def run_policy(self) -> RunPolicy: ...

    @abc.abstractmethod
    def restart_policy(self, rtype: str) -> RestartPolicy:
        """Whether (and when) a failed replica of ``rtype`` starts again."""

    @abc.abstractmethod
    def clean_pod_policy(self) -> CleanPodPolicy:
        """Which replicas stop once the gang finished."""

    @abc.abstractmethod
    def container(self, rtype: str) -> Container:
        """The container replicas of ``rtype`` run."""

    def total_replicas(self) -> int:
        return sum(r.replicas for r in self.replicas.values())

    def replica_names(self) -> list[tuple[str, int, str]]:
        """``(type, index, name)`` of every replica, named ``<job>-<type>-<index>``."""
        out = []
        for rtype in self.replica_types:
            spec = self.replicas.get(rtype)
            if spec is None:
                continue
            for index in range(spec.replicas):
                out.append((rtype, index, f"{self.name}-{rtype.lower()}-{index}"))
        return out

    def request(self) -> Request:
        """What must fit on the machine for the gang to start: every replica's
        request, or those of the smallest ``schedulingPolicy.minAvailable`` replicas
        (the rest start with them). Its members are every replica's request, in
        :meth:`replica_names` order, on its :meth:`node` if it names one, placed
        with :meth:`strategy`."""
        requests = [
            dataclasses.replace(container_request(self.container(rtype)), node=self.node(rtype))
            for rtype, _i, _n in self.replica_names()
        ]
        needed = requests
        policy = self.run_policy.schedulingPolicy
        if policy is not None and policy.minAvailable is not None:
            needed = sorted(requests, key=lambda r: (r.cpu, r.memory))[: policy.minAvailable]
        total = Request()
        for request in needed:
            total = total + request
        return Request.gang(requests, self.strategy(), total=total)

    def node(self, rtype: str) -> str | None:
        """The node replicas of ``rtype`` must run on: their pod template's
        ``spec.nodeName`` (a Ray node ID on a Ray cluster), if it names one."""
        spec = self.replicas.get(rtype)
        name = (spec.template.spec.model_extra or {}).get("nodeName") if spec else None
        return str(name) if name else None

    def strategy(self) -> str:
        """How a backend with several nodes places the replicas: SPREAD when a
        replica's pod template asks its pods to go to different hosts (a
        ``topologySpreadConstraints`` entry over ``kubernetes.io/hostname``, or a
        ``ketch.dev/placement: spread`` annotation), else PACK (``strict-pack`` and
        ``strict-spread`` name the strict forms; another value is ignored)."""
        for spec in self.replicas.values():
            annotations = spec.template.metadata.get("annotations") or {}
            asked = str(annotations.get(PLACEMENT_ANNOTATION) or "").strip()
            if asked.upper().replace("-", "_") in STRATEGIES:
                return asked.upper().replace("-", "_")
            spread = (spec.template.spec.model_extra or {}).get("topologySpreadConstraints")
            if isinstance(spread, list) and any(
                isinstance(c, dict) and c.get("topologyKey") == HOSTNAME_TOPOLOGY for c in spread
            ):
                return "SPREAD"
        return "PACK"

    def placement(self, replica: str) -> Placement:
        """Where replica ``replica`` runs: its member of the gang as admitted under
        ``(kind, namespace, name)``, the key its controller admits it with."""
        names = [name for _t, _i, name in self.replica_names()]
        return Placement((self.kind, self.namespace, self.name), names.index(replica))


@dataclass
class Addresses:
    """Where a gang's replicas are reached: ``ports[replica name]`` on
    ``hosts[replica name]``, the rendezvous port of an elastic gang, and an MPI
    launcher's hostfile and remote shell."""

    def host(self, replica: str) -> str:
        """The address of ``replica``'s node (this machine's when none was given)."""
        return self.hosts.get(replica, LOCAL_HOST)

    ports: dict[str, int] = field(default_factory=dict)
    #: where each replica is reached (its node's address; 127.0.0.1 on one machine)
    hosts: dict[str, str] = field(default_factory=dict)
    rdzv_port: int = 0
    hostfile: Path | None = None
    rsh_agent: Path | None = None
    #: how the rsh agent runs a command on a replica's node, by replica name, where
    #: the backend has several nodes (:meth:`Backend.remote_shell`)
    shells: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class Replica:
    """One replica process of a running gang."""

    rtype: str
    index: int
    name: str
    spec: ProcessSpec
    handle: ProcessHandle | None = None
    state: str = RUNNING
    exit_code: int | None = None
    restarts: int = 0
    stage: int = 0  # replicas of a stage start once every replica of the stages before succeeded
    started_at: float = 0.0  # time.monotonic() when its current run started
    failures: int = 0  # failures in a row, for the back-off
    restart_at: float = 0.0  # time.monotonic() when a replica in BACKOFF starts again
    # its pod (see ketch.core.store.pods): a new uid when it is replaced, where its
    # current and previous runs' output begin in its log, when its run started and ended
    uid: str = field(default_factory=new_uid)
    log_start: int = 0
    previous_log_start: int | None = None
    started_wall: datetime | None = None
    finished_wall: datetime | None = None
    last_run: Terminated | None = None
    pod_restarts: int = 0  # restarts of this pod (a replaced pod starts again at 0)


@dataclass
class GangRun:
    """What runs for one gang: its replicas, the ports they hold, the restarts made."""

    uid: str | None
    replicas: dict[str, Replica] = field(default_factory=dict)
    ports: set[int] = field(default_factory=set)
    restarts: int = 0
    workdir: Path | None = None
    addresses: Addresses | None = None
    gang: Gang | None = None  # the job as last parsed (what its pods are recorded from)
    # pods to remove once (cleanPodPolicy), and those already removed
    pods_to_remove: set[str] = field(default_factory=set)
    pods_removed: set[str] = field(default_factory=set)

    def running(self) -> list[Replica]:
        return [r for r in self.replicas.values() if r.state == RUNNING]

    def pending(self) -> list[Replica]:
        return [r for r in self.replicas.values() if r.state == PENDING]

    def backing_off(self) -> list[Replica]:
        return [r for r in self.replicas.values() if r.state == BACKOFF]
