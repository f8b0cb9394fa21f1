"""An InferenceService's replicas as pods (:mod:`ketch.core.store.pods`), as KServe's
are: each running ``ketch serve`` process of a predictor or transformer revision is a
pod named after its replica (``NAME-predictor-00001-1``) with KServe's and Knative's
labels (``serving.kserve.io/inferenceservice``, ``component``,
``serving.knative.dev/revision``, ...) and one container, ``kserve-container``, ready
once the model server answers ready. Its ``spec.nodeName`` is the node the replica runs
on (the Ray node's ID on a Ray cluster) and its ``status.podIP`` the address it
listens on.

A replica that exits or is scaled down is replaced by a new one (a new pod), as a
Deployment's ReplicaSet does, so its pod is removed with it. A client's ``DELETE``
of a pod stops that replica, and the controller starts another in its place.
"""

from __future__ import annotations

from typing import Any

from ketch.core.controller import Key
from ketch.core.resource import Resource
from ketch.core.store.pods import ContainerRecord, LogRef, Owner, PodRecord, PodStore
from ketch.core.store.resources import ResourceStore
from ketch.serving.running import Replica, Revision, Service

KIND = "InferenceService"
CONTAINER = "kserve-container"


def replica_pod(owner: Owner, namespace: str, rev: Revision, replica: Replica) -> PodRecord:
    """The pod of ``replica`` of revision ``rev``."""
    isvc = owner.name
    labels = {
        "serving.kserve.io/inferenceservice": isvc,
        "component": rev.component,
        "app": rev.name,
        "serving.knative.dev/revision": rev.name,
        "serving.knative.dev/configuration": f"{isvc}-{rev.component}",
        "serving.knative.dev/service": f"{isvc}-{rev.component}",
    }
    command = ["ketch", "serve", rev.source.uri, "--name", isvc]
    spec: dict[str, Any] = {"name": CONTAINER, "command": command}
    if replica.port:
        spec["ports"] = [{"containerPort": replica.port}]
    resources = {
        part: dict(values)
        for part, values in (("requests", rev.resources.requests), ("limits", rev.resources.limits))
        if values
    }
    if resources:  # what its namespace's quota charges it
        spec["resources"] = resources
    container = ContainerRecord(
        name=CONTAINER,
        spec=spec,
        state="running",
        started_at=replica.started_wall,
        ready=replica.ready,
        log=LogRef(str(replica.log_path), replica.offset),
    )
    return PodRecord(
        namespace=namespace,
        name=replica.name,
        owner=owner,
        uid=replica.uid,
        labels=labels,
        annotations={"serving.kserve.io/storage-uri": rev.source.uri} if rev.source.uri else {},
        containers=[container],
        phase="Running",
        restart_policy="Always",
        start_time=replica.started_wall,
        node=replica.handle.node,
        ip=replica.host or replica.handle.host,
    )


class ServicePods:
    """Keeps the pods of a controller's InferenceServices as their replicas are."""

    def __init__(self, store: ResourceStore) -> None:
        self.pods = PodStore(store.database)
        self._names: dict[Key, set[str]] = {}  # the pods last recorded per service

    def deletion_requests(self, resource: Resource) -> set[str]:
        """The replicas (by pod name) a client asked to delete."""
        return self.pods.deletion_requests(resource.metadata.uid or "")

    def record(self, resource: Resource, svc: Service) -> None:
        """Record the running replicas of ``svc`` as pods; remove the pods of replicas
        that no longer run."""
        meta = resource.metadata
        owner = Owner(resource.apiVersion, resource.kind, meta.name, meta.uid or "")
        records = [
            replica_pod(owner, meta.namespace, rev, replica)
            for rev in svc.revisions.values()
            for replica in rev.replicas.values()
        ]
        names = {r.name for r in records}
        known = self._names.get(svc.key)
        if known is None:  # first look in this process: whatever an earlier run left
            self.pods.remove_owned(KIND, meta.namespace, meta.name)
        else:
            self.pods.remove(meta.namespace, known - names)
        self.pods.put(records)
        self._names[svc.key] = names

    def forget(self, key: Key) -> None:
        """The service is gone (or no longer valid): remove its pods."""
        self._names.pop(key, None)
        self.pods.remove_owned(KIND, key[0], key[1])
