"""The jobs capability: the training operator's kubeflow.org/v1 jobs and Kubernetes'
batch/v1 Job."""

from __future__ import annotations

from collections.abc import Mapping

from ketch.core.capability import Admission, Capability, Validator
from ketch.core.kinds import Kind
from ketch.jobs.batch import controller as batch
from ketch.jobs.batch.spec import KIND as BATCH_KIND
from ketch.jobs.batch.spec import validate as validate_batch
from ketch.jobs.controller import FACTORIES
from ketch.jobs.validation import VALIDATORS

KINDS: tuple[Kind, ...] = (
    Kind("PyTorchJob", "kubeflow.org", ("v1",), "pytorchjobs"),
    Kind("TFJob", "kubeflow.org", ("v1",), "tfjobs"),
    Kind("XGBoostJob", "kubeflow.org", ("v1",), "xgboostjobs"),
    Kind("MPIJob", "kubeflow.org", ("v1",), "mpijobs"),
    Kind("JAXJob", "kubeflow.org", ("v1",), "jaxjobs"),
    Kind("PaddleJob", "kubeflow.org", ("v1",), "paddlejobs"),
    Kind("MXJob", "kubeflow.org", ("v1",), "mxjobs"),
    Kind("Job", "batch", ("v1",), "jobs"),  # Kubernetes' own: Katib's default trial kind
)


def _validators(_admission: Admission) -> Mapping[str, Validator]:
    return {**VALIDATORS, BATCH_KIND: validate_batch}


CAPABILITY = Capability(
    name="jobs",
    kinds=KINDS,
    controllers=(*FACTORIES, batch.FACTORY),
    validators=_validators,
)
