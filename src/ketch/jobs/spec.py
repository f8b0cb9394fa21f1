"""Typed specs of the kubeflow.org/v1 training jobs, with Kubeflow's field names.

The operator's admission rules (replica types, containers, images, the default
container's name, the Master/Launcher counts, the elastic policy) are checked
at apply time by :mod:`ketch.jobs.validation`; :func:`parse` checks what
Ketch needs to run a job (the same structure, and a command to run locally).

A job's replica specs, run policy and pod templates are the shared ones of
:mod:`ketch.core.workloads` (a parsed :class:`Job` is a
:class:`~ketch.core.workloads.gang.Gang`). Only the fields Ketch acts on are
typed; everything else in a manifest is kept so a manifest written for Kubeflow
parses as is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field

from ketch.core.errors import InvalidSpec
from ketch.core.spec import COMPLETE, SpecModel
from ketch.core.spec import parse as parse_model
from ketch.core.workloads.gang import (
    CleanPodPolicy,
    Gang,
    ReplicaSpec,
    RestartPolicy,
    RunPolicy,
)
from ketch.core.workloads.pods import Container


class RdzvConf(SpecModel):
    key: str
    value: str


class ElasticPolicy(SpecModel):
    minReplicas: int | None = Field(default=None, ge=1)
    maxReplicas: int | None = Field(default=None, ge=1)
    rdzvBackend: str | None = None
    rdzvPort: int | None = None
    rdzvHost: str | None = None
    rdzvId: str | None = None
    rdzvConf: list[RdzvConf] = Field(default_factory=list)
    standalone: bool | None = None
    nProcPerNode: int | None = None
    maxRestarts: int | None = Field(default=None, ge=0)
    metrics: list[dict[str, Any]] = Field(default_factory=list)


class JobSpec(SpecModel):
    """What every kubeflow.org/v1 job spec has. Each kind's spec lists every field the
    training operator's CRD has at its top level; others are unknown fields."""

    model_config = COMPLETE

    runPolicy: RunPolicy = Field(default_factory=RunPolicy)


class PyTorchJobSpec(JobSpec):
    pytorchReplicaSpecs: dict[str, ReplicaSpec]
    elasticPolicy: ElasticPolicy | None = None
    nprocPerNode: str | int | None = None


class TFJobSpec(JobSpec):
    tfReplicaSpecs: dict[str, ReplicaSpec]
    successPolicy: Literal["", "AllWorkers"] | None = None
    enableDynamicWorker: bool = False


class XGBoostJobSpec(JobSpec):
    xgbReplicaSpecs: dict[str, ReplicaSpec]


class MPIJobSpec(JobSpec):
    mpiReplicaSpecs: dict[str, ReplicaSpec]
    slotsPerWorker: int | None = Field(default=None, ge=1)
    mainContainer: str | None = None
    cleanPodPolicy: CleanPodPolicy | None = None  # older MPIJob manifests put it here


class JAXJobSpec(JobSpec):
    jaxReplicaSpecs: dict[str, ReplicaSpec]


class PaddleJobSpec(JobSpec):
    paddleReplicaSpecs: dict[str, ReplicaSpec]
    elasticPolicy: ElasticPolicy | None = None


MXJobMode = Literal["MXTrain", "MXTune"]


class MXJobSpec(JobSpec):
    mxReplicaSpecs: dict[str, ReplicaSpec]
    jobMode: MXJobMode | None = None


@dataclass(frozen=True)
class KindInfo:
    """What differs between the job kinds."""

    kind: str
    model: type[JobSpec]
    replicas_field: str
    replica_types: tuple[str, ...]  # canonical spelling, in start order
    default_port: int
    port_name: str
    default_restart: RestartPolicy
    default_container: str  # the container the operator reads ports and env from


KINDS: dict[str, KindInfo] = {
    info.kind: info
    for info in (
        KindInfo(
            "PyTorchJob",
            PyTorchJobSpec,
            "pytorchReplicaSpecs",
            ("Master", "Worker"),
            23456,
            "pytorchjob-port",
            "OnFailure",
            "pytorch",
        ),
        KindInfo(
            "TFJob",
            TFJobSpec,
            "tfReplicaSpecs",
            ("Chief", "Master", "PS", "Worker", "Evaluator"),
            2222,
            "tfjob-port",
            "Never",
            "tensorflow",
        ),
        KindInfo(
            "XGBoostJob",
            XGBoostJobSpec,
            "xgbReplicaSpecs",
            ("Master", "Worker"),
            9999,
            "xgboostjob-port",
            "Never",
            "xgboost",
        ),
        KindInfo(
            "MPIJob",
            MPIJobSpec,
            "mpiReplicaSpecs",
            ("Launcher", "Worker"),
            0,
            "mpijob-port",
            "Never",
            "mpi",
        ),
        KindInfo(
            "JAXJob",
            JAXJobSpec,
            "jaxReplicaSpecs",
            ("Worker",),
            6666,
            "jaxjob-port",
            "OnFailure",
            "jax",
        ),
        KindInfo(
            "PaddleJob",
            PaddleJobSpec,
            "paddleReplicaSpecs",
            ("Master", "Worker"),
            36543,
            "master",
            "Never",
            "paddle",
        ),
        KindInfo(
            "MXJob",
            MXJobSpec,
            "mxReplicaSpecs",
            ("Scheduler", "Server", "Worker", "TunerTracker", "TunerServer", "Tuner"),
            9091,
            "mxjob-port",
            "Never",
            "mxnet",
        ),
    )
}


