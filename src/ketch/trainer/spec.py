"""Typed specs of Kubeflow Trainer (``trainer.kubeflow.org/v1alpha1``), with its field names.

``TrainJob`` says what to train (``runtimeRef``, ``trainer``, ``initializer``,
``suspend``, ``activeDeadlineSeconds``, ``managedBy``); a ``TrainingRuntime``
(namespaced) or ``ClusterTrainingRuntime`` says how (``mlPolicy``: nodes and the
framework's policy; ``template``: a JobSet-like list of ``replicatedJobs`` named
``dataset-initializer``, ``model-initializer``, ``launcher`` and ``node``, each a
pod template; ``podGroupPolicy``).

Only the fields Ketch acts on are typed; everything else in a manifest is kept
(``extra="allow"``) so a manifest written for Kubeflow Trainer parses as is.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationError

from ketch.core.errors import InvalidSpec
from ketch.core.spec import SpecModel, invalid_spec
from ketch.core.spec import parse as parse_model
from ketch.core.workloads.pods import EnvVar, PodTemplateSpec, ResourceRequirements, Strings

GROUP = "trainer.kubeflow.org"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
CLUSTER_RUNTIME = "ClusterTrainingRuntime"
NAMESPACED_RUNTIME = "TrainingRuntime"
TRAINJOB_CONTROLLER = "trainer.kubeflow.org/trainjob-controller"
MULTIKUEUE = "kueue.x-k8s.io/multikueue"
ANCESTOR_LABEL = "trainer.kubeflow.org/trainjob-ancestor-step"

# replicated job (and container) names Trainer gives a meaning to
DATASET_INITIALIZER = "dataset-initializer"
MODEL_INITIALIZER = "model-initializer"
LAUNCHER = "launcher"
NODE = "node"
ANCESTOR_TRAINER = "trainer"


# -- TrainJob --------------------------------------------------------------------


class RuntimeRef(SpecModel):
    name: str = Field(min_length=1, max_length=253)
    apiGroup: str | None = None  # trainer.kubeflow.org
    kind: str | None = (
        None  # Kubeflow defaults it to ClusterTrainingRuntime; see runtimes.find_runtime
    )


class _StorageInitializer(SpecModel):
    storageUri: str | None = Field(default=None, max_length=2048)
    env: list[EnvVar] = Field(default_factory=list)
    secretRef: dict[str, Any] | None = None


class DatasetInitializer(_StorageInitializer):
    pass


class ModelInitializer(_StorageInitializer):
    pass


class Initializer(SpecModel):
    dataset: DatasetInitializer | None = None
    model: ModelInitializer | None = None


class Trainer(SpecModel):
    image: str | None = None
    command: Strings = Field(default_factory=list)
    args: Strings = Field(default_factory=list)
    env: list[EnvVar] = Field(default_factory=list)
    numNodes: int | None = Field(default=None, ge=1)
    resourcesPerNode: ResourceRequirements | None = None
    numProcPerNode: int | str | None = None


class TrainJobSpec(SpecModel):
    runtimeRef: RuntimeRef
    initializer: Initializer | None = None
    trainer: Trainer | None = None
    suspend: bool | None = False
    activeDeadlineSeconds: int | None = Field(default=None, ge=1)
    managedBy: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    podSpecOverrides: list[dict[str, Any]] = Field(default_factory=list)
    podTemplateOverrides: list[dict[str, Any]] = Field(default_factory=list)
    runtimePatches: list[dict[str, Any]] = Field(default_factory=list)


# -- TrainingRuntime / ClusterTrainingRuntime --------------------------------------


class TorchElasticPolicy(SpecModel):
    maxRestarts: int | None = Field(default=None, ge=0)
    minNodes: int | None = Field(default=None, ge=1)
    maxNodes: int | None = Field(default=None, ge=1)
    metrics: list[dict[str, Any]] = Field(default_factory=list)


class TorchPolicy(SpecModel):
    numProcPerNode: int | str | None = "auto"
    elasticPolicy: TorchElasticPolicy | None = None


class MPIPolicy(SpecModel):
    numProcPerNode: int | None = Field(default=1, ge=1)
    mpiImplementation: str | None = "OpenMPI"
    sshAuthMountPath: str | None = "/root/.ssh"
    runLauncherAsNode: bool | None = False


class MLPolicy(SpecModel):
    numNodes: int | None = Field(default=None, ge=1)
    torch: TorchPolicy | None = None
    mpi: MPIPolicy | None = None
    jax: dict[str, Any] | None = None
    xgboost: dict[str, Any] | None = None
    flux: dict[str, Any] | None = None


class JobTemplateMeta(SpecModel):
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class BatchJobSpec(SpecModel):
    """The part of a batch/v1 Job spec a replicated job's template carries."""

    parallelism: int | None = Field(default=None, ge=0)
    completions: int | None = Field(default=None, ge=0)
    backoffLimit: int | None = Field(default=None, ge=0)
    template: PodTemplateSpec = Field(default_factory=PodTemplateSpec)


