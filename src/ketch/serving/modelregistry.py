"""``model-registry://`` storage URIs, as KServe's model registry storage initializer
reads them: ``model-registry://<model>/<version>`` is that version of the registered
model, ``model-registry://<model>`` its latest LIVE version. The model server resolves
one when it starts, through the Model Registry REST API of the Ketch server that
started it (``KETCH_URL``, with the namespace's ``KETCH_TOKEN``), in the
InferenceService's namespace, to the URI of the version's model artifact.

The controller adds that namespace to the URI it hands its replicas
(``model-registry://m/v?namespace=ns``, :func:`in_namespace`).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

import httpx

from ketch.core import config
from ketch.core.credentials import token_for
from ketch.core.errors import KetchError
from ketch.core.http import verification
from ketch.core.modeluris import SCHEME, is_registry_uri, parse
from ketch.serving.errors import InvalidSpec, NotFound

API = "/api/model_registry/v1"
TIMEOUT_SECONDS = 30.0


def in_namespace(uri: str, namespace: str) -> str:
    """``uri`` with the namespace it is resolved in."""
    model, version, _ = parse(uri)
    path = quote(model, safe="") + (f"/{quote(version, safe='')}" if version else "")
    return f"{SCHEME}{path}?{urlencode({'namespace': namespace})}"


def resolve(uri: str, server: str | None = None) -> tuple[str, dict[str, Any]]:
    """The URI of the model artifact ``uri`` names, and the version it belongs to."""
    model, version, namespace = parse(uri)
    base = (server or config.server_url()).rstrip("/")
    try:
        token = token_for(base)
        verify = verification(base)
    except KetchError as exc:
        raise InvalidSpec(f"cannot reach the model registry at {base}: {exc}") from None
    headers = {"authorization": f"Bearer {token}"} if token else {}
    scope = {"namespace": namespace} if namespace else {}
    where = f"in the namespace {namespace!r}" if namespace else "in the registry"
    with httpx.Client(
        base_url=base + API, headers=headers, verify=verify, timeout=TIMEOUT_SECONDS
    ) as http:

        def get(path: str, **params: Any) -> dict[str, Any] | None:
            try:
                response = http.get(path, params={**params, **scope})
            except httpx.HTTPError as exc:
                raise InvalidSpec(f"cannot reach the model registry at {base}: {exc}") from None
            if response.status_code == 404:
                return None
            if response.status_code >= 300:
                message = response.json().get("message", response.text) if response.content else ""
                raise InvalidSpec(f"the model registry refused {path}: {message}")
            found: dict[str, Any] = response.json()
            return found

        registered = get("/registered_model", name=model)
        if registered is None:
            raise NotFound(f"no registered model {model!r} {where} (from {uri})")
        if version is not None:
            found = get("/model_version", name=version, parentResourceId=registered["id"])
            if found is None:
                raise NotFound(f"registered model {model!r} has no version {version!r} {where}")
        else:
            page = get(
                f"/registered_models/{registered['id']}/versions",
                filterQuery="state = 'LIVE'",
                orderBy="ID",
                sortOrder="DESC",
                pageSize=1,
            )
            items = (page or {}).get("items") or []
            if not items:
                raise NotFound(f"registered model {model!r} has no LIVE version {where}")
            found = items[0]
        artifacts = get(f"/model_versions/{found['id']}/artifacts", artifactType="model-artifact")
        uris = [a.get("uri") for a in (artifacts or {}).get("items") or [] if a.get("uri")]
        if not uris:
            raise NotFound(
                f"version {found['name']!r} of registered model {model!r} has no model "
                "artifact with a URI"
            )
        if is_registry_uri(uris[0]):
            raise InvalidSpec(f"the model artifact of {uri} is itself a registry URI: {uris[0]}")
        return uris[0], found