@dataclass
class Job(Gang):
    """A parsed job: its kind, spec and replica specs keyed by canonical type."""

    info: KindInfo
    name: str
    namespace: str
    spec: JobSpec
    replicas: dict[str, ReplicaSpec]

    @property
    def kind(self) -> str:
        return self.info.kind

    @property
    def replica_types(self) -> tuple[str, ...]:
        return self.info.replica_types

    @property
    def run_policy(self) -> RunPolicy:
        return self.spec.runPolicy

    def restart_policy(self, rtype: str) -> RestartPolicy:
        return self.replicas[rtype].restartPolicy or self.info.default_restart

    def clean_pod_policy(self) -> CleanPodPolicy:
        policy = self.spec.runPolicy.cleanPodPolicy
        if policy is None and isinstance(self.spec, MPIJobSpec):
            policy = self.spec.cleanPodPolicy
        return policy or "None"

    def container(self, rtype: str) -> Container:
        containers = self.replicas[rtype].template.spec.containers
        return containers[main_container_index(self.info, self.spec, containers)]


#: what an MPIJob worker without a command runs, as the MPI operator does
MPI_WORKER_IDLE = ("sleep", "365d")


def default_container(kind: str) -> str:
    """The name of the container the operator of ``kind`` acts on (``pytorch``, ...)."""
    info = KINDS.get(kind)
    return info.default_container if info is not None else ""


def load(kind: str, spec: Any) -> JobSpec:
    """``spec`` of a ``kind`` job as its typed model; ``InvalidSpec`` names the field."""
    info = KINDS[kind]
    if not isinstance(spec, dict):
        raise InvalidSpec(f"{kind} needs a spec object", field="spec")
    return parse_model(info.model, spec)


def canonical_type(info: KindInfo, key: str) -> str:
    """The canonical spelling of replica type ``key`` (any case); ``InvalidSpec`` if the
    kind has no such type."""
    for rtype in info.replica_types:
        if rtype.lower() == key.lower():
            return rtype
    raise InvalidSpec(
        f"{info.kind} has no replica type {key!r}; supported values: {', '.join(info.replica_types)}",
        field=f"spec.{info.replicas_field}.{key}",
    )


def main_container_index(info: KindInfo, model: JobSpec, containers: list[Container]) -> int:
    """Which of a replica's ``containers`` runs: the operator's default one (an MPIJob's
    ``mainContainer``), else the first."""
    wanted = info.default_container
    if isinstance(model, MPIJobSpec) and model.mainContainer:
        wanted = model.mainContainer
    if not wanted:
        return 0
    for index, container in enumerate(containers):
        if container.name == wanted:
            return index
    return 0


def parse(kind: str, name: str, namespace: str, spec: dict[str, Any]) -> Job:
    """Validate ``spec`` of a ``kind`` job for running it here; ``InvalidSpec`` names the
    offending field. (The operator's admission rules are :mod:`ketch.jobs.validation`'s.)"""
    info = KINDS[kind]
    model = load(kind, spec)
    raw: dict[str, ReplicaSpec] = getattr(model, info.replicas_field)
    replicas: dict[str, ReplicaSpec] = {}
    for key, value in raw.items():
        rtype = canonical_type(info, key)
        where = f"spec.{info.replicas_field}.{key}.template.spec.containers"
        containers = value.template.spec.containers
        if not containers:
            raise InvalidSpec(f"replica type {key} needs at least one container", field=where)
        if kind == "MPIJob" and rtype == "Worker":
            for container in containers:
                if not container.command and not container.args:
                    # the MPI operator's workers only host the ranks mpirun starts
                    # (through the rsh agent here); Kubeflow runs them as a long sleep
                    container.command = list(MPI_WORKER_IDLE)
        main = main_container_index(info, model, containers)
        if not containers[main].command:
            raise InvalidSpec(
                f"replica type {key}: container {containers[main].name or main!r} needs a command "
                "to run locally (images are not run; the command runs on this machine)",
                field=f"{where}[{main}].command",
            )
        replicas[rtype] = value
    if not replicas:
        raise InvalidSpec(
            f"{kind} needs at least one replica spec", field=f"spec.{info.replicas_field}"
        )
    for single in ("Master", "Chief", "Launcher", "Scheduler"):
        if single in replicas and replicas[single].replicas > 1:
            raise InvalidSpec(
                f"{kind} may have at most one {single} replica",
                field=f"spec.{info.replicas_field}.{single}.replicas",
            )
    if kind == "MPIJob" and "Launcher" not in replicas:
        raise InvalidSpec(
            "MPIJob needs a Launcher replica", field=f"spec.{info.replicas_field}.Launcher"
        )
    if isinstance(model, PyTorchJobSpec) and model.elasticPolicy is not None:
        policy = model.elasticPolicy
        if "Worker" not in replicas:
            raise InvalidSpec(
                "must be configured if elastic policy is used",
                field=f"spec.{info.replicas_field}.Worker",
            )
        if policy.minReplicas and policy.maxReplicas and policy.minReplicas > policy.maxReplicas:
            raise InvalidSpec(
                "minReplicas must not exceed maxReplicas", field="spec.elasticPolicy.minReplicas"
            )
    return Job(info, name, namespace, model, replicas)
