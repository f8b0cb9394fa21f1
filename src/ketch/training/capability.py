"""The training capability: the training operator's kubeflow.org/v1 jobs, Kubernetes'
batch/v1 Job, and Trainer v2's TrainJob with its (Cluster)TrainingRuntimes."""

from __future__ import annotations

from collections.abc import Mapping

from ketch.core.capability import Admission, Capability, Validator
from ketch.core.kinds import Kind
from ketch.training import batch, trainjob
from ketch.training.controller import FACTORIES
from ketch.training.trainer_spec import CLUSTER_RUNTIME, NAMESPACED_RUNTIME
from ketch.training.validation import VALIDATORS

KINDS: tuple[Kind, ...] = (
    Kind("PyTorchJob", "kubeflow.org", ("v1",), "pytorchjobs"),
    Kind("TFJob", "kubeflow.org", ("v1",), "tfjobs"),
    Kind("XGBoostJob", "kubeflow.org", ("v1",), "xgboostjobs"),
    Kind("MPIJob", "kubeflow.org", ("v1",), "mpijobs"),
    Kind("JAXJob", "kubeflow.org", ("v1",), "jaxjobs"),
    Kind("PaddleJob", "kubeflow.org", ("v1",), "paddlejobs"),
    Kind("MXJob", "kubeflow.org", ("v1",), "mxjobs"),
    Kind("Job", "batch", ("v1",), "jobs"),  # Kubernetes' own: Katib's default trial kind
    Kind("TrainJob", "trainer.kubeflow.org", ("v1alpha1",), "trainjobs"),
    Kind("TrainingRuntime", "trainer.kubeflow.org", ("v1alpha1",), "trainingruntimes"),
    Kind(
        "ClusterTrainingRuntime",
        "trainer.kubeflow.org",
        ("v1alpha1",),
        "clustertrainingruntimes",
        namespaced=False,
    ),
)


def _validators(_admission: Admission) -> Mapping[str, Validator]:
    return {
        **VALIDATORS,
        batch.KIND: batch.validate,
        trainjob.KIND: trainjob.validate_trainjob,
        NAMESPACED_RUNTIME: trainjob.validate_runtime,
        CLUSTER_RUNTIME: trainjob.validate_cluster_runtime,
    }


CAPABILITY = Capability(
    name="training",
    kinds=KINDS,
    controllers=(*FACTORIES, batch.FACTORY, trainjob.FACTORY),
    validators=_validators,
)