class JobTemplate(SpecModel):
    metadata: JobTemplateMeta = Field(default_factory=JobTemplateMeta)
    spec: BatchJobSpec = Field(default_factory=BatchJobSpec)


class DependsOn(SpecModel):
    name: str
    status: str | None = None


class ReplicatedJob(SpecModel):
    name: str = Field(min_length=1)
    replicas: int = Field(default=1, ge=0)
    dependsOn: list[DependsOn] = Field(default_factory=list)
    template: JobTemplate = Field(default_factory=JobTemplate)

    @property
    def ancestor(self) -> str | None:
        return self.template.metadata.labels.get(ANCESTOR_LABEL)


class JobSetFailurePolicy(SpecModel):
    maxRestarts: int | None = Field(default=None, ge=0)


class JobSetSpec(SpecModel):
    replicatedJobs: list[ReplicatedJob] = Field(default_factory=list)
    failurePolicy: JobSetFailurePolicy | None = None
    successPolicy: dict[str, Any] | None = None


class JobSetTemplate(SpecModel):
    metadata: JobTemplateMeta = Field(default_factory=JobTemplateMeta)
    spec: JobSetSpec = Field(default_factory=JobSetSpec)


class TrainingRuntimeSpec(SpecModel):
    mlPolicy: MLPolicy | None = None
    podGroupPolicy: dict[str, Any] | None = None
    template: JobSetTemplate = Field(default_factory=JobSetTemplate)

    def replicated_job(self, name: str) -> ReplicatedJob | None:
        return next((r for r in self.template.spec.replicatedJobs if r.name == name), None)


# -- parsing ------------------------------------------------------------------------


def parse_trainjob(spec: dict[str, Any]) -> TrainJobSpec:
    """Validate a TrainJob ``spec``; ``InvalidSpec`` names the offending field."""
    model = parse_model(TrainJobSpec, spec)
    ref = model.runtimeRef
    if ref.apiGroup not in (None, "", GROUP):
        raise InvalidSpec(
            f"runtimes of API group {ref.apiGroup!r} are not supported; use {GROUP}",
            field="spec.runtimeRef.apiGroup",
        )
    if ref.kind not in (None, "", CLUSTER_RUNTIME, NAMESPACED_RUNTIME):
        raise InvalidSpec(
            f"runtime kind {ref.kind!r} is not supported; use {CLUSTER_RUNTIME} or {NAMESPACED_RUNTIME}",
            field="spec.runtimeRef.kind",
        )
    if model.managedBy not in (None, "", TRAINJOB_CONTROLLER, MULTIKUEUE):
        raise InvalidSpec(
            f"{model.managedBy!r} is not a known manager; use {TRAINJOB_CONTROLLER} or {MULTIKUEUE}",
            field="spec.managedBy",
        )
    npp = model.trainer.numProcPerNode if model.trainer is not None else None
    _check_nproc(npp, "spec.trainer.numProcPerNode")
    return model


def parse_runtime(spec: dict[str, Any], *, field: str = "spec") -> TrainingRuntimeSpec:
    """Validate a (Cluster)TrainingRuntime ``spec``; ``InvalidSpec`` names the field."""
    try:
        model = TrainingRuntimeSpec.model_validate(spec)
    except ValidationError as exc:
        raise invalid_spec(exc, field) from None
    policy = model.mlPolicy
    if policy is not None:
        chosen = [
            n for n in ("torch", "mpi", "jax", "xgboost", "flux") if getattr(policy, n) is not None
        ]
        if len(chosen) > 1:
            raise InvalidSpec(
                f"only one of the policies may be configured, got {', '.join(chosen)}",
                field=f"{field}.mlPolicy",
            )
        if policy.torch is not None:
            _check_nproc(policy.torch.numProcPerNode, f"{field}.mlPolicy.torch.numProcPerNode")
            if policy.torch.elasticPolicy is not None and policy.numNodes is not None:
                raise InvalidSpec(
                    "numNodes should not be set if torch.elasticPolicy is configured",
                    field=f"{field}.mlPolicy.numNodes",
                )
    names = [r.name for r in model.template.spec.replicatedJobs]
    for index, rjob in enumerate(model.template.spec.replicatedJobs):
        if names.count(rjob.name) > 1:
            raise InvalidSpec(
                f"replicated job names must be unique; {rjob.name!r} appears {names.count(rjob.name)} times",
                field=f"{field}.template.spec.replicatedJobs[{index}].name",
            )
        if not rjob.template.spec.template.spec.containers:
            raise InvalidSpec(
                f"replicated job {rjob.name!r} needs at least one container",
                field=f"{field}.template.spec.replicatedJobs[{index}].template.spec.template.spec.containers",
            )
    return model


def _check_nproc(value: int | str | None, where: str) -> None:
    if value is None:
        return
    if isinstance(value, int):
        if value < 1:
            raise InvalidSpec(f"must be at least 1, got {value}", field=where)
        return
    if value not in ("auto", "cpu", "gpu") and not value.isdigit():
        raise InvalidSpec(
            f"must be an integer or one of auto, cpu, gpu; got {value!r}", field=where
        )


RuntimeKind = Literal["ClusterTrainingRuntime", "TrainingRuntime"]
