"""How a TrainJob and its runtime become the replicas that run: the plan.

The runtime's ``template.spec.replicatedJobs`` are the steps. The one labelled
``trainer.kubeflow.org/trainjob-ancestor-step: trainer`` (else ``node``, else
``launcher``) carries the trainer: its container (``node``, else ``trainer``,
else the first) takes the TrainJob's ``trainer`` overrides (``image``,
``command``, ``args``, ``env`` merged by name, ``resourcesPerNode``) and runs
``numNodes`` times (``trainer.numNodes``, else ``mlPolicy.numNodes``, else 1).
``dataset-initializer`` and ``model-initializer`` run first (stage 0) when the
TrainJob or the runtime configures them; every other step starts once they
succeeded (and after the steps it ``dependsOn`` with status ``Complete``).

Local differences, each documented where it happens: an MPI runtime's ``node``
replicas (sshd in Kubeflow) run an idle process that holds their node, and the
launcher's remote shell starts each rank on its host's node (this machine, on the
local backend); ``numProcPerNode: auto`` is the GPU count of ``resourcesPerNode``,
else its CPU count, else 1 (torchrun's own ``auto`` would start one process per core).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ketch.core.backend import parse_cpu
from ketch.core.errors import InvalidSpec
from ketch.core.workloads.gang import (
    CleanPodPolicy,
    Gang,
    ReplicaSpec,
    RestartPolicy,
    RunPolicy,
)
from ketch.core.workloads.pods import (
    Container,
    EnvVar,
    PodSpec,
    PodTemplateSpec,
    ResourceRequirements,
)
from ketch.trainer.spec import (
    ANCESTOR_TRAINER,
    DATASET_INITIALIZER,
    LAUNCHER,
    MODEL_INITIALIZER,
    NODE,
    MPIPolicy,
    ReplicatedJob,
    TorchElasticPolicy,
    TrainingRuntimeSpec,
    TrainJobSpec,
)

Framework = Literal["torch", "mpi", "jax", "xgboost", "plain"]
Role = Literal["dataset", "model", "trainer", "other"]
#: what an MPI runtime's ``node`` replicas run (sshd in Kubeflow): they only hold their
#: node for the ranks the launcher's remote shell starts there
MPI_NODE_IDLE = ("sleep", "365d")

DEFAULT_BACKOFF_LIMIT = 6  # batch/v1 Job's default, for steps whose pods restart OnFailure
TRAINER_PORT = 29500  # Kubeflow Trainer's node port; another free one when taken


@dataclass
class TrainJobPlan(Gang):
    """A resolved TrainJob: a :class:`~ketch.core.workloads.gang.Gang` (what the
    shared gang controller runs: one replica type per step, in start order) plus what
    the ML policy needs to set each replica's environment."""

    name: str
    namespace: str
    replicas: dict[str, ReplicaSpec]
    order: tuple[str, ...]  # the steps, in start order
    policy: RunPolicy
    runtime: str = ""  # "ClusterTrainingRuntime/torch-distributed"
    framework: Framework = "plain"
    num_nodes: int = 1
    nproc: int = 1
    trainer_step: str = NODE
    roles: dict[str, Role] = field(default_factory=dict)
    stages: dict[str, int] = field(default_factory=dict)
    elastic: TorchElasticPolicy | None = None
    mpi: MPIPolicy | None = None
    workspace: Path = Path()
    skipped: list[str] = field(default_factory=list)  # steps not run locally
    default_port: int = TRAINER_PORT

    @property
    def kind(self) -> str:
        return "TrainJob"

    @property
    def replica_types(self) -> tuple[str, ...]:
        return self.order

    @property
    def run_policy(self) -> RunPolicy:
        return self.policy

    def restart_policy(self, rtype: str) -> RestartPolicy:
        return self.replicas[rtype].restartPolicy or "Never"

    def clean_pod_policy(self) -> CleanPodPolicy:
        return self.policy.cleanPodPolicy or "None"

    def container(self, rtype: str) -> Container:
        return self.replicas[rtype].template.spec.containers[0]


