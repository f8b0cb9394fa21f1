"""The core group's ``Pod`` (``/api/v1/namespaces/{ns}/pods``, ``/api/v1/pods``): what
runs for Ketch's objects, read-only.

The capabilities record every process they run as a pod in the ``pods`` table
(:mod:`ketch.core.store.pods`): a job's replicas (``<job>-<type>-<index>``, with the
training operator's labels), a batch Job's pods, a TrainJob's nodes (named and
labelled as JobSet's), an InferenceService's replicas and a pipeline's tasks. The
server serves that table through the generic resource routes (list, read, watch, a
Table with kubectl's columns: NAME READY STATUS RESTARTS AGE) and
``.../pods/{name}/log`` (:mod:`ketch.server.pod_logs`). Every write to a pod takes
the store's revision and is journaled, so a pod watch (``kubectl get pods -w``)
resumes from a resourceVersion exactly, through the same watch code as resources
(:mod:`ketch.server.watch`).

Pods cannot be created, changed or patched. ``DELETE`` does what the pod's owner
does with a deleted pod: a training replica is started again as a new pod of the
same name, a batch Job's pod counts as failed and another takes its place, an
InferenceService's replica is replaced; a finished pod is removed; a running
pipeline task's pod is refused (cancel the run). The server marks the pod, wakes its
owner's controller and answers once the controller has replaced or removed it (or
after :data:`REPLACE_WAIT` seconds), so ``kubectl delete pod`` sees the pod gone
as soon as it answers. A pod whose owner is gone (deleted while nothing ran its
controller) is removed by :class:`PodSweeper`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from ketch.core.access import KUBERNETES, rule
from ketch.core.capability import Capability
from ketch.core.errors import InvalidSpec, KetchError, NotFound
from ketch.core.kinds import Column, Kind
from ketch.core.resource import Resource, validate_name, validate_namespace
from ketch.core.services import ServiceContext
from ketch.core.sources import ApplyResult, Check, Manifest, MethodNotAllowed, Page, Source
from ketch.core.store.pods import PodStore
from ketch.core.store.resources import Changes, ResourceStore
from ketch.core.store.selectors import LabelSelector
from ketch.server.errors import STATUS_RESPONSES
from ketch.server.state import ApiState, api_state

log = logging.getLogger(__name__)
router = APIRouter(tags=["pods"], responses=STATUS_RESPONSES)
State = Annotated[ApiState, Depends(api_state)]

#: seconds between looks for pods whose owner is gone
SWEEP_EVERY = 60.0
#: how long a ``DELETE`` waits for the owner's controller to replace or remove the pod
REPLACE_WAIT = 15.0
_READ_ONLY = (
    "pods are made by Ketch as it runs its objects' processes: create, change or delete "
    "the object that owns them (a job, an InferenceService, a pipeline run) instead"
)


def _string(description: str) -> dict[str, Any]:
    return {"type": "string", "description": description}


def pod_schema() -> dict[str, Any]:
    """A Pod's top-level fields, as far as Ketch fills them."""
    terminated = {
        "type": "object",
        "properties": {
            "exitCode": {"type": "integer"},
            "signal": {"type": "integer"},
            "reason": {"type": "string"},
            "message": {"type": "string"},
            "startedAt": {"type": "string", "format": "date-time"},
            "finishedAt": {"type": "string", "format": "date-time"},
        },
    }
    state = {
        "type": "object",
        "properties": {
            "waiting": {
                "type": "object",
                "properties": {"reason": {"type": "string"}, "message": {"type": "string"}},
            },
            "running": {
                "type": "object",
                "properties": {"startedAt": {"type": "string", "format": "date-time"}},
            },
            "terminated": terminated,
        },
    }
    return {
        "spec": {
            "type": "object",
            "description": "What the pod runs: its containers, as its owner's template "
            "has them (each container's command runs as a process on this machine; "
            "images are not used).",
            "properties": {
                "containers": {
                    "type": "array",
                    "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                },
                "restartPolicy": _string("Always, OnFailure or Never."),
                "nodeName": _string("The host the pod runs on."),
                "schedulerName": _string("ketch."),
            },
        },
        "status": {
            "type": "object",
            "description": "What the pod is doing.",
            "properties": {
                "phase": _string("Pending, Running, Succeeded or Failed."),
                "startTime": {"type": "string", "format": "date-time"},
                "podIP": _string("Where the pod's processes listen."),
                "hostIP": _string("The host's address."),
                "containerStatuses": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "name": {"type": "string"},
                            "image": {"type": "string"},
                            "ready": {"type": "boolean"},
                            "started": {"type": "boolean"},
                            "restartCount": {"type": "integer"},
                            "state": state,
                            "lastState": state,
                        },
                    },
                },
                "conditions": {
                    "type": "array",
                    "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                },
            },
        },
    }


