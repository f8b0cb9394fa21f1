"""The jobs capability: the training operator's kubeflow.org/v1 jobs and Kubernetes'
batch/v1 Job."""

from __future__ import annotations

from collections.abc import Mapping

from ketch.core.capability import Admission, Capability, Validator
from ketch.core.kinds import LAST_CONDITION, Column, Kind
from ketch.core.services import Service, ServiceContext
from ketch.core.spec import SpecModel, model_schema
from ketch.core.workloads.provenance import WorkloadProvenance
from ketch.jobs import spec
from ketch.jobs.batch import controller as batch
from ketch.jobs.batch.spec import KIND as BATCH_KIND
from ketch.jobs.batch.spec import BatchJobSpec
from ketch.jobs.batch.spec import validate as validate_batch
from ketch.jobs.controller import FACTORIES
from ketch.jobs.validation import VALIDATORS


def _training(kind: str, model: type[SpecModel]) -> Kind:
    """One of the training operator's kinds: its CRD shows the last condition as
    State, then Age. Its spec's schema is ``model``'s."""
    return Kind(
        kind,
        "kubeflow.org",
        ("v1",),
        f"{kind.lower()}s",
        columns=(LAST_CONDITION,),
        categories=("all", "kubeflow"),
        spec_schema=model_schema(model),
    )


KINDS: tuple[Kind, ...] = (
    _training("PyTorchJob", spec.PyTorchJobSpec),
    _training("TFJob", spec.TFJobSpec),
    _training("XGBoostJob", spec.XGBoostJobSpec),
    _training("MPIJob", spec.MPIJobSpec),
    _training("JAXJob", spec.JAXJobSpec),
    _training("PaddleJob", spec.PaddleJobSpec),
    _training("MXJob", spec.MXJobSpec),
    # Kubernetes' own: Katib's default trial kind, with kubectl's columns for it
    Kind(
        "Job",
        "batch",
        ("v1",),
        "jobs",
        columns=(
            Column("Status", ".status.conditions[-1:].type"),
            Column("Completions", ".status.succeeded", "integer"),
        ),
        categories=("all",),
        spec_schema=model_schema(BatchJobSpec),
    ),
)


def _validators(_admission: Admission) -> Mapping[str, Validator]:
    return {**VALIDATORS, BATCH_KIND: validate_batch}


def _provenance(context: ServiceContext) -> Service:
    # what made a file under a job's KETCH_OUTPUT_DIR (the model registry's lineage)
    return WorkloadProvenance(context.store, [kind.kind for kind in KINDS])


CAPABILITY = Capability(
    name="jobs",
    kinds=KINDS,
    services=(_provenance,),
    controllers=(*FACTORIES, batch.FACTORY),
    validators=_validators,
)
