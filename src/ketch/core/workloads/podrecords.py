"""What the workload controllers (gangs, batch Jobs) record of their processes as
pods (:mod:`ketch.core.store.pods`): a container's spec as it runs, the owner
reference, the labels a pod inherits from its owner, and Katib's metrics collector
for the pods of a trial's job.
"""

from __future__ import annotations

from typing import Any

from ketch.core.backend import ProcessSpec
from ketch.core.resource import Resource
from ketch.core.store.pods import IMAGE_ANNOTATION, ContainerRecord, LogRef, Owner
from ketch.core.workloads.pods import Container

#: Labels of a job that its pods carry too: Katib marks a trial's job with its trial
#: and experiment, and ``KatibClient.get_job_logs`` finds the trial's pods by them.
INHERITED_PREFIXES = ("katib.kubeflow.org/",)
TRIAL_LABEL = "katib.kubeflow.org/trial"
#: The sidecar Katib adds to a trial's pods; its log is the trial's output (what the
#: StdOut collector reads), which ``KatibClient.get_job_logs`` asks for by this name.
KATIB_COLLECTOR = "metrics-logger-and-collector"


def owner_of(resource: Resource) -> Owner:
    """The owner reference of the pods run for ``resource``."""
    meta = resource.metadata
    return Owner(resource.apiVersion, resource.kind, meta.name, meta.uid or "")


def inherited_labels(resource: Resource) -> dict[str, str]:
    """The labels of ``resource`` its pods carry (Katib's trial and experiment)."""
    return {
        k: str(v)
        for k, v in resource.metadata.labels.items()
        if any(k.startswith(prefix) for prefix in INHERITED_PREFIXES)
    }


def container_spec(container: Container, process: ProcessSpec | None = None) -> dict[str, Any]:
    """``container`` as the pod's spec shows it; with ``process``, the command it runs
    (program found as Ketch finds it, with its arguments) and its whole environment
    (the operator's variables included; ``PATH`` only when the container sets it)."""
    spec: dict[str, Any] = container.model_dump(mode="json", by_alias=True, exclude_none=True)
    resources = {k: v for k, v in (spec.pop("resources", None) or {}).items() if v}
    if resources:  # as Kubernetes writes them: no empty requests or limits
        spec["resources"] = resources
    if process is not None:
        spec["command"] = list(process.command)
        spec.pop("args", None)
        own = {e.name for e in container.env}
        spec["env"] = [
            {"name": k, "value": v} for k, v in process.env.items() if k != "PATH" or "PATH" in own
        ]
        if process.cwd is not None:
            spec["workingDir"] = str(process.cwd)
    return spec


def process_log(process: ProcessSpec, start: int, previous: int | None) -> LogRef | None:
    """Where the output of the container that runs ``process`` is: its stdout file
    from ``start`` (the run before from ``previous``); ``None`` when it has none."""
    path = process.stdout_path
    return None if path is None else LogRef(str(path), start, previous)


def image_annotations(containers: list[ContainerRecord]) -> dict[str, str]:
    """The annotation saying the containers' images are not run (none without images)."""
    images = sorted({c.image for c in containers if c.image})
    if not images:
        return {}
    return {
        IMAGE_ANNOTATION: f"{', '.join(images)}: the local backend runs each container's "
        "command on this machine"
    }


def with_trial_collector(
    resource: Resource, containers: list[ContainerRecord]
) -> list[ContainerRecord]:
    """``containers``, plus Katib's metrics collector sidecar when ``resource`` is a
    trial's job: its state is the main container's and its log the main container's
    output, as Katib's collector prints it."""
    if TRIAL_LABEL not in resource.metadata.labels or not containers:
        return containers
    if any(c.name == KATIB_COLLECTOR for c in containers):
        return containers
    main = containers[0]
    sidecar = ContainerRecord(
        name=KATIB_COLLECTOR,
        spec={"name": KATIB_COLLECTOR, "image": ""},
        state=main.state,
        reason=main.reason,
        message=main.message,
        started_at=main.started_at,
        ended=main.ended,
        restarts=main.restarts,
        last=main.last,
        ready=main.ready,
        log=main.log,
    )
    return [*containers, sidecar]