def framework_of(runtime: TrainingRuntimeSpec) -> Framework:
    policy = runtime.mlPolicy
    if policy is None:
        return "plain"
    frameworks: tuple[Framework, ...] = ("torch", "mpi", "jax", "xgboost")
    return next((name for name in frameworks if getattr(policy, name) is not None), "plain")


def _trainer_job(jobs: list[ReplicatedJob]) -> ReplicatedJob:
    for rjob in jobs:
        if rjob.ancestor == ANCESTOR_TRAINER:
            return rjob
    for name in (NODE, LAUNCHER):
        for rjob in jobs:
            if rjob.name == name:
                return rjob
    return jobs[-1]


def _role(rjob: ReplicatedJob, trainer: ReplicatedJob) -> Role:
    if rjob.name == DATASET_INITIALIZER or rjob.ancestor == DATASET_INITIALIZER:
        return "dataset"
    if rjob.name == MODEL_INITIALIZER or rjob.ancestor == MODEL_INITIALIZER:
        return "model"
    return "trainer" if rjob is trainer else "other"


def _container(rjob: ReplicatedJob, *names: str) -> Container:
    containers = rjob.template.spec.template.spec.containers
    for name in names:
        for container in containers:
            if container.name == name:
                return container
    return containers[0]


def _upsert_env(env: list[EnvVar], extra: list[EnvVar]) -> list[EnvVar]:
    merged = {e.name: e for e in env}
    for var in extra:
        merged[var.name] = var
    return list(merged.values())


def _gpus(resources: ResourceRequirements | None) -> int:
    if resources is None:
        return 0
    for values in (resources.limits, resources.requests):
        for name, value in values.items():
            if "gpu" in name.lower():
                try:
                    return max(0, int(float(str(value))))
                except ValueError:
                    return 0
    return 0


def _cpus(resources: ResourceRequirements | None) -> int:
    if resources is None:
        return 0
    for values in (resources.limits, resources.requests):
        if "cpu" in values:
            return max(1, math.floor(parse_cpu(values["cpu"])))
    return 0


def resolve_nproc(value: int | str | None, resources: ResourceRequirements | None) -> int:
    """``numProcPerNode`` as a number: ``auto`` is the GPUs, else the CPUs, of
    ``resourcesPerNode``, else 1; ``cpu``/``gpu`` count only that resource."""
    if isinstance(value, int):
        return value
    if value is None or value == "auto":
        return _gpus(resources) or _cpus(resources) or 1
    if value == "cpu":
        return _cpus(resources) or 1
    if value == "gpu":
        return _gpus(resources) or 1
    return int(value)


def _num_nodes(job: TrainJobSpec, runtime: TrainingRuntimeSpec) -> int:
    if job.trainer is not None and job.trainer.numNodes is not None:
        return job.trainer.numNodes
    policy = runtime.mlPolicy
    if policy is not None and policy.numNodes is not None:
        return policy.numNodes
    if policy is not None and policy.torch is not None and policy.torch.elasticPolicy is not None:
        return policy.torch.elasticPolicy.minNodes or 1
    return 1


def _trainer_container(job: TrainJobSpec, base: Container) -> Container:
    container = base.model_copy(deep=True)
    trainer = job.trainer
    if trainer is None:
        return container
    if trainer.image:
        container.image = trainer.image
    if trainer.command:
        container.command = list(trainer.command)
        container.args = []  # an image's entrypoint args do not apply to a new command
    if trainer.args:
        container.args = list(trainer.args)
    container.env = _upsert_env(container.env, trainer.env)
    if trainer.resourcesPerNode is not None:
        container.resources = trainer.resourcesPerNode.model_copy(deep=True)
    return container


