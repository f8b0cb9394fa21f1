"""Training's pages, read through the API as the caller: a namespace's jobs of every
kind (PyTorchJob, TFJob, XGBoostJob, MPIJob, JAXJob, PaddleJob, MXJob, batch Job and
Trainer's TrainJob) with their states, and a job's page: its replicas (pods) with their
state and restarts and each one's log (live while it runs), its replica counts, its
conditions and events, and a TrainJob's trainer progress and metrics
(``status.trainerStatus``, which its controller reads from the trainer).
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ketch.core.access import rule
from ketch.core.errors import KetchError, NotFound
from ketch.core.kinds import Kind
from ketch.server.state import api_state
from ketch.ui.access import api_path, in_namespace, kind_named, namespace_read, on_kind
from ketch.ui.listing import derived_state, events
from ketch.ui.nav import TRAINING
from ketch.ui.page import Page
from ketch.ui.workloads import log_href, pods_of

router = APIRouter(include_in_schema=False)
#: the kinds of jobs the pages show (not the runtimes)
JOBS = tuple(k for k in TRAINING if "runtimes" not in k)
_ENDED = ("Succeeded", "Failed", "Complete", "Canceled")


def _served(request: Request) -> list[Kind]:
    kinds = []
    for resource in JOBS:
        try:
            kind = kind_named(api_state(request).kinds, resource)
        except KetchError:
            continue  # a capability this server does not assemble
        if "list" in kind.verbs:
            kinds.append(kind)
    return kinds


def _replicas(status: dict[str, Any]) -> list[dict[str, Any]]:
    """``status.replicaStatuses`` (kubeflow.org's jobs) or a batch Job's counts."""
    found = []
    for role, counts in (status.get("replicaStatuses") or {}).items():
        if isinstance(counts, dict):
            found.append(
                {
                    "role": role,
                    "active": int(counts.get("active") or 0),
                    "succeeded": int(counts.get("succeeded") or 0),
                    "failed": int(counts.get("failed") or 0),
                }
            )
    if not found and any(k in status for k in ("active", "succeeded", "failed")):
        found.append(
            {
                "role": "pods",
                "active": int(status.get("active") or 0),
                "succeeded": int(status.get("succeeded") or 0),
                "failed": int(status.get("failed") or 0),
            }
        )
    return found


def job_row(obj: dict[str, Any], kind: Kind, ns: str) -> dict[str, Any]:
    metadata, status = obj.get("metadata") or {}, obj.get("status") or {}
    name = str(metadata.get("name") or "")
    trainer = status.get("trainerStatus") or {}
    return {
        "name": name,
        "kind": kind.kind,
        "href": f"/ui/training/{kind.plural}.{kind.group}/{name}?ns={ns}",
        "state": derived_state(obj) or "Created",
        "replicas": ", ".join(
            f"{r['role']}: {r['active']} active, {r['succeeded']} succeeded, {r['failed']} failed"
            for r in _replicas(status)
        ),
        "progress": trainer.get("progressPercentage"),
        "created": str(metadata.get("creationTimestamp") or ""),
    }


async def _listed(page: Page, kind: Kind) -> list[dict[str, Any]] | KetchError:
    try:
        found = await page.api.get(api_path(kind, page.namespace))
    except KetchError as exc:
        return exc
    return [job_row(o, kind, page.namespace) for o in found.get("items") or []]


@router.get("/ui/training")
@rule(in_namespace(namespace_read))
async def jobs_page(request: Request) -> Response:
    """Every job of every kind in the namespace, newest first."""
    async with Page(request, section="Training") as page:
        if (moved := page.needs_namespace()) is not None:
            return moved
        kinds = _served(request)
        lists = await asyncio.gather(*(_listed(page, k) for k in kinds))
        rows: list[dict[str, Any]] = []
        errors = []
        for kind, found in zip(kinds, lists, strict=True):
            if isinstance(found, KetchError):
                errors.append(f"{kind.kind}: {found}")
            else:
                rows.extend(found)
        rows.sort(key=lambda r: (r["created"], r["name"]), reverse=True)
        return page.render(
            "training.html",
            title="Training jobs",
            jobs=rows,
            errors=errors,
            kinds=[
                {"kind": k.kind, "href": page.link(f"/ui/k/{k.plural}.{k.group}")} for k in kinds
            ],
        )


@router.get("/ui/training/{resource}/{name}")
@rule(on_kind("GET"))
async def job_page(request: Request, resource: str, name: str) -> Response:
    """A job: its state, replicas and their logs, conditions, events, trainer progress."""
    kind = kind_named(api_state(request).kinds, resource)
    if resource not in JOBS:
        raise NotFound(f"{resource} is no training job's kind; see /ui/k/{resource}/{name}")
    async with Page(request, section="Training") as page:
        if (moved := page.needs_namespace()) is not None:
            return moved
        ns = page.namespace
        obj, pods, feed = await asyncio.gather(
            page.api.get(api_path(kind, ns, name)),
            _safely(pods_of(page.api, ns, kind.kind, name)),
            _safely(events(page.api, api_state(request).kinds, ns, about=(kind.kind, name))),
        )
        status = obj.get("status") or {}
        state = derived_state(obj) or "Created"
        trainer = status.get("trainerStatus") or {}
        return page.render(
            "training_job.html",
            title=f"{kind.kind} {name}",
            kind=kind,
            name=name,
            job_state=state,
            live=state not in _ENDED
            and not any(
                c.get("type") in _ENDED and c.get("status") == "True"
                for c in status.get("conditions") or []
            ),
            status=status,
            replicas=_replicas(status),
            trainer=trainer,
            pods=[] if isinstance(pods, KetchError) else pods,
            pods_error=str(pods) if isinstance(pods, KetchError) else "",
            log_href=lambda pod: log_href(ns, pod),
            events=[] if isinstance(feed, KetchError) else feed,
            resource_href=page.link(f"/ui/k/{resource}/{name}"),
        )


async def _safely(made: Any) -> Any:
    try:
        return await made
    except KetchError as exc:
        return exc
