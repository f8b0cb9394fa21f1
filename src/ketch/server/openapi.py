"""Kubernetes' OpenAPI documents of every kind the capabilities serve: what
``kubectl apply`` checks its validation mode against and ``kubectl explain`` reads.

::

    GET /openapi/v3                      index: each group version's document and its hash
    GET /openapi/v3/apis/{group}/{version}[?hash=...]
    GET /openapi/v3/api/v1               the core group's kinds, when any is served
    GET /openapi/v2                      every group version in one Swagger 2.0 document

Each kind is published as a CRD's schema is (``org.kubeflow.v1.PyTorchJob``, named
after its reversed group; ``io.k8s.api.batch.v1.Job`` for Kubernetes' own groups) with
``x-kubernetes-group-version-kind``, ``apiVersion``, ``kind``, ``metadata`` (a
reference to ``ObjectMeta``), ``spec`` and a free-form ``status``. The spec's schema
is the capability's typed spec model (:attr:`ketch.core.kinds.Kind.spec_schema`)
made structural (:mod:`ketch.server.structural`); a kind without one has a free-form
spec (:mod:`ketch.server.openapi_schemas`). Its paths declare ``fieldValidation``,
``dryRun`` and ``fieldManager`` on every write, which is how kubectl knows the server
validates fields and sends ``fieldValidation=Strict`` instead of validating on its
side; its PATCH takes JSON patch, merge patch and apply patch, not strategic merge
patch, which custom resources do not take (:mod:`ketch.server.openapi_paths`).

The documents are made once per app, when first asked for. A group version's URL in
the index carries its hash: asked with that hash it is served as immutable (what
kubectl's cache keeps), asked with an old one it redirects to the current one, as
Kubernetes does. Every answer has an ``ETag``.

OpenAPI v2 is served as JSON only. kubectl 1.27 and 1.28 ask for it as protobuf,
which is answered 406, so their client-side validation fails: pass
``--validate=false`` to them, or use kubectl 1.29 or later (which validates through
the server).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from ketch.core.access import AUTHENTICATED, rule
from ketch.core.errors import NotFound
from ketch.core.kinds import Kind, KindRegistry
from ketch.core.routes import ERROR_RESPONSES
from ketch.server.discovery import (
    KUBERNETES_VERSION,
    REVALIDATE,
    Document,
    NotAcceptable,
    group_versions,
    json_body,
    kinds_at,
)
from ketch.server.media import parse_accept
from ketch.server.openapi_paths import Operations
from ketch.server.openapi_schemas import V3_REF, document_path, kind_schemas, meta_schemas
from ketch.server.state import per_app

router = APIRouter(responses=ERROR_RESPONSES, tags=["openapi"])

HashQ = Annotated[
    str | None, Query(alias="hash", max_length=256, description="The hash the index lists")
]

V2_REF = "#/definitions/"

# -- the documents ---------------------------------------------------------------------


def group_version_document(kinds: Iterable[Kind], group: str, version: str) -> dict[str, Any]:
    """The OpenAPI v3 document of ``group/version``."""
    served = kinds_at(kinds, group, version)
    schemas = meta_schemas()
    paths: dict[str, Any] = {}
    for kind in served:
        schemas.update(kind_schemas(kind, version))
        paths.update(Operations(kind, version).paths())
    return {
        "openapi": "3.0.0",
        "info": {"title": "Ketch", "version": KUBERNETES_VERSION},
        "paths": dict(sorted(paths.items())),
        "components": {"schemas": dict(sorted(schemas.items()))},
    }


# -- Swagger 2.0, from the v3 documents --------------------------------------------


def _v2_refs(node: Any) -> Any:
    """``node`` with ``#/components/schemas/`` references pointing at ``#/definitions/``
    and without ``nullable`` (which Swagger 2.0 does not have)."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "nullable":
                continue
            if key == "$ref" and isinstance(value, str):
                out[key] = value.replace(V3_REF, V2_REF)
            else:
                out[key] = _v2_refs(value)
        return out
    if isinstance(node, list):
        return [_v2_refs(v) for v in node]
    return node


def _v2_parameter(parameter: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in parameter.items() if k != "schema"}
    out.update(parameter.get("schema", {}))
    return out


def _v2_operation(operation: dict[str, Any]) -> dict[str, Any]:
    out = {
        k: v for k, v in operation.items() if k not in ("parameters", "requestBody", "responses")
    }
    parameters = [_v2_parameter(p) for p in operation.get("parameters", ())]
    body = operation.get("requestBody")
    if body:
        content = body["content"]
        schema = next(iter(content.values()))["schema"]
        parameters.insert(
            0,
            {
                "name": "body",
                "in": "body",
                "required": body.get("required", False),
                "schema": schema,
            },
        )
        out["consumes"] = list(content)
    if parameters:
        out["parameters"] = parameters
    out["produces"] = ["application/json", "application/yaml"]
    responses: dict[str, Any] = {}
    for code, answer in operation.get("responses", {}).items():
        converted = {"description": answer.get("description", "")}
        content = answer.get("content")
        if content:
            converted["schema"] = next(iter(content.values()))["schema"]
        responses[code] = converted
    out["responses"] = responses
    out["schemes"] = ["https"]
    return out


