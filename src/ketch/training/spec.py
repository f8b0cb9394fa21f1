"""Typed specs of the kubeflow.org/v1 training jobs, with Kubeflow's field names.

The operator's admission rules (replica types, containers, images, the default
container's name, the Master/Launcher counts, the elastic policy) are checked
at apply time by :mod:`ketch.training.validation`; :func:`parse` checks what
Ketch needs to run a job (the same structure, and a command to run locally).

Only the fields Ketch acts on are typed; everything else in a manifest is kept
(``extra="allow"``) so a manifest written for Kubeflow parses as is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from ketch.core.errors import InvalidSpec

RestartPolicy = Literal["Always", "OnFailure", "Never", "ExitCode"]
CleanPodPolicy = Literal["All", "Running", "None"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


def _as_strings(value: Any) -> Any:
    """YAML's numbers and booleans in a command line, as the text they stand for."""
    if isinstance(value, list):
        return [str(v) for v in value]
    return value


#: a container's ``command`` or ``args``
Strings = Annotated[list[str], BeforeValidator(_as_strings)]


class EnvVar(_Model):
    name: str
    value: str | None = None


class ContainerPort(_Model):
    name: str | None = None
    containerPort: int


class ResourceRequirements(_Model):
    requests: dict[str, str | int | float] = Field(default_factory=dict)
    limits: dict[str, str | int | float] = Field(default_factory=dict)


class Container(_Model):
    name: str = ""
    image: str | None = None
    command: Strings = Field(default_factory=list)
    args: Strings = Field(default_factory=list)
    env: list[EnvVar] = Field(default_factory=list)
    workingDir: str | None = None
    ports: list[ContainerPort] = Field(default_factory=list)
    resources: ResourceRequirements = Field(default_factory=ResourceRequirements)


class PodSpec(_Model):
    containers: list[Container] = Field(default_factory=list)
    restartPolicy: str | None = None


class PodTemplateSpec(_Model):
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: PodSpec = Field(default_factory=PodSpec)


class ReplicaSpec(_Model):
    replicas: int = Field(default=1, ge=0)
    template: PodTemplateSpec = Field(default_factory=PodTemplateSpec)
    restartPolicy: RestartPolicy | None = None


class SchedulingPolicy(_Model):
    minAvailable: int | None = Field(default=None, ge=0)
    queue: str | None = None
    priorityClass: str | None = None
    minResources: dict[str, str | int | float] | None = None
    scheduleTimeoutSeconds: int | None = None


class RunPolicy(_Model):
    cleanPodPolicy: CleanPodPolicy | None = None
    ttlSecondsAfterFinished: int | None = Field(default=None, ge=0)
    activeDeadlineSeconds: int | None = Field(default=None, ge=0)
    backoffLimit: int | None = Field(default=None, ge=0)
    suspend: bool = False
    schedulingPolicy: SchedulingPolicy | None = None
    managedBy: str | None = None


class RdzvConf(_Model):
    key: str
    value: str


class ElasticPolicy(_Model):
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


class _JobSpec(_Model):
    runPolicy: RunPolicy = Field(default_factory=RunPolicy)


class PyTorchJobSpec(_JobSpec):
    pytorchReplicaSpecs: dict[str, ReplicaSpec]
    elasticPolicy: ElasticPolicy | None = None
    nprocPerNode: str | int | None = None


class TFJobSpec(_JobSpec):
    tfReplicaSpecs: dict[str, ReplicaSpec]
    successPolicy: Literal["", "AllWorkers"] | None = None
    enableDynamicWorker: bool = False


class XGBoostJobSpec(_JobSpec):
    xgbReplicaSpecs: dict[str, ReplicaSpec]


class MPIJobSpec(_JobSpec):
    mpiReplicaSpecs: dict[str, ReplicaSpec]
    slotsPerWorker: int | None = Field(default=None, ge=1)
    mainContainer: str | None = None
    cleanPodPolicy: CleanPodPolicy | None = None  # older MPIJob manifests put it here


class JAXJobSpec(_JobSpec):
    jaxReplicaSpecs: dict[str, ReplicaSpec]


class PaddleJobSpec(_JobSpec):
    paddleReplicaSpecs: dict[str, ReplicaSpec]
    elasticPolicy: ElasticPolicy | None = None


MXJobMode = Literal["MXTrain", "MXTune"]


class MXJobSpec(_JobSpec):
    mxReplicaSpecs: dict[str, ReplicaSpec]
    jobMode: MXJobMode | None = None


@dataclass(frozen=True)
class KindInfo:
    """What differs between the job kinds."""

    kind: str
    model: type[_JobSpec]
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
class Job:
    """A parsed job: its kind, spec and replica specs keyed by canonical type."""

    info: KindInfo
    name: str
    namespace: str
    spec: _JobSpec
    replicas: dict[str, ReplicaSpec]

    @property
    def kind(self) -> str:
        return self.info.kind

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

    def total_replicas(self) -> int:
        return sum(r.replicas for r in self.replicas.values())

    def replica_names(self) -> list[tuple[str, int, str]]:
        """``(type, index, name)`` of every replica, named ``<job>-<type>-<index>``."""
        out = []
        for rtype in self.info.replica_types:
            spec = self.replicas.get(rtype)
            if spec is None:
                continue
            for index in range(spec.replicas):
                out.append((rtype, index, f"{self.name}-{rtype.lower()}-{index}"))
        return out

    def container(self, rtype: str) -> Container:
        containers = self.replicas[rtype].template.spec.containers
        return containers[main_container_index(self.info, self.spec, containers)]


#: what an MPIJob worker without a command runs, as the MPI operator does
MPI_WORKER_IDLE = ("sleep", "365d")


def default_container(kind: str) -> str:
    """The name of the container the operator of ``kind`` acts on (``pytorch``, ...)."""
    info = KINDS.get(kind)
    return info.default_container if info is not None else ""


def load(kind: str, spec: Any) -> _JobSpec:
    """``spec`` of a ``kind`` job as its typed model; ``InvalidSpec`` names the field."""
    info = KINDS[kind]
    if not isinstance(spec, dict):
        raise InvalidSpec(f"{kind} needs a spec object", field="spec")
    try:
        return info.model.model_validate(spec)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(["spec", *(str(p) for p in first["loc"])])
        raise InvalidSpec(f"{first['msg']}", field=where) from None


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


def main_container_index(info: KindInfo, model: _JobSpec, containers: list[Container]) -> int:
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
    offending field. (The operator's admission rules are :mod:`ketch.training.validation`'s.)"""
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
