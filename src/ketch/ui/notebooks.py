"""The Notebooks pages, through the Jupyter web app's API (``/jupyter/api``) as the
caller: the namespace's notebooks with their state (running, stopped, waiting, and
why), a link that opens each through Ketch's proxy (``/notebook/<ns>/<name>/``), stop,
start and delete (after asking) for editors; and Kubeflow's new-notebook form, built
from the web app's settings (images, a custom image, CPU and memory, the workspace
volume, data volumes, the namespace's PodDefaults as configurations).

Each route's rule is the web app's own for the call it stands for (``list``,
``create``, ``patch``, ``delete`` of notebooks in the namespace).
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Body, Request
from fastapi.responses import Response

from ketch.core.access import Attributes, Verb, rule
from ketch.core.errors import InvalidSpec
from ketch.ui.access import in_namespace, may
from ketch.ui.page import Page, problem_html, send_to

router = APIRouter(include_in_schema=False)
JUPYTER = "/jupyter/api"
GROUP, PLURAL = "kubeflow.org", "notebooks"
#: the server types of the form, and the setting holding each one's images
SERVER_TYPES = (
    ("jupyter", "JupyterLab", "image"),
    ("group-one", "VS Code", "imageGroupOne"),
    ("group-two", "RStudio", "imageGroupTwo"),
)
#: how many data volumes the form offers
DATA_VOLUMES = 2


def _on_notebooks(verb: Verb) -> Any:
    return in_namespace(lambda ns: Attributes(verb, GROUP, PLURAL, ns))


def _setting(config: dict[str, Any], name: str) -> dict[str, Any]:
    found = config.get(name)
    return found if isinstance(found, dict) else {}


def spawner_form(config: dict[str, Any]) -> dict[str, Any]:
    """What the form shows of the web app's settings."""
    types = []
    for value, label, setting in SERVER_TYPES:
        images = _setting(config, setting)
        options = [str(o) for o in images.get("options") or []]
        if options or images.get("value"):
            types.append(
                {
                    "value": value,
                    "label": label,
                    "default": str(images.get("value") or (options[0] if options else "")),
                    "options": options or [str(images.get("value"))],
                    "readonly": bool(images.get("readOnly")),
                }
            )
    workspace = _setting(config, "workspaceVolume").get("value")
    claim = ""
    if isinstance(workspace, dict):
        claim = str(((workspace.get("newPvc") or {}).get("metadata") or {}).get("name") or "")
    return {
        "types": types,
        "custom": bool(config.get("allowCustomImage", True)),
        "cpu": str(_setting(config, "cpu").get("value") or ""),
        "cpu_readonly": bool(_setting(config, "cpu").get("readOnly")),
        "memory": str(_setting(config, "memory").get("value") or ""),
        "memory_readonly": bool(_setting(config, "memory").get("readOnly")),
        "workspace": isinstance(workspace, dict),
        "workspace_mount": str(workspace.get("mount", "")) if isinstance(workspace, dict) else "",
        "workspace_claim": claim,
        "workspace_readonly": bool(_setting(config, "workspaceVolume").get("readOnly")),
        "datavols_readonly": bool(_setting(config, "dataVolumes").get("readOnly")),
        "configurations": [str(c) for c in _setting(config, "configurations").get("value") or []],
        "configurations_readonly": bool(_setting(config, "configurations").get("readOnly")),
        "shm": bool(_setting(config, "shm").get("value", True)),
        "shm_readonly": bool(_setting(config, "shm").get("readOnly")),
    }