def _initializer_container(
    job: TrainJobSpec, role: Role, base: Container | None
) -> tuple[Container, str]:
    """The initializer's container with the TrainJob's env and ``STORAGE_URI``."""
    name = DATASET_INITIALIZER if role == "dataset" else MODEL_INITIALIZER
    container = base.model_copy(deep=True) if base is not None else Container(name=name)
    wanted = None
    if job.initializer is not None:
        wanted = job.initializer.dataset if role == "dataset" else job.initializer.model
    uri = ""
    if wanted is not None:
        container.env = _upsert_env(container.env, wanted.env)
        if wanted.storageUri:
            container.env = _upsert_env(
                container.env, [EnvVar(name="STORAGE_URI", value=wanted.storageUri)]
            )
    for var in container.env:
        if var.name == "STORAGE_URI" and var.value:
            uri = var.value
    return container, uri


def plan(
    name: str,
    namespace: str,
    job: TrainJobSpec,
    runtime: TrainingRuntimeSpec,
    runtime_label: str,
    workspace: Path,
) -> TrainJobPlan:
    """Resolve ``job`` against ``runtime`` into the replicas to run."""
    jobs = runtime.template.spec.replicatedJobs
    if not jobs:
        raise InvalidSpec(
            f"{runtime_label} has no replicatedJobs to run; add a 'node' job to its template",
            field="spec.runtimeRef",
        )
    trainer = _trainer_job(jobs)
    framework = framework_of(runtime)
    policy = runtime.mlPolicy
    mpi = policy.mpi if policy is not None else None
    elastic = (
        policy.torch.elasticPolicy if policy is not None and policy.torch is not None else None
    )
    num_nodes = _num_nodes(job, runtime)

    steps: list[tuple[str, Role, Container, int, ReplicatedJob | None]] = []
    skipped: list[str] = []
    roles_seen: set[Role] = set()
    for rjob in jobs:
        role = _role(rjob, trainer)
        if role in ("dataset", "model"):
            container, uri = _initializer_container(job, role, _container(rjob, rjob.name))
            if not uri and not container.command:
                skipped.append(rjob.name)  # nothing to initialize
                continue
            steps.append((rjob.name, role, container, 1, rjob))
            roles_seen.add(role)
            continue
        if role == "trainer":
            container = _trainer_container(job, _container(rjob, NODE, ANCESTOR_TRAINER))
            count = 1 if framework == "mpi" and rjob.name == LAUNCHER else num_nodes
            steps.append((rjob.name, role, container, count, rjob))
            continue
        if framework == "mpi" and rjob.name == NODE:
            # sshd in Kubeflow, hosting the ranks mpirun starts; here an idle process
            # holds each node's place (and resources) for the launcher's remote shell
            hosts = num_nodes - (1 if mpi is not None and mpi.runLauncherAsNode else 0)
            if hosts > 0:
                idle = _container(rjob, NODE).model_copy(
                    update={"command": list(MPI_NODE_IDLE), "args": []}
                )
                steps.append((rjob.name, "other", idle, hosts, rjob))
            continue
        parallel = rjob.template.spec.parallelism or 1
        steps.append((rjob.name, role, _container(rjob, NODE), rjob.replicas * parallel, rjob))
    extra: list[tuple[str, Role, Container, int, ReplicatedJob | None]] = []
    initializers: tuple[tuple[Role, str], ...] = (
        ("dataset", DATASET_INITIALIZER),
        ("model", MODEL_INITIALIZER),
    )
    for role, step_name in initializers:
        if role in roles_seen or job.initializer is None:
            continue
        wanted = job.initializer.dataset if role == "dataset" else job.initializer.model
        if wanted is None or not wanted.storageUri:
            continue
        container, _uri = _initializer_container(job, role, None)
        extra.append((step_name, role, container, 1, None))  # Ketch's own initializer
    steps = extra + steps

    stages = _stages(steps)
    replicas: dict[str, ReplicaSpec] = {}
    roles: dict[str, Role] = {}
    backoff: int | None = None
    for step_name, role, container, count, step_job in steps:
        if not container.command and role == "trainer":
            raise InvalidSpec(
                f"no command to run: neither the TrainJob's trainer nor {runtime_label}'s "
                f"{step_name!r} container has one (images are not run; the command runs on this machine)",
                field="spec.trainer.command",
            )
        pod = step_job.template.spec.template if step_job is not None else PodTemplateSpec()
        restart: RestartPolicy = "OnFailure" if pod.spec.restartPolicy == "OnFailure" else "Never"
        if role == "trainer" and restart == "OnFailure":
            limit = step_job.template.spec.backoffLimit if step_job is not None else None
            backoff = DEFAULT_BACKOFF_LIMIT if limit is None else limit
        replicas[step_name] = ReplicaSpec(
            replicas=count,
            template=PodTemplateSpec(metadata=pod.metadata, spec=PodSpec(containers=[container])),
            restartPolicy=restart,
        )
        roles[step_name] = role
    order = tuple(s[0] for s in steps)
    run_policy = RunPolicy(
        suspend=bool(job.suspend),
        activeDeadlineSeconds=job.activeDeadlineSeconds,
        backoffLimit=backoff,
        cleanPodPolicy="All",
    )
    trainer_container = (
        replicas[trainer.name].template.spec.containers[0] if trainer.name in replicas else None
    )
    resources = trainer_container.resources if trainer_container is not None else None
    if framework == "torch":
        assert policy is not None and policy.torch is not None
        wanted_nproc = job.trainer.numProcPerNode if job.trainer is not None else None
        nproc = resolve_nproc(
            wanted_nproc if wanted_nproc is not None else policy.torch.numProcPerNode, resources
        )
    elif framework == "mpi":
        wanted_nproc = job.trainer.numProcPerNode if job.trainer is not None else None
        if isinstance(wanted_nproc, str) and not wanted_nproc.isdigit():
            raise InvalidSpec(
                f"an MPI runtime takes a number of slots per node, not {wanted_nproc!r}",
                field="spec.trainer.numProcPerNode",
            )
        nproc = (
            int(wanted_nproc)
            if wanted_nproc is not None
            else (mpi.numProcPerNode if mpi else None) or 1
        )
    elif framework == "xgboost":
        nproc = _gpus(resources) or 1
    else:
        nproc = 1
    return TrainJobPlan(
        name=name,
        namespace=namespace,
        replicas=replicas,
        order=order,
        policy=run_policy,
        runtime=runtime_label,
        framework=framework,
        num_nodes=num_nodes,
        nproc=nproc,
        trainer_step=trainer.name,
        roles=roles,
        stages=stages,
        elastic=elastic,
        mpi=mpi,
        workspace=workspace,
        skipped=skipped,
    )


