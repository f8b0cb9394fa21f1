"""The Jupyter web app's backend API, as Kubeflow's Jupyter web app serves it, under
``/jupyter/api/`` on Ketch's own server: what the dashboard's notebook pages (and
``ketch notebooks``) call.

- ``GET /jupyter/api/config``: the new-notebook form's settings
  (:mod:`ketch.notebooks.spawner`).
- ``GET /jupyter/api/namespaces/<ns>/notebooks``: the namespace's notebooks, each as
  the web app's row (:func:`ketch.notebooks.summary.notebook_summary`); ``GET
  .../notebooks/<name>``: the Notebook itself with its ``processed_status``.
- ``POST .../notebooks``: a Notebook made from the form (:mod:`ketch.notebooks.form`),
  checked as the resource API checks one (Ketch's validation of Notebooks and the
  namespace's count quota) and stored; a ``newPvc`` naming a claim the namespace has
  already is refused with 409, as Kubernetes refuses to make it again.
- ``PATCH .../notebooks/<name>`` with ``{"stopped": true}`` sets
  ``kubeflow-resource-stopped`` (409 when it is set already), ``{"stopped": false}``
  takes it off; ``DELETE .../notebooks/<name>`` deletes the notebook (its claims stay).
- ``GET .../pvcs``: the namespace's claims (folders under ``KETCH_HOME/volumes/<ns>/``
  and claims its notebooks mount), with the notebooks that mount each;
  ``GET .../poddefaults``: its PodDefaults, each with the ``label`` a form's
  ``configurations`` names and a ``desc``.
- ``GET /jupyter/api/gpus``: the configured GPU vendors this machine has
  (``nvidia.com/gpu`` where NVIDIA GPUs are found); ``GET
  /jupyter/api/storageclasses/default``: ``""`` (Ketch has no storage classes).

Answers are the web app's envelope, ``{"success": true, "status": 200, "user": ...,
<key>: ...}``; a failure is ``{"success": false, "status": <code>, "user": ...,
"log": <message>, "message": <message>}`` with ``field`` naming the form field at
fault (400), or the Notebook's field when Ketch's checks refuse what the form made
(422), and the access check's refusals (403) too; a caller who is not signed in is
answered 401 by the server before any route. Bodies must be ``application/json``
(415 otherwise).

Access, as the web app asks Kubernetes: each route is checked for what it touches in
the namespace of its path (``list``/``get``/``create``/``patch``/``delete`` on
``notebooks.kubeflow.org``, ``list`` on ``persistentvolumeclaims`` and
``poddefaults.kubeflow.org``); the settings are read by anyone signed in, GPUs and
storage classes as cluster-scoped lists (``nodes``, ``storageclasses``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

from ketch.core import config as ketch_config
from ketch.core import quota
from ketch.core.access import AUTHENTICATED, Attributes, Call, Verb, identity_of, rule
from ketch.core.errors import AlreadyExists, Conflict, InvalidSpec, KetchError, NotFound
from ketch.core.kinds import Kind
from ketch.core.resource import Resource, validate_namespace
from ketch.core.services import context_of
from ketch.core.store.resources import ResourceStore
from ketch.core.timestamps import format_time, utcnow
from ketch.notebooks import form, spawner, summary
from ketch.notebooks.spec import GROUP, KIND, PLURAL, STOPPED, validate
from ketch.notebooks.workspace import claims_dir

PREFIX = "/jupyter/api"
NAMESPACED = PREFIX + "/namespaces/{namespace}"
PODDEFAULT = "PodDefault"
GPU = "nvidia.com/gpu"
#: what a namespace's count quota reads of the Notebook kind (its group and plural)
COUNTED = Kind(KIND, GROUP, ("v1", "v1beta1"), PLURAL)
#: Ketch's claims are folders every notebook of the namespace may mount at once
CLAIM_MODE = "ReadWriteMany"


class UnsupportedMediaType(KetchError):
    http_status = 415


# -- access --------------------------------------------------------------------------


def _in_namespace(verb: Verb, resource: str, group: str = GROUP, named: bool = False) -> Any:
    def attributes(call: Call) -> Attributes:
        name = call.path_params.get("name") if named else None
        return Attributes(verb, group, resource, call.path_params["namespace"], name)

    return attributes


def _cluster(resource: str, group: str) -> Any:
    def attributes(_call: Call) -> Attributes:
        return Attributes(Verb.LIST, group, resource)

    return attributes


# -- the envelope ----------------------------------------------------------------------


def _user(request: Request) -> str | None:
    identity = identity_of(request)
    return identity.name if identity.authenticated else None


def success(request: Request, **payload: Any) -> JSONResponse:
    """The web app's answer: its envelope, with ``payload``'s keys."""
    return JSONResponse({"success": True, "status": 200, "user": _user(request), **payload})


def failure(request: Request, status: int, message: str, field: str | None = None) -> JSONResponse:
    body: dict[str, Any] = {
        "success": False,
        "status": status,
        "user": _user(request),
        "log": message,
        "message": message,
    }
    if field:
        body["field"] = field
    return JSONResponse(body, status_code=status)


class EnvelopeRoute(APIRoute):
    """A route whose errors (the access check's too) answer in the web app's envelope."""

    def get_route_handler(self) -> Callable[[Request], Any]:
        handler = super().get_route_handler()

        async def answer(request: Request) -> Response:
            try:
                response: Response = await handler(request)
            except KetchError as exc:
                return failure(request, exc.http_status, str(exc), exc.field)
            return response

        return answer


async def _json_body(request: Request) -> dict[str, Any]:
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media != "application/json":
        raise UnsupportedMediaType(
            f"Content-Type {media or '(none)'} is not accepted: send application/json"
        )
    raw = await request.body()
    try:
        body = json.loads(raw) if raw.strip() else None
    except ValueError as exc:
        raise InvalidSpec(f"the body is not valid JSON: {exc}", field="body") from None
    if not isinstance(body, dict):
        raise InvalidSpec("must be a JSON object", field="body")
    return body


# -- what the routes do ----------------------------------------------------------------


def _store(request: Request) -> ResourceStore:
    return context_of(request).store


def _namespace(namespace: str) -> str:
    return validate_namespace(namespace, field="namespace")


def _events(store: ResourceStore, namespace: str, name: str) -> Callable[[], list[dict[str, Any]]]:
    def read() -> list[dict[str, Any]]:
        return [
            {"type": e.type, "reason": e.reason, "message": e.message}
            for e in store.list_events(KIND, namespace, name)
        ]

    return read


def claims_of(store: ResourceStore, home: Path, namespace: str) -> dict[str, list[str]]:
    """The namespace's claims (its folders, and what its notebooks mount), each with the
    notebooks that mount it."""
    found: dict[str, list[str]] = {}
    try:
        folders = sorted(p.name for p in claims_dir(home, namespace).iterdir() if p.is_dir())
    except OSError:  # none yet, or closed to the server's user
        folders = []
    for folder in folders:
        if form.is_claim_name(folder):
            found.setdefault(folder, [])
    for notebook in store.list_manifests(KIND, namespace).items:
        pod = ((notebook.get("spec") or {}).get("template") or {}).get("spec") or {}
        for volume in pod.get("volumes") or ():
            claim = (volume.get("persistentVolumeClaim") or {}) if isinstance(volume, dict) else {}
            if claim.get("claimName"):
                found.setdefault(str(claim["claimName"]), []).append(notebook["metadata"]["name"])
    return found


class _Invalid(InvalidSpec):
    """The Notebook the form made is refused by Ketch's checks of Notebooks."""

    http_status = 422


def _create(
    store: ResourceStore,
    spawner_config: spawner.SpawnerConfig,
    namespace: str,
    body: dict[str, Any],
    creator: str,
) -> dict[str, Any]:
    made = form.build(body, spawner_config, namespace, creator)
    resource = Resource.from_manifest(made.manifest)
    try:
        validate(resource)
    except InvalidSpec as exc:
        raise _Invalid(exc.message, field=exc.field, hint=exc.hint) from None
    try:
        store.get(KIND, namespace, resource.metadata.name)
    except NotFound:
        pass
    else:
        raise AlreadyExists(
            f'{PLURAL}.{GROUP} "{resource.metadata.name}" already exists',
            kind=KIND,
            namespace=namespace,
            name=resource.metadata.name,
        )
    if made.claims:
        existing = claims_of(store, ketch_config.ketch_home(), namespace)
        for claim in made.claims:
            if claim.name in existing:
                raise Conflict(
                    f'persistentvolumeclaims "{claim.name}" already exists in namespace '
                    f'"{namespace}"',
                    field=claim.field,
                    hint="mount it with existingSource.persistentVolumeClaim.claimName instead",
                )
    created = quota.create_counted(store, COUNTED, resource)
    return created.to_manifest()


def _set_stopped(store: ResourceStore, namespace: str, name: str, stop: bool) -> Resource:
    for _attempt in range(5):
        resource = store.get(KIND, namespace, name)
        annotations = dict(resource.metadata.annotations)
        if stop:
            if STOPPED in annotations:
                raise Conflict(f"notebook {namespace}/{name} is already stopped")
            annotations[STOPPED] = format_time(utcnow().replace(microsecond=0))
        elif STOPPED in annotations:
            del annotations[STOPPED]
        else:
            return resource
        resource.metadata.annotations = annotations
        try:
            applied, _outcome = store.apply_outcome(
                resource, expected_version=resource.metadata.resourceVersion
            )
        except Conflict:
            continue  # written in between (its controller's annotations): read it again
        return applied
    raise Conflict(f"notebook {namespace}/{name} kept changing; try again")


def _poddefaults(store: ResourceStore, namespace: str) -> list[dict[str, Any]]:
    found = []
    for item in store.list_manifests(PODDEFAULT, namespace).items:
        spec = item.get("spec") or {}
        labels = (spec.get("selector") or {}).get("matchLabels") or {}
        item["label"] = next(iter(labels), "")
        item["desc"] = spec.get("desc") or item["metadata"]["name"]
        found.append(item)
    return found


# -- the routes ------------------------------------------------------------------------


def make_router(env: dict[str, str] | None = None) -> APIRouter:
    """The web app's routes, with the form settings read now (as the server starts)."""
    settings = spawner.load(os.environ if env is None else env)
    vendors = settings.gpu_vendors()
    router = APIRouter(tags=["jupyter web app"], route_class=EnvelopeRoute)

    @router.get(PREFIX + "/config", summary="The new-notebook form's settings")
    @rule(AUTHENTICATED)
    def get_config(request: Request) -> Response:
        return success(request, config=settings.defaults)

    @router.get(PREFIX + "/gpus", summary="The GPU vendors of the settings this machine has")
    @rule(_cluster("nodes", ""))
    def get_gpus(request: Request) -> Response:
        here = context_of(request).backend.gpus()
        return success(request, vendors=[GPU] if here and GPU in vendors else [])

    @router.get(PREFIX + "/storageclasses/default", summary="The default storage class")
    @rule(_cluster("storageclasses", "storage.k8s.io"))
    def get_default_storage_class(request: Request) -> Response:
        return success(request, defaultStorageClass="")

    @router.get(NAMESPACED + "/notebooks", summary="The namespace's notebooks, as rows")
    @rule(_in_namespace(Verb.LIST, PLURAL))
    def list_notebooks(request: Request, namespace: str) -> Response:
        store = _store(request)
        rows = [
            summary.notebook_summary(
                item, vendors, _events(store, namespace, item["metadata"]["name"])
            )
            for item in store.list_manifests(KIND, _namespace(namespace)).items
        ]
        return success(request, notebooks=rows)

    @router.post(NAMESPACED + "/notebooks", summary="Create a notebook from the form")
    @rule(_in_namespace(Verb.CREATE, PLURAL))
    async def create_notebook(request: Request, namespace: str) -> Response:
        namespace = _namespace(namespace)
        body = await _json_body(request)
        creator = _user(request) or "anonymous"
        created = await run_in_threadpool(
            _create, _store(request), settings, namespace, body, creator
        )
        return success(
            request,
            message="Notebook created successfully.",
            notebook=summary.notebook_summary(created, vendors),
        )

    @router.get(NAMESPACED + "/notebooks/{name}", summary="One notebook, with its status")
    @rule(_in_namespace(Verb.GET, PLURAL, named=True))
    def get_notebook(request: Request, namespace: str, name: str) -> Response:
        store = _store(request)
        notebook = store.get(KIND, _namespace(namespace), name).to_manifest()
        notebook["processed_status"] = summary.processed_status(
            notebook, _events(store, namespace, name)
        )
        return success(request, notebook=notebook)

    @router.patch(NAMESPACED + "/notebooks/{name}", summary="Stop or start a notebook")
    @rule(_in_namespace(Verb.PATCH, PLURAL, named=True))
    async def patch_notebook(request: Request, namespace: str, name: str) -> Response:
        namespace = _namespace(namespace)
        body = await _json_body(request)
        if "stopped" not in body:
            raise InvalidSpec(
                'Required value: the body must name a supported key: "stopped"', field="stopped"
            )
        stop = body["stopped"]
        if not isinstance(stop, bool):
            raise InvalidSpec(f"must be true or false, got {stop!r}", field="stopped")
        changed = await run_in_threadpool(_set_stopped, _store(request), namespace, name, stop)
        row = summary.notebook_summary(changed.to_manifest(), vendors)
        return success(request, notebook=row)

    @router.delete(NAMESPACED + "/notebooks/{name}", summary="Delete a notebook")
    @rule(_in_namespace(Verb.DELETE, PLURAL, named=True))
    def delete_notebook(request: Request, namespace: str, name: str) -> Response:
        _store(request).delete(KIND, _namespace(namespace), name)
        return success(request, message=f"Notebook {name} successfully deleted.")

    @router.get(NAMESPACED + "/pvcs", summary="The namespace's volume claims")
    @rule(_in_namespace(Verb.LIST, "persistentvolumeclaims", group=""))
    def get_pvcs(request: Request, namespace: str) -> Response:
        found = claims_of(_store(request), ketch_config.ketch_home(), _namespace(namespace))
        claims = [
            {"name": name, "size": "", "mode": CLAIM_MODE, "notebooks": sorted(set(users))}
            for name, users in sorted(found.items())
        ]
        return success(request, pvcs=claims)

    @router.get(NAMESPACED + "/poddefaults", summary="The namespace's PodDefaults")
    @rule(_in_namespace(Verb.LIST, "poddefaults"))
    def get_poddefaults(request: Request, namespace: str) -> Response:
        return success(request, poddefaults=_poddefaults(_store(request), _namespace(namespace)))

    return router
