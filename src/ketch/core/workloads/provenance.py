"""What produced a file a training job wrote: :class:`~ketch.core.provenance.Provenance`
for the jobs Ketch runs (PyTorchJob and the training operator's other kinds, batch
Jobs, TrainJobs).

Each replica gets ``KETCH_OUTPUT_DIR``, a folder of its job's own under
``KETCH_HOME/logs/training/<namespace>/<kind>/<name>/<uid>/outputs`` (see
:func:`~ketch.core.workloads.processes.object_dir`). A URI inside it names the job;
when the job is a Katib trial's (labelled with it, or owned by it), the trial and the
parameters it was assigned too, as the model registry records for the models
registered from it.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ketch.core import config
from ketch.core.errors import NotFound
from ketch.core.provenance import Origin, uri_forms
from ketch.core.store.resources import ResourceStore

OUTPUT_ENV = "KETCH_OUTPUT_DIR"
#: Katib's labels on a trial's job and on the trial
TRIAL_LABEL = "katib.kubeflow.org/trial"
EXPERIMENT_LABEL = "katib.kubeflow.org/experiment"
OUTPUTS = "outputs"


def outputs_dir(workdir: Path) -> Path:
    """The folder a job's replicas write their outputs to (made when asked for)."""
    folder = workdir / OUTPUTS
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class WorkloadProvenance:
    """What made a file under a job's outputs (a service with nothing to run)."""

    def __init__(self, store: ResourceStore, kinds: Iterable[str]) -> None:
        self.store = store
        self.kinds = {kind.lower(): kind for kind in kinds}

    def start(self) -> None:
        return None

    def stop(self) -> None:
        return None

    def origin(self, uri: str) -> Origin | None:
        root = (config.logs_dir() / "training").resolve()
        for form in uri_forms(uri):
            if not form.startswith("/"):
                continue
            path = Path(form).resolve()
            if not path.is_relative_to(root):
                continue
            parts = path.relative_to(root).parts
            # <namespace>/<kind>/<name>/<uid>/outputs/...
            if len(parts) < 5 or parts[4] != OUTPUTS or parts[1] not in self.kinds:
                continue
            return self._origin(self.kinds[parts[1]], parts[0], parts[2], parts[3])
        return None

    def _assigned(self, namespace: str, name: str, detail: dict[str, Any]) -> dict[str, Any]:
        """The parameters Katib assigned trial ``name`` (and its experiment, into
        ``detail``)."""
        try:
            trial = self.store.get("Trial", namespace, name)
        except NotFound:
            return {}
        experiment = trial.metadata.labels.get(EXPERIMENT_LABEL)
        if experiment:
            detail["experiment"] = experiment
        return {
            str(a.get("name")): a.get("value")
            for a in trial.spec.get("parameterAssignments") or ()
            if isinstance(a, dict)
        }

    def _origin(self, kind: str, namespace: str, name: str, uid: str) -> Origin:
        parameters: dict[str, Any] = {}
        detail: dict[str, Any] = {"uid": uid}
        try:
            job = self.store.get(kind, namespace, name)
        except NotFound:  # the job is gone: what the path says is all there is
            job = None
        if job is not None:
            conditions = job.status.get("conditions") or []
            if conditions:
                detail["state"] = conditions[-1].get("type")
            trial_name = job.metadata.labels.get(TRIAL_LABEL) or next(
                (
                    str(o.get("name"))
                    for o in job.metadata.ownerReferences or ()
                    if o.get("kind") == "Trial"
                ),
                None,
            )
            if trial_name:
                detail["trial"] = trial_name
                parameters = self._assigned(namespace, trial_name, detail)
        return Origin(
            kind=kind,
            namespace=namespace,
            name=name,
            parameters=parameters,
            detail=detail,
        )
