"""What the Jupyter web app shows of a Notebook: its status as one of the web app's
phases with a message (:func:`processed_status`), and the fields of its row
(:func:`notebook_summary`), as Kubeflow's web app makes them from the Notebook.

The phases are the web app's: ``ready``, ``waiting``, ``warning``, ``stopped``,
``terminating`` (and ``error``, ``uninitialized``, ``unavailable``, which its frontend
knows). They are decided in this order:

1. ``kubeflow-resource-stopped`` is set: ``stopped`` once no server is ready,
   ``waiting`` while it stops.
2. ``readyReplicas`` is 1: ``ready``.
3. No ``containerState`` and no conditions yet, less than 10 s after creation:
   ``waiting``.
4. The container waits: ``waiting`` while it is being created, else ``warning`` with
   the reason and message (a crash loop's back-off).
5. A pod condition with a reason (``Unschedulable``: the server's program is not
   installed): ``warning`` with it.
6. The container runs but the server does not answer yet: ``waiting`` (Kubeflow's web
   app says nothing of this case; Ketch's server is starting).
7. The newest ``Warning`` event of the notebook: ``warning`` with its message.
8. Otherwise ``warning``, saying nothing is known.

The same functions give the Notebook's printer columns (:func:`table_view`) and the
CLI's rows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from ketch.core.kinds import Column
from ketch.core.timestamps import parse_time, utcnow
from ketch.notebooks.culling import LAST_ACTIVITY
from ketch.notebooks.spec import SERVER_TYPE, STOPPED

READY = "ready"
WAITING = "waiting"
WARNING = "warning"
ERROR = "error"
UNINITIALIZED = "uninitialized"
UNAVAILABLE = "unavailable"
TERMINATING = "terminating"
STOPPED_PHASE = "stopped"

#: a container waiting for one of these is on its way to run
_STARTING = frozenset({"ContainerCreating", "PodInitializing"})
#: how long a notebook without any status is taken to be waiting for its controller
_FRESH_SECONDS = 10.0

Events = Callable[[], Sequence[Mapping[str, Any]]]


def _status(phase: str, message: str) -> dict[str, str]:
    return {"phase": phase, "message": message, "state": ""}


def _age_seconds(metadata: Mapping[str, Any], now: datetime) -> float | None:
    created = metadata.get("creationTimestamp")
    if not created:
        return None
    try:
        return (now - parse_time(str(created))).total_seconds()
    except ValueError:
        return None


def processed_status(
    notebook: Mapping[str, Any], events: Events | None = None, now: datetime | None = None
) -> dict[str, str]:
    """The notebook's ``{phase, message, state}`` (see the module); ``events`` reads
    the notebook's events (oldest first), only when nothing else says why it waits."""
    metadata = notebook.get("metadata") or {}
    annotations = metadata.get("annotations") or {}
    status = notebook.get("status") or {}
    ready = status.get("readyReplicas") or 0
    if STOPPED in annotations:
        if not ready:
            return _status(STOPPED_PHASE, "No server is running for this notebook.")
        return _status(WAITING, "The notebook's server is stopping.")
    if metadata.get("deletionTimestamp"):
        return _status(TERMINATING, "The notebook is being deleted.")
    if ready == 1:
        return _status(READY, "Running")
    state = status.get("containerState") or {}
    conditions = [c for c in status.get("conditions") or () if isinstance(c, Mapping)]
    age = _age_seconds(metadata, now or utcnow())
    if not state and not conditions and (age is None or age <= _FRESH_SECONDS):
        return _status(WAITING, "Waiting for the notebook's server to be started.")
    waiting = state.get("waiting")
    if isinstance(waiting, Mapping):
        reason = str(waiting.get("reason") or "Undetermined")
        if reason in _STARTING:
            return _status(WAITING, reason)
        message = str(waiting.get("message") or "the container gave no message")
        return _status(WARNING, f"{reason}: {message}")
    for condition in conditions:
        if condition.get("reason") and condition.get("status") != "True":
            message = str(condition.get("message") or "")
            return _status(WARNING, f"{condition['reason']}: {message}".rstrip(": "))
    if isinstance(state.get("running"), Mapping):
        return _status(WAITING, "The notebook's server is starting.")
    for event in reversed(list(events() if events is not None else ())):
        if event.get("type") == "Warning":
            return _status(WARNING, str(event.get("message") or event.get("reason") or ""))
    terminated = state.get("terminated")
    if isinstance(terminated, Mapping):
        reason = str(terminated.get("reason") or "Terminated")
        return _status(WARNING, f"{reason}: exit code {terminated.get('exitCode')}")
    return _status(WARNING, "Nothing is known yet of this notebook's status.")