def swagger(documents: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """One Swagger 2.0 document of every group version's v3 document."""
    paths: dict[str, Any] = {}
    definitions: dict[str, Any] = {}
    for document in documents:
        definitions.update(document["components"]["schemas"])
        for path, item in document["paths"].items():
            converted: dict[str, Any] = {}
            for key, value in item.items():
                if key == "parameters":
                    converted[key] = [_v2_parameter(p) for p in value]
                else:
                    converted[key] = _v2_operation(value)
            paths[path] = converted
    return _v2_refs(
        {
            "swagger": "2.0",
            "info": {"title": "Ketch", "version": KUBERNETES_VERSION},
            "paths": dict(sorted(paths.items())),
            "definitions": dict(sorted(definitions.items())),
        }
    )


# -- the documents of one app --------------------------------------------------------


@dataclass(frozen=True)
class Published(Document):
    """A document as served: its JSON and its hash (the ``ETag`` and ``?hash=``)."""

    hash: str = ""

    @classmethod
    def of(cls, data: Any) -> Published:
        body = json_body(data)
        digest = hashlib.sha512(body).hexdigest().upper()
        return cls(body, f'"{digest}"', digest)


class OpenAPIDocuments:
    """Every OpenAPI document of one app's kinds, made together on first use."""

    def __init__(self, kinds: KindRegistry) -> None:
        self.kinds = list(kinds)
        self._lock = threading.Lock()
        self._v3: dict[str, Published] | None = None
        self._index: Published | None = None
        self._v2: Published | None = None

    def _build(self) -> None:
        with self._lock:
            if self._v3 is not None:
                return
            made = {
                document_path(group, version): group_version_document(self.kinds, group, version)
                for group, versions in group_versions(self.kinds).items()
                for version in versions
            }
            v3 = {path: Published.of(document) for path, document in made.items()}
            self._index = Published.of(
                {
                    "paths": {
                        path: {"serverRelativeURL": f"/openapi/v3/{path}?hash={doc.hash}"}
                        for path, doc in sorted(v3.items())
                    }
                }
            )
            self._v2 = Published.of(swagger(made.values()))
            self._v3 = v3

    def index(self) -> Published:
        self._build()
        assert self._index is not None
        return self._index

    def group_version(self, path: str) -> Published | None:
        self._build()
        assert self._v3 is not None
        return self._v3.get(path)

    def v2(self) -> Published:
        self._build()
        assert self._v2 is not None
        return self._v2


def documents_of(request: Request) -> OpenAPIDocuments:
    """The app's :class:`OpenAPIDocuments` (made on first use)."""
    return per_app(request, "kube_openapi", OpenAPIDocuments)


def _accepts_json(request: Request) -> None:
    """Refuse (406) a request whose ``Accept`` allows no plain JSON."""
    accept = request.headers.get("accept")
    for media in parse_accept(accept):
        if media.matches("application/json") and "as" not in media.params:
            return
    message = f"OpenAPI documents are served as application/json only; Accept was {accept!r}"
    if "protobuf" in (accept or ""):
        message += (
            " (kubectl 1.27 and 1.28 ask for protobuf: use kubectl 1.29 or later, or pass "
            "--validate=false)"
        )
    raise NotAcceptable(message)


#: How a client may cache a document asked for by its hash, which never changes.
IMMUTABLE = "public, immutable, max-age=31536000"


def _serve(request: Request, document: Published, *, immutable: bool = False) -> Response:
    return document.response(request, cache_control=IMMUTABLE if immutable else REVALIDATE)


async def _documents(request: Request) -> OpenAPIDocuments:
    documents = documents_of(request)
    await run_in_threadpool(documents.index)  # made once, off the event loop
    return documents


# -- routes ---------------------------------------------------------------------------


@router.get("/openapi/v2", summary="Every kind's OpenAPI v2 (Swagger 2.0) schema, as JSON")
@rule(AUTHENTICATED)
async def openapi_v2(request: Request) -> Response:
    _accepts_json(request)
    return _serve(request, (await _documents(request)).v2())


@router.get("/openapi/v3", summary="The OpenAPI v3 documents of each group version")
@rule(AUTHENTICATED)
async def openapi_v3_index(request: Request) -> Response:
    _accepts_json(request)
    return _serve(request, (await _documents(request)).index())


@router.get(
    "/openapi/v3/{path:path}",
    summary="The OpenAPI v3 document of a group version (apis/{group}/{version} or api/v1)",
    response_model=None,
)
@rule(AUTHENTICATED)
async def openapi_v3(path: str, request: Request, digest: HashQ = None) -> Response:
    _accepts_json(request)
    document = (await _documents(request)).group_version(path.strip("/"))
    if document is None:
        raise NotFound(f"no OpenAPI v3 document at /openapi/v3/{path}; /openapi/v3 lists them")
    if digest is not None and digest != document.hash:
        return RedirectResponse(
            f"/openapi/v3/{path.strip('/')}?hash={document.hash}",
            status_code=301,
            headers={"Cache-Control": "no-cache, private"},
        )
    return _serve(request, document, immutable=digest is not None)
