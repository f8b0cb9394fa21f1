"""The job kinds a Katib trial may run on Ketch, and what Katib knows of each.

A trial's ``runSpec`` (an Experiment's ``trialTemplate.trialSpec``) is one of these
kinds, which other capabilities serve; tuning only creates and reads them as
resources. For each kind: the ``apiVersion`` it is served at, the
``successCondition``/``failureCondition`` Katib's webhook defaults to (GJSON paths
on the job's manifest), the ``primaryPodLabels`` it defaults to, and the container
a trial's metrics come from when the template names none.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ketch.core.kinds import Kind

_COMPLETE = 'status.conditions.#(type=="Complete")#|#(status=="True")#'
_SUCCEEDED = 'status.conditions.#(type=="Succeeded")#|#(status=="True")#'
_FAILED = 'status.conditions.#(type=="Failed")#|#(status=="True")#'

KUBEFLOW_PRIMARY_POD_LABELS = {"training.kubeflow.org/job-role": "master"}
TRAINJOB_PRIMARY_POD_LABELS = {
    "jobset.sigs.k8s.io/replicatedjob-name": "node",
    "batch.kubernetes.io/job-completion-index": "0",
}


@dataclass(frozen=True)
class TrialJobKind:
    """One kind of job a trial may run, with Katib's defaults for it."""

    kind: str
    api_version: str
    success_condition: str
    failure_condition: str
    primary_container: str
    primary_pod_labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def served_as(self) -> Kind:
        """The kind as the API serves it (its group and plural: what a count quota,
        ``count/<plural>.<group>``, names it by)."""
        group, _, version = self.api_version.rpartition("/")
        return Kind(self.kind, group, (version,), f"{self.kind.lower()}s")


def _kubeflow(kind: str, container: str) -> TrialJobKind:
    return TrialJobKind(
        kind, "kubeflow.org/v1", _SUCCEEDED, _FAILED, container, KUBEFLOW_PRIMARY_POD_LABELS
    )


#: the job kinds a trial may run, by kind, in the order error messages list them
JOB_KINDS: Mapping[str, TrialJobKind] = {
    job.kind: job
    for job in (
        TrialJobKind("Job", "batch/v1", _COMPLETE, _FAILED, "training-container"),
        _kubeflow("TFJob", "tensorflow"),
        _kubeflow("PyTorchJob", "pytorch"),
        _kubeflow("XGBoostJob", "xgboost"),
        _kubeflow("MPIJob", "mpi"),
        _kubeflow("JAXJob", "jax"),
        _kubeflow("PaddleJob", "paddle"),
        _kubeflow("MXJob", "mxnet"),
        TrialJobKind(
            "TrainJob",
            "trainer.kubeflow.org/v1alpha1",
            _COMPLETE,
            _FAILED,
            "node",
            TRAINJOB_PRIMARY_POD_LABELS,
        ),
    )
}


def primary_container(kind: str) -> str:
    """The container a trial of ``kind`` reads metrics from by default ("" if unknown)."""
    job = JOB_KINDS.get(kind)
    return job.primary_container if job is not None else ""