def _row(notebook: dict[str, Any]) -> dict[str, Any]:
    status = notebook.get("status") or {}
    phase = str(status.get("phase") or "")
    annotations = (notebook.get("metadata") or {}).get("annotations") or {}
    return {
        "name": notebook.get("name", ""),
        "phase": phase,
        "state": {"ready": "running", "warning": "waiting"}.get(phase, phase),
        "message": str(status.get("message") or ""),
        "image": notebook.get("shortImage") or notebook.get("image") or "",
        "cpu": notebook.get("cpu", ""),
        "memory": notebook.get("memory", ""),
        "age": notebook.get("age", ""),
        "stopped": "kubeflow-resource-stopped" in annotations or phase == "stopped",
        "url": notebook.get("url") or "",
        "server": notebook.get("serverType") or "jupyter",
    }


@router.get("/ui/notebooks")
@rule(_on_notebooks(Verb.LIST))
async def notebooks_page(request: Request) -> Response:
    """The namespace's notebooks with their state, connect, stop, start and delete."""
    async with Page(request, section="Notebooks") as page:
        if (moved := page.needs_namespace()) is not None:
            return moved
        found = await page.api.get(f"{JUPYTER}/namespaces/{page.namespace}/notebooks")
        rows = sorted((_row(n) for n in found.get("notebooks") or []), key=lambda r: r["name"])
        namespace = page.namespace

        def may_do(verb: Verb) -> bool:
            return may(request, Attributes(verb, GROUP, PLURAL, namespace))

        return page.render(
            "notebooks.html",
            title="Notebooks",
            notebooks=rows,
            may_create=may_do(Verb.CREATE),
            may_patch=may_do(Verb.PATCH),
            may_delete=may_do(Verb.DELETE),
            new_href=page.link("/ui/notebooks/new"),
            refresh_url=page.link("/ui/notebooks"),
        )


@router.get("/ui/notebooks/new")
@rule(_on_notebooks(Verb.CREATE))
async def new_notebook_page(request: Request) -> Response:
    """Kubeflow's new-notebook form, from the web app's settings and the namespace's
    PodDefaults and volume claims."""
    async with Page(request, section="Notebooks") as page:
        if (moved := page.needs_namespace()) is not None:
            return moved
        base = f"{JUPYTER}/namespaces/{page.namespace}"
        config, poddefaults, pvcs = await asyncio.gather(
            page.api.get(f"{JUPYTER}/config"),
            page.api.call("GET", f"{base}/poddefaults"),
            page.api.call("GET", f"{base}/pvcs"),
        )
        form = spawner_form(config.get("config") or {})
        defaults = [
            {
                "label": str(p.get("label") or ""),
                "desc": str(p.get("desc") or ""),
                "name": str((p.get("metadata") or {}).get("name", "")),
                "checked": str(p.get("label") or "") in form["configurations"],
            }
            for p in (poddefaults.body or {}).get("poddefaults") or []
            if poddefaults.ok and p.get("label")
        ]
        claims = [str(c.get("name")) for c in ((pvcs.body or {}).get("pvcs") or []) if pvcs.ok]
        return page.render(
            "notebook_new.html",
            title="New notebook",
            form=form,
            poddefaults=defaults,
            claims=claims,
            create_url=page.link("/ui/notebooks"),
            list_href=page.link("/ui/notebooks"),
        )


def _flag(value: Any) -> bool:
    return str(value).strip().lower() in ("true", "on", "1", "yes")