def pod_status_text(pod: dict[str, Any]) -> str:
    """The STATUS column of ``kubectl get pods``: the phase, or what a container waits
    for or ended with (``CrashLoopBackOff``, ``Completed``, ``Error``), or
    ``Terminating``."""
    status = pod.get("status") or {}
    reason = str(status.get("reason") or status.get("phase") or "Unknown")
    running = False
    for container in reversed(status.get("containerStatuses") or []):
        state = container.get("state") or {}
        waiting, terminated = state.get("waiting"), state.get("terminated")
        if waiting and waiting.get("reason"):
            reason = str(waiting["reason"])
        elif terminated and terminated.get("reason"):
            reason = str(terminated["reason"])
        elif terminated:
            signal = terminated.get("signal")
            reason = f"Signal:{signal}" if signal else f"ExitCode:{terminated.get('exitCode')}"
        elif container.get("ready") and state.get("running"):
            running = True
    if reason == "Completed" and running:
        reason = "Running"
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        reason = "Terminating"
    return reason


def pod_view(pod: dict[str, Any]) -> dict[str, Any]:
    """What a pod's Table row reads: READY (ready/all containers), STATUS, RESTARTS."""
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    ready = sum(1 for s in statuses if s.get("ready"))
    restarts = sum(int(s.get("restartCount") or 0) for s in statuses)
    return {
        "metadata": pod.get("metadata") or {},
        "ready": f"{ready}/{len(statuses)}",
        "statusText": pod_status_text(pod),
        "restarts": str(restarts),
        "status": pod.get("status") or {},
        "spec": pod.get("spec") or {},
    }


POD = Kind(
    kind="Pod",
    group="",
    versions=("v1",),
    plural="pods",
    short_names=("po",),
    columns=(
        Column("Ready", ".ready", description="Ready containers / all containers"),
        Column("Status", ".statusText", description="The phase, or why a container waits"),
        Column("Restarts", ".restarts", description="Restarts of the pod's containers"),
    ),
    categories=("all",),
    verbs=("delete", "get", "list", "watch"),
    subresources=(),
    object_schema=pod_schema,
    table_view=pod_view,
)


class PodSource:
    """Serves the ``pods`` table to the generic resource routes. Pods' writes take the
    store's revision and are journaled (:mod:`ketch.core.store.pods`), so this is a
    :class:`~ketch.core.sources.JournaledSource`: a list answers the revision it was
    read at, and a watch reads the journal, as a resource's does."""

    def __init__(self, store: ResourceStore) -> None:
        self.store = store
        self.pods = PodStore(store.database)

    def get(self, kind: Kind, namespace: str, name: str) -> Manifest:
        return self.pods.get(namespace, name)

    def list(
        self,
        kind: Kind,
        namespace: str | None,
        *,
        label_selector: str | None,
        limit: int | None,
        continue_token: str | None,
    ) -> Page:
        page = self.pods.list(
            namespace, label_selector=label_selector, limit=limit, continue_token=continue_token
        )
        return Page(page.items, page.continue_token, page.resource_version)

    def create(self, kind: Kind, resource: Resource) -> Manifest:
        raise MethodNotAllowed(_READ_ONLY)

    def apply(self, kind: Kind, resource: Resource) -> tuple[Manifest, ApplyResult]:
        raise MethodNotAllowed(_READ_ONLY)

    def patch(
        self, kind: Kind, namespace: str, name: str, patch: Manifest, check: Check | None = None
    ) -> Manifest:
        raise MethodNotAllowed(_READ_ONLY)

    def put_status(
        self, kind: Kind, namespace: str, name: str, status: Manifest, resource_version: str | None
    ) -> Manifest:
        raise MethodNotAllowed(_READ_ONLY)

    def delete(self, kind: Kind, namespace: str, name: str) -> Manifest:
        """Mark the pod for its owner's controller, which acts at its next pass
        (:func:`delete_pod`, the route, also wakes it and waits for it)."""
        manifest, _owner = self.pods.request_deletion(namespace, name)
        return manifest

    def default_name(self, kind: Kind, manifest: Manifest) -> str | None:
        return None

    def versions(
        self, kind: Kind, namespace: str | None, selector: LabelSelector
    ) -> dict[str, str]:
        return self.pods.versions(namespace, selector)

    def fetch(self, kind: Kind, uids: Iterable[str]) -> dict[str, Manifest]:
        return self.pods.fetch(uids)

    # -- the change journal (watches) ----------------------------------------------

    def revision(self) -> int:
        return self.store.revision()

    def changes(self, kind: Kind, namespace: str | None, after: int) -> Changes:
        return self.store.changes(after, kind=kind.kind, namespace=namespace)

    def previous(self, kind: Kind, uid: str, before: int) -> Manifest | None:
        return self.store.previous(kind.kind, uid, before)


