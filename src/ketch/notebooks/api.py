"""The notebook proxy's routes: ``/notebook/<namespace>/<name>/…`` on Ketch's own server,
forwarded to the notebook's server (:mod:`ketch.notebooks.proxy`).

Access, as Kubeflow's roles have it for the notebook's namespace: reading through the
proxy (``GET``, ``HEAD``) needs ``view`` there (``get`` on ``notebooks/proxy``);
changing through it (``POST``, ``PUT``, ``PATCH``, ``DELETE``: saving a file, starting
a kernel) needs ``edit`` (``create``, ``update``, ``patch``, ``delete``). A websocket
(a kernel's channels, a terminal) runs code in the notebook, so it needs ``edit`` too
(``create`` on ``notebooks/proxy``, as Kubernetes asks ``create`` of ``pods/exec``).

A notebook that is not there answers 404; one that is stopped or starting, 503,
saying which.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, WebSocket
from fastapi.responses import RedirectResponse, Response

from ketch.core.access import Attributes, Call, Verb, method_verb, rule
from ketch.core.errors import NotFound
from ketch.core.services import context_of
from ketch.notebooks import proxy
from ketch.notebooks.running import Upstream, upstreams_of
from ketch.notebooks.spec import GROUP, KIND, PLURAL, STOPPED

router = APIRouter(tags=["notebooks"])
PREFIX = "/notebook/{namespace}/{name}"
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]


def _through(call: Call) -> Attributes:
    """A request through the proxy: its method's verb on ``notebooks/proxy``."""
    verb = method_verb(call.method, named=True)
    return Attributes(
        verb, GROUP, PLURAL, call.path_params["namespace"], call.path_params["name"], "proxy"
    )


def _socket(call: Call) -> Attributes:
    """A websocket through the proxy runs code: ``create`` on ``notebooks/proxy``."""
    return Attributes(
        Verb.CREATE, GROUP, PLURAL, call.path_params["namespace"], call.path_params["name"], "proxy"
    )


def _unavailable(request: Request | WebSocket, namespace: str, name: str) -> tuple[int, str]:
    """Why the notebook cannot be reached: (status, message)."""
    store = context_of(request).store
    try:
        notebook = store.get(KIND, namespace, name)
    except NotFound:
        return 404, f'notebook "{name}" not found in namespace "{namespace}"'
    if STOPPED in notebook.metadata.annotations:
        return 503, (
            f'notebook "{name}" in namespace "{namespace}" is stopped ({STOPPED} is set); '
            "remove the annotation to start it"
        )
    return 503, (
        f'notebook "{name}" in namespace "{namespace}" is not running yet; '
        "its status and events say why"
    )


def _upstream(request: Request | WebSocket, namespace: str, name: str) -> Upstream | None:
    return upstreams_of(context_of(request).database).get(namespace, name)


@router.api_route(PREFIX, methods=["GET", "HEAD"], include_in_schema=False)
@rule(_through)
async def notebook_root(request: Request, namespace: str, name: str) -> Response:
    """The notebook's page is under its path with a slash."""
    query = request.url.query
    return RedirectResponse(f"/notebook/{namespace}/{name}/" + (f"?{query}" if query else ""))


@router.api_route(PREFIX + "/{path:path}", methods=METHODS, include_in_schema=False)
@rule(_through)
async def notebook_http(request: Request, namespace: str, name: str, path: str) -> Response:
    """A request to the notebook's server."""
    upstream = _upstream(request, namespace, name)
    if upstream is None:
        return proxy.error(*_unavailable(request, namespace, name))
    return await proxy.forward_http(request, upstream)


@router.websocket(PREFIX + "/{path:path}")
@rule(_socket)
async def notebook_websocket(websocket: WebSocket, namespace: str, name: str, path: str) -> None:
    """A websocket to the notebook's server (a kernel's channels, a terminal)."""
    upstream = _upstream(websocket, namespace, name)
    if upstream is None:
        status, message = _unavailable(websocket, namespace, name)
        await proxy.deny(websocket, status, message)
        return
    await proxy.forward_websocket(websocket, upstream)