def main_container(notebook: Mapping[str, Any]) -> Mapping[str, Any]:
    """The container that runs: the one named like the notebook, else the first."""
    name = (notebook.get("metadata") or {}).get("name")
    pod = ((notebook.get("spec") or {}).get("template") or {}).get("spec") or {}
    containers = [c for c in pod.get("containers") or () if isinstance(c, Mapping)]
    for container in containers:
        if container.get("name") == name:
            return container
    return containers[0] if containers else {}


def gpus_of(container: Mapping[str, Any], vendors: Mapping[str, str]) -> dict[str, Any]:
    """``{count, message}`` of the GPUs of the configured ``vendors`` (limitsKey →
    name) the container's limits ask for (``1 NVIDIA, 2 AMD``)."""
    limits = (container.get("resources") or {}).get("limits") or {}
    count = 0
    parts = []
    for key, shown in vendors.items():
        if key not in limits:
            continue
        try:
            number = int(str(limits[key]))
        except ValueError:
            continue
        count += number
        parts.append(f"{number} {shown}")
    return {"count": count, "message": ", ".join(parts)}


def url_path(namespace: str, name: str) -> str:
    """Where the notebook is served on Ketch's server."""
    return f"/notebook/{namespace}/{name}/"


def notebook_summary(
    notebook: Mapping[str, Any],
    vendors: Mapping[str, str],
    events: Events | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The notebook's row in the web app's list (and the CLI's): Kubeflow's fields,
    and ``url``, its path on this server."""
    metadata = notebook.get("metadata") or {}
    annotations = metadata.get("annotations") or {}
    container = main_container(notebook)
    resources = container.get("resources") or {}
    requests = resources.get("requests") or {}
    limits = resources.get("limits") or {}
    image = str(container.get("image") or "")
    name, namespace = str(metadata.get("name", "")), str(metadata.get("namespace", ""))
    return {
        "name": name,
        "namespace": namespace,
        "serverType": annotations.get(SERVER_TYPE),
        "age": metadata.get("creationTimestamp", ""),
        "last_activity": annotations.get(LAST_ACTIVITY, ""),
        "image": image,
        "shortImage": image.rsplit("/", 1)[-1],
        "cpu": str(requests.get("cpu") or limits.get("cpu") or ""),
        "gpus": gpus_of(container, vendors),
        "memory": str(requests.get("memory") or limits.get("memory") or ""),
        "volumes": [
            str(m.get("name"))
            for m in container.get("volumeMounts") or ()
            if isinstance(m, Mapping)
        ],
        "status": processed_status(notebook, events, now),
        "metadata": dict(metadata),
        "url": url_path(namespace, name),
    }


def table_view(notebook: dict[str, Any]) -> dict[str, Any]:
    """What the Notebook's printer columns read: its phase and message, image, CPU and
    memory requests."""
    summary = notebook_summary(notebook, {})
    status = summary["status"]
    return {
        "metadata": notebook.get("metadata") or {},
        "phase": str(status["phase"]).capitalize(),
        "message": status["message"],
        "image": summary["image"],
        "cpu": summary["cpu"],
        "memory": summary["memory"],
        "url": summary["url"],
    }


#: the Notebook's printer columns (Kubeflow's CRD declares none), read from
#: :func:`table_view`
COLUMNS = (
    Column("Status", ".phase", description="The Jupyter web app's phase of the notebook"),
    Column("Image", ".image", description="The image of the notebook's container"),
    Column("CPU", ".cpu", priority=1, description="The container's CPU request"),
    Column("Memory", ".memory", priority=1, description="The container's memory request"),
    Column("Message", ".message", priority=1, description="Why it has that status"),
)
