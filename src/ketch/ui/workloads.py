"""What the pages of running work (Katib, Training, Serving) share: the rule of a page
that stands for one API call, an object's pods (the pods whose owner it is) with their
state and restarts, a log shown as its last lines that polls itself while its
producer runs (``GET /ui/pods/<pod>/log``: the API's pod log route, as the caller),
and the options of the charts those pages draw.

Every read goes through the API as the page's caller (:class:`ketch.ui.api.Api`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ketch.core.access import Attributes, Call, Rule, kubernetes_attributes, rule
from ketch.ui.access import NS, in_namespace
from ketch.ui.api import Api, ApiError
from ketch.ui.page import Page, render_html

router = APIRouter(include_in_schema=False)
#: how many of a log's last lines a page shows
TAIL = 300
#: how often a running thing's log and state are read again (htmx's trigger)
POLL = "every 1s"


def call_attributes(method: str, path: str) -> Attributes | list[Attributes]:
    """The attributes the API checks ``method`` of ``path`` with."""
    return kubernetes_attributes(Call(method, path, {}, {}))


def api_rule(method: str, path_of: Any) -> Rule:
    """The rule of a page that stands for the API call ``method`` of ``path_of(ns, params)``
    (the page's namespace and its path's parameters)."""

    def attributes(call: Call) -> Attributes | list[Attributes]:
        return in_namespace(lambda ns: call_attributes(method, path_of(ns, call.path_params)))(call)

    return attributes


@dataclass
class PodRow:
    """One of an object's pods as a page shows it."""

    name: str
    phase: str
    ready: str
    restarts: int
    role: str
    message: str
    containers: list[str]
    running: bool
    created: str


def _role(labels: dict[str, str]) -> str:
    for key in (
        "training.kubeflow.org/replica-type",
        "jobset.sigs.k8s.io/replicatedjob-name",
        "component",
        "serving.kserve.io/component",
    ):
        if labels.get(key):
            index = labels.get("training.kubeflow.org/replica-index", "")
            return f"{labels[key]}{'-' + index if index else ''}"
    return ""


def pod_row(pod: dict[str, Any]) -> PodRow:
    metadata = pod.get("metadata") or {}
    status = pod.get("status") or {}
    statuses = [s for s in status.get("containerStatuses") or [] if isinstance(s, dict)]
    message = ""
    for each in statuses:
        state = each.get("state") or {}
        for word in ("waiting", "terminated"):
            found = state.get(word) or {}
            if found.get("reason") or found.get("message"):
                message = str(found.get("reason") or "")
                if found.get("message"):
                    message += f": {found['message']}"
    containers = [str(c.get("name")) for c in (pod.get("spec") or {}).get("containers") or [] if c]
    ready = sum(1 for s in statuses if s.get("ready"))
    phase = str(status.get("phase") or "Pending")
    return PodRow(
        name=str(metadata.get("name") or ""),
        phase=phase,
        ready=f"{ready}/{len(statuses) or len(containers)}",
        restarts=sum(int(s.get("restartCount") or 0) for s in statuses),
        role=_role(metadata.get("labels") or {}),
        message=message,
        containers=containers,
        running=phase in ("Pending", "Running"),
        created=str(metadata.get("creationTimestamp") or ""),
    )


async def pods_of(api: Api, namespace: str, kind: str, name: str) -> list[PodRow]:
    """The pods in ``namespace`` whose owner is the ``kind`` called ``name``, by name."""
    found = await api.get(f"/api/v1/namespaces/{namespace}/pods")
    pods = []
    for pod in found.get("items") or []:
        owners = (pod.get("metadata") or {}).get("ownerReferences") or []
        if any(o.get("kind") == kind and o.get("name") == name for o in owners):
            pods.append(pod_row(pod))
    pods.sort(key=lambda p: (p.role, p.name))
    return pods


def log_href(namespace: str, pod: str, container: str = "") -> str:
    query = {NS: namespace, **({"container": container} if container else {})}
    return f"/ui/pods/{pod}/log?{urlencode(query)}"


def last_lines(text: str, count: int = TAIL) -> str:
    lines = text.splitlines()
    return "\n".join(lines[-count:])


def log_fragment(
    *, key: str, title: str, text: str, source: str, live: bool, error: str = ""
) -> Response:
    """A log's last lines in a block that reads them again every second while
    ``live`` (its producer runs); once it ended, the block stops polling."""
    return render_html(
        "log.html",
        key=key,
        title=title,
        text=last_lines(text),
        source=source,
        live=live,
        poll=POLL,
        error=error,
    )


@router.get("/ui/pods/{name}/log")
@rule(api_rule("GET", lambda ns, p: f"/api/v1/namespaces/{ns}/pods/{p['name']}/log"))
async def pod_log(request: Request, name: str) -> Response:
    """A pod's log (a container's: ``container``), its last lines; polling while the
    pod runs."""
    container = request.query_params.get("container", "")
    async with Page(request) as page:
        if (moved := page.needs_namespace()) is not None:
            return moved
        base = f"/api/v1/namespaces/{page.namespace}/pods/{name}"
        live, error, text = False, "", ""
        try:
            pod = await page.api.get(base)
            live = pod_row(pod).running
            text = await page.api.text(f"{base}/log", container=container, tailLines=str(TAIL))
        except ApiError as exc:
            error = str(exc)
        return log_fragment(
            key=f"pod-{name}{'-' + container if container else ''}",
            title=f"Log of {name}" + (f" ({container})" if container else ""),
            text=text,
            source=log_href(page.namespace, name, container),
            live=live,
            error=error,
        )


# -- charts ----------------------------------------------------------------------------

GRID = {"containLabel": True, "left": 8, "right": 24, "bottom": 8, "top": 40}


def titled(text: str) -> dict[str, Any]:
    return {"text": text, "textStyle": {"fontSize": 13}}


def number(value: Any) -> float | None:
    """``value`` as a number, ``None`` when it is none."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        found = float(value)
    except (TypeError, ValueError):
        return None
    return found if found == found and abs(found) != float("inf") else None