def form_body(values: dict[str, Any]) -> dict[str, Any]:
    """The web app's body for the form's fields (what htmx sends: each field's text;
    a checked PodDefault is ``configuration:<its label>``, a data volume
    ``datavolMount<i>`` and ``datavolClaim<i>``)."""

    def text(name: str) -> str:
        found = values.get(name)
        if isinstance(found, list):
            found = found[-1] if found else ""
        return str(found or "").strip()

    name = text("name")
    if not name:
        raise InvalidSpec("Required value: the notebook's name", field="name")
    body: dict[str, Any] = {"name": name, "serverType": text("serverType") or "jupyter"}
    if text("customImage"):
        body["customImage"] = text("customImage")
    elif text("image"):
        body["image"] = text("image")
    for field in ("cpu", "memory"):
        if text(field):
            body[field] = text(field)
    if "workspace" in values:
        if _flag(text("workspace")):
            mount = text("workspaceMount") or "/home/jovyan"
            claim = text("workspaceClaim") or "{notebook-name}-workspace"
            if text("workspaceExisting"):
                body["workspace"] = {
                    "mount": mount,
                    "existingSource": {
                        "persistentVolumeClaim": {"claimName": text("workspaceExisting")}
                    },
                }
            else:
                body["workspace"] = {
                    "mount": mount,
                    "newPvc": {
                        "metadata": {"name": claim},
                        "spec": {
                            "resources": {"requests": {"storage": text("workspaceSize") or "5Gi"}},
                            "accessModes": ["ReadWriteOnce"],
                        },
                    },
                }
        else:
            body["workspace"] = None
    datavols = []
    for index in range(DATA_VOLUMES):
        mount, claim = text(f"datavolMount{index}"), text(f"datavolClaim{index}")
        if not mount and not claim:
            continue
        if not claim:
            raise InvalidSpec("name the volume's claim", field=f"datavols[{index}].claim")
        if not mount:
            raise InvalidSpec("name the volume's mount path", field=f"datavols[{index}].mount")
        datavols.append(
            {"mount": mount, "existingSource": {"persistentVolumeClaim": {"claimName": claim}}}
        )
    if datavols:
        body["datavols"] = datavols
    if "configurationsShown" in values:
        body["configurations"] = sorted(
            key.split(":", 1)[1]
            for key, value in values.items()
            if key.startswith("configuration:") and _flag(value)
        )
    if "shmShown" in values:
        body["shm"] = _flag(text("shm"))
    return body


@router.post("/ui/notebooks")
@rule(_on_notebooks(Verb.CREATE))
async def create_notebook(request: Request, body: dict[str, Any] = Body(...)) -> Response:
    """Create a notebook from the form, through the web app's API; the browser goes
    to the list, or the form shows the API's refusal naming the field."""
    made = form_body(body)
    async with Page(request) as page:
        if (moved := page.needs_namespace()) is not None:
            return moved
        answer = await page.api.call(
            "POST", f"{JUPYTER}/namespaces/{page.namespace}/notebooks", json=made
        )
        if not answer.ok:
            return _problem(answer.status, answer.message, answer.body)
        return send_to(request, page.link("/ui/notebooks"))


@router.patch("/ui/notebooks/{name}")
@rule(_on_notebooks(Verb.PATCH))
async def stop_or_start(request: Request, name: str, body: dict[str, Any] = Body(...)) -> Response:
    """Stop (``{"stopped": "true"}``) or start (``"false"``) a notebook."""
    if "stopped" not in body:
        raise InvalidSpec('the body must name "stopped"', field="stopped")
    stop = _flag(body["stopped"])
    async with Page(request) as page:
        if (moved := page.needs_namespace()) is not None:
            return moved
        answer = await page.api.call(
            "PATCH",
            f"{JUPYTER}/namespaces/{page.namespace}/notebooks/{name}",
            json={"stopped": stop},
        )
        if not answer.ok:
            return _problem(answer.status, answer.message, answer.body)
        return send_to(request, page.link("/ui/notebooks"))


@router.delete("/ui/notebooks/{name}")
@rule(_on_notebooks(Verb.DELETE))
async def delete_notebook(request: Request, name: str) -> Response:
    async with Page(request) as page:
        if (moved := page.needs_namespace()) is not None:
            return moved
        answer = await page.api.call(
            "DELETE", f"{JUPYTER}/namespaces/{page.namespace}/notebooks/{name}"
        )
        if not answer.ok:
            return _problem(answer.status, answer.message, answer.body)
        return send_to(request, page.link("/ui/notebooks"))


def _problem(status: int, message: str, body: Any) -> Response:
    field = body.get("field") if isinstance(body, dict) else None
    shown = f"{field}: {message}" if field and field not in message else message
    return problem_html(status, shown)
