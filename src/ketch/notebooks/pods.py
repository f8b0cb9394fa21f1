"""A notebook's server as its StatefulSet's pod, ``<name>-0``, as Kubeflow's controller
makes it (:mod:`ketch.core.store.pods`): labels ``statefulset`` and ``notebook-name``
plus the Notebook's and its template's labels (how PodDefault labels reach the pod),
the Notebook's annotations but those whose key holds ``kubectl`` or ``notebook``, what
its PodDefaults add (:mod:`ketch.notebooks.poddefaults`), and one container, the
notebook's, with the command that runs, its environment (never the token; variables
read from Secrets, ConfigMaps or the pod's fields by their reference only), its port
(``notebook-port``) and its log, on the node the server runs on (``spec.nodeName``,
``status.podIP``). A ``DELETE`` of the pod restarts the server, as the StatefulSet
makes the pod again; a stopped notebook has no pod.

The Notebook's ``status`` is read from this pod, as Kubeflow's controller reads it:
its conditions, and the state of the notebook's container (:func:`notebook_status`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ketch.core.backend import ProcessSpec
from ketch.core.resource import Resource
from ketch.core.store.pods import (
    ContainerRecord,
    ContainerState,
    LogRef,
    Phase,
    PodRecord,
    PodStore,
    Terminated,
)
from ketch.core.store.resources import ResourceStore
from ketch.core.workloads.podrecords import container_spec, image_annotations, owner_of
from ketch.notebooks.spec import NotebookContainer

KIND = "Notebook"


def pod_name(name: str) -> str:
    return f"{name}-0"


@dataclass
class PodView:
    """What the notebook's pod shows of its server."""

    phase: Phase = "Pending"
    state: ContainerState = "waiting"
    reason: str | None = None
    message: str | None = None
    #: why the pod is not placed (``Unschedulable``: its server is not installed)
    pod_reason: str | None = None
    pod_message: str | None = None
    started_at: datetime | None = None
    ready: bool = False
    restarts: int = 0
    last: Terminated | None = None
    log: LogRef | None = None
    process: ProcessSpec | None = None
    port: int = 0
    #: the node its server runs on (``spec.nodeName``: the Ray node's ID on a Ray
    #: cluster; ``None``: this machine) and the address it listens on (``status.podIP``)
    node: str | None = None
    ip: str | None = None
    #: what the pod's PodDefaults added to its labels and annotations
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)


def pod_labels(resource: Resource) -> dict[str, str]:
    """The labels of the notebook's pod (what PodDefaults select by): its template's,
    the Notebook's own, ``statefulset`` and ``notebook-name``."""
    meta = resource.metadata
    template_labels = (resource.spec.get("template") or {}).get("metadata", {}).get("labels")
    labels = {str(k): str(v) for k, v in (template_labels or {}).items()}
    labels.update(meta.labels)
    labels.update({"statefulset": meta.name, "notebook-name": meta.name})
    return labels


def pod_annotations(resource: Resource) -> dict[str, str]:
    """The Notebook's annotations its pod gets: those whose key holds neither
    ``kubectl`` nor ``notebook``."""
    return {
        k: v
        for k, v in resource.metadata.annotations.items()
        if "kubectl" not in k and "notebook" not in k
    }


def notebook_pod(
    resource: Resource, container: NotebookContainer, view: PodView, uid: str, since: datetime
) -> PodRecord:
    meta = resource.metadata
    labels = pod_labels(resource)
    labels.update(view.labels)
    spec = container_spec(container, view.process)
    spec.pop("volumeMounts", None)
    if view.process is not None:  # what the environment reads from elsewhere, by reference
        spec["env"] = [
            *spec.get("env", ()),
            *(
                {"name": e.name, "valueFrom": source}
                for e in container.env
                if e.value is None and (source := (e.model_extra or {}).get("valueFrom"))
            ),
        ]
    if view.port:
        spec["ports"] = [{"containerPort": view.port, "name": "notebook-port", "protocol": "TCP"}]
    record = ContainerRecord(
        name=container.name,
        spec=spec,
        state=view.state,
        reason=view.reason,
        message=view.message,
        started_at=view.started_at,
        restarts=view.restarts,
        last=view.last,
        ready=view.ready,
        log=view.log,
    )
    annotations = pod_annotations(resource)
    annotations.update(view.annotations)
    annotations.update(image_annotations([record]))
    return PodRecord(
        namespace=meta.namespace,
        name=pod_name(meta.name),
        owner=owner_of(resource),
        uid=uid,
        labels=labels,
        annotations=annotations,
        containers=[record],
        phase=view.phase,
        reason=view.pod_reason,
        message=view.pod_message,
        restart_policy="Always",
        start_time=since,
        node=view.node,
        ip=view.ip,
    )


def notebook_status(record: PodRecord | None, ready: bool) -> dict[str, Any]:
    """The Notebook's ``status``, from its pod (none: a stopped notebook)."""
    if record is None:
        return {"conditions": [], "readyReplicas": 0, "containerState": {}}
    pod = record.status()
    conditions = [
        {
            k: v
            for k, v in c.items()
            if k in ("type", "status", "lastProbeTime", "lastTransitionTime", "reason", "message")
        }
        for c in pod["conditions"]
    ]
    state = pod["containerStatuses"][0]["state"] if pod["containerStatuses"] else {}
    return {"conditions": conditions, "readyReplicas": 1 if ready else 0, "containerState": state}


class NotebookPods:
    """Keeps each notebook's pod as its server is."""

    def __init__(self, store: ResourceStore) -> None:
        self.pods = PodStore(store.database)
        self._seen: set[tuple[str, str]] = set()

    def deletion_requested(self, resource: Resource) -> bool:
        """Whether a client asked to delete the notebook's pod."""
        wanted = self.pods.deletion_requests(resource.metadata.uid or "")
        return pod_name(resource.metadata.name) in wanted

    def put(self, record: PodRecord) -> None:
        self._first_look(record.namespace, record.owner.name)
        self.pods.put([record])

    def remove(self, namespace: str, name: str) -> None:
        """The notebook has no pod (stopped, deleted, or seen first in this process)."""
        self._seen.add((namespace, name))
        self.pods.remove_owned(KIND, namespace, name)

    def _first_look(self, namespace: str, name: str) -> None:
        # what an earlier run of the server left (its server no longer runs)
        if (namespace, name) not in self._seen:
            self.remove(namespace, name)

    def forget(self, namespace: str, name: str) -> None:
        self._seen.discard((namespace, name))
        self.pods.remove_owned(KIND, namespace, name)