class PodSweeper:
    """Removes the pods of owners that no longer exist (deleted while no controller
    of theirs ran), when the server starts and every :data:`SWEEP_EVERY` seconds.
    Owners served from a source of their own (pipeline runs) remove their pods
    themselves when they are deleted."""

    def __init__(self, context: ServiceContext, elsewhere: set[str]) -> None:
        self.store = context.store
        self.pods = PodStore(context.database)
        self.elsewhere = elsewhere
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.sweep()
        self._thread = threading.Thread(target=self._loop, name="ketch-pod-sweeper", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _loop(self) -> None:
        while not self._stop.wait(SWEEP_EVERY):
            try:
                self.sweep()
            except KetchError as exc:
                log.warning("looking for pods whose owner is gone failed: %s", exc)

    def sweep(self) -> int:
        """Remove the pods whose owner is gone; how many owners' pods were removed."""
        gone: list[str] = []
        for owner in self.pods.owners():
            if owner.kind in self.elsewhere:
                continue
            try:
                found = self.store.get(owner.kind, owner.namespace, owner.name)
            except NotFound:
                gone.append(owner.uid)
                continue
            if found.metadata.uid != owner.uid:
                gone.append(owner.uid)
        if gone:
            self.pods.remove_owner_uids(gone)
        return len(gone)


def _gone_or_replaced(pods: PodStore, namespace: str, name: str, uid: str) -> bool:
    try:
        return str(pods.get(namespace, name)["metadata"]["uid"]) != uid
    except NotFound:
        return True


@router.delete(
    "/api/v1/namespaces/{namespace}/pods/{name}",
    summary="Delete a pod: its owner replaces it (a training replica starts again)",
)
@rule(KUBERNETES)
async def delete_pod(namespace: str, name: str, request: Request, state: State) -> Manifest:
    namespace = validate_namespace(namespace, field="namespace")
    name = validate_name(name, field="name")
    dry = request.query_params.getlist("dryRun")
    if any(value != "All" for value in dry):
        raise InvalidSpec("the only dryRun value is All", field="dryRun")
    pods = PodStore(state.database)
    manifest, owner = await run_in_threadpool(
        lambda: pods.request_deletion(
            namespace, name, owner_acts=state.controllers is not None, dry_run=bool(dry)
        )
    )
    if owner is None or state.controllers is None:
        return manifest
    state.controllers.enqueue(owner.kind, namespace, owner.name)
    uid = str(manifest["metadata"]["uid"])
    deadline = time.monotonic() + REPLACE_WAIT
    while time.monotonic() < deadline and not state.stopping.is_set():
        if await run_in_threadpool(_gone_or_replaced, pods, namespace, name, uid):
            break
        await asyncio.sleep(0.05)
    return manifest


def pods_capability(capabilities: Sequence[Capability]) -> Capability:
    """The ``Pod`` kind, its source, its log route, the relay that wakes a deleted
    pod's owner and the sweeper of pods whose owner is gone, for an app serving
    ``capabilities``."""
    elsewhere = {kind for c in capabilities for kind in c.sources}

    def source(context: ServiceContext) -> Source:
        return PodSource(context.store)

    def sweeper(context: ServiceContext) -> PodSweeper:
        return PodSweeper(context, elsewhere)

    def logs_router() -> APIRouter:
        from ketch.server import pod_logs

        return pod_logs.router

    return Capability(
        name="pods",
        kinds=(POD,),
        routers=(lambda: router, logs_router),
        services=(sweeper,),
        sources={POD.kind: source},
    )