def _stages(steps: list[tuple[str, Role, Container, int, ReplicatedJob | None]]) -> dict[str, int]:
    """Initializers at stage 0; every other step after them and after the steps it
    ``dependsOn`` to ``Complete`` (``Ready`` dependencies start together here)."""
    names = {s[0] for s in steps}
    has_init = any(role in ("dataset", "model") for _n, role, _c, _k, _r in steps)
    deps: dict[str, list[str]] = {}
    for step_name, _role, _c, _k, rjob in steps:
        wanted = (
            []
            if rjob is None
            else [
                d.name
                for d in rjob.dependsOn
                if d.name in names and (d.status or "Complete") == "Complete"
            ]
        )
        deps[step_name] = wanted
    roles = {s[0]: s[1] for s in steps}
    stages: dict[str, int] = {}

    def stage(step_name: str, seen: frozenset[str]) -> int:
        if step_name in stages:
            return stages[step_name]
        if step_name in seen:
            raise InvalidSpec(
                f"replicated job {step_name!r} depends on itself", field="spec.runtimeRef"
            )
        base = 0 if roles[step_name] in ("dataset", "model") or not has_init else 1
        after = [stage(d, seen | {step_name}) + 1 for d in deps[step_name]]
        stages[step_name] = max([base, *after])
        return stages[step_name]

    for step_name in names:
        stage(step_name, frozenset())
    return stages
