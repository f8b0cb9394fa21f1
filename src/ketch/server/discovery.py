"""Kubernetes API discovery, generic over every kind the capabilities serve.

::

    GET /version                      the Kubernetes version Ketch speaks, and Ketch's own
    GET /api                          APIVersions of the core group (aggregated when asked)
    GET /api/v1                       APIResourceList of the core group's kinds
    GET /apis                         APIGroupList (aggregated when asked)
    GET /apis/ketch.dev/v1/kinds      every kind served, as Ketch's CLI reads them
    GET /apis/{group}/{version}       APIResourceList of a group version

``/api`` and ``/apis`` answer aggregated discovery (``APIGroupDiscoveryList``) when the
``Accept`` header asks for it, in the version it asks for: kubectl 1.27 and 1.28 ask
for ``apidiscovery.k8s.io/v2beta1`` only, later ones for ``v2`` first. The answer's
``Content-Type`` repeats the parameters asked for, which is how client-go tells the
formats apart; without such an ``Accept`` they answer the legacy lists. Every answer
is made once per app and carries an ``ETag``.

These routes are included after the capabilities' own routes: KFP's facade
(``/apis/v2beta1/...``) would otherwise be taken for an API group.
"""

from __future__ import annotations

import hashlib
import json
import platform
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ketch.core import config
from ketch.core.access import AUTHENTICATED, rule
from ketch.core.errors import KetchError, NotFound
from ketch.core.kinds import Kind, KindRegistry
from ketch.core.routes import ERROR_RESPONSES
from ketch.server.media import parse_accept
from ketch.server.state import api_state, per_app

router = APIRouter(responses=ERROR_RESPONSES, tags=["discovery"])

#: The Kubernetes version Ketch answers ``/version`` with. Its minor version picks the
#: kubectl the machine image's ``kubectl`` dispatcher runs (``kubectl.1.32``).
KUBERNETES_MAJOR = "1"
KUBERNETES_MINOR = "32"
KUBERNETES_VERSION = f"v{KUBERNETES_MAJOR}.{KUBERNETES_MINOR}.0+ketch"

#: What a client may do with a kind's ``status`` subresource (its objects: ``Kind.verbs``,
#: all of :data:`ketch.core.kinds.VERBS` unless the kind says otherwise).
STATUS_VERBS = ("get", "update")

DISCOVERY_GROUP = "apidiscovery.k8s.io"
DISCOVERY_VERSIONS = ("v2", "v2beta1")
DISCOVERY_LIST = "APIGroupDiscoveryList"


class NotAcceptable(KetchError):
    """No representation the request's ``Accept`` header allows: 406."""

    http_status = 406


# -- content negotiation ------------------------------------------------------------


def discovery_format(header: str | None) -> str | None:
    """What ``/api`` and ``/apis`` answer for an ``Accept`` header: ``"v2"`` or
    ``"v2beta1"`` (aggregated discovery), ``""`` (the legacy list), or ``None`` when
    nothing asked for can be given."""
    for media in parse_accept(header):
        if not media.matches("application/json"):
            continue
        wanted = media.params.get("as")
        if wanted is None:
            return ""
        if (
            wanted == DISCOVERY_LIST
            and media.params.get("g") == DISCOVERY_GROUP
            and media.params.get("v") in DISCOVERY_VERSIONS
        ):
            return media.params["v"]
    return None


def discovery_media_type(version: str) -> str:
    """The ``Content-Type`` of aggregated discovery in ``version``."""
    return f"application/json;g={DISCOVERY_GROUP};v={version};as={DISCOVERY_LIST}"


# -- the documents ------------------------------------------------------------------


def version_priority(version: str) -> tuple[int, int, int]:
    """Sort key putting Kubernetes versions in their preference order: GA before beta
    before alpha, higher numbers first (``v2``, ``v1``, ``v1beta2``, ``v1beta1``,
    ``v1alpha1``); anything else last."""
    text = version.removeprefix("v")
    for stage, rank in (("beta", 1), ("alpha", 2)):
        major, found, minor = text.partition(stage)
        if found and major.isdigit() and minor.isdigit():
            return (rank, -int(major), -int(minor))
    if text.isdigit():
        return (0, -int(text), 0)
    return (3, 0, 0)


def group_versions(kinds: Iterable[Kind]) -> dict[str, list[str]]:
    """The versions each group serves, preferred first, groups by name."""
    groups: dict[str, set[str]] = {}
    for kind in kinds:
        groups.setdefault(kind.group, set()).update(kind.versions)
    return {g: sorted(v, key=version_priority) for g, v in sorted(groups.items())}


def kinds_at(kinds: Iterable[Kind], group: str, version: str) -> list[Kind]:
    """The kinds served at ``group/version``, by plural."""
    return sorted(
        (k for k in kinds if k.group == group and version in k.versions), key=lambda k: k.plural
    )


def api_resource(kind: Kind) -> dict[str, Any]:
    """A kind as an ``APIResourceList`` entry."""
    entry: dict[str, Any] = {
        "name": kind.plural,
        "singularName": kind.singular,
        "namespaced": kind.namespaced,
        "kind": kind.kind,
        "verbs": list(kind.verbs),
    }
    if kind.short_names:
        entry["shortNames"] = list(kind.short_names)
    if kind.categories:
        entry["categories"] = list(kind.categories)
    return entry


def status_resource(kind: Kind) -> dict[str, Any]:
    """A kind's ``status`` subresource as an ``APIResourceList`` entry."""
    return {
        "name": f"{kind.plural}/status",
        "singularName": "",
        "namespaced": kind.namespaced,
        "kind": kind.kind,
        "verbs": list(STATUS_VERBS),
    }


def resource_list(kinds: Sequence[Kind], group: str, version: str) -> dict[str, Any]:
    """The ``APIResourceList`` of ``group/version``."""
    resources: list[dict[str, Any]] = []
    for kind in kinds:
        resources.append(api_resource(kind))
        if "status" in kind.subresources:
            resources.append(status_resource(kind))
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": resources,
    }


def group_list(kinds: Iterable[Kind]) -> dict[str, Any]:
    """The legacy ``APIGroupList`` of the named groups (the core group is ``/api``'s)."""
    groups = []
    for group, versions in group_versions(kinds).items():
        if not group:
            continue
        groups.append(
            {
                "name": group,
                "versions": [{"groupVersion": f"{group}/{v}", "version": v} for v in versions],
                "preferredVersion": {
                    "groupVersion": f"{group}/{versions[0]}",
                    "version": versions[0],
                },
            }
        )
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def _discovered_resource(kind: Kind, version: str) -> dict[str, Any]:
    response_kind = {"group": kind.group, "version": version, "kind": kind.kind}
    entry: dict[str, Any] = {
        "resource": kind.plural,
        "responseKind": response_kind,
        "scope": "Namespaced" if kind.namespaced else "Cluster",
        "singularResource": kind.singular,
        "verbs": list(kind.verbs),
        "subresources": [
            {"subresource": "status", "responseKind": response_kind, "verbs": list(STATUS_VERBS)}
        ]
        if "status" in kind.subresources
        else [],
    }
    if kind.short_names:
        entry["shortNames"] = list(kind.short_names)
    if kind.categories:
        entry["categories"] = list(kind.categories)
    return entry


def aggregated(kinds: Sequence[Kind], version: str, *, core: bool) -> dict[str, Any]:
    """The ``APIGroupDiscoveryList`` (``apidiscovery.k8s.io/{version}``) of the core
    group (``/api``: always ``v1``, with whatever core kinds are served) or of the named
    groups (``/apis``)."""
    groups = group_versions(kinds)
    if core:
        groups = {"": sorted({*groups.get("", []), "v1"}, key=version_priority)}
    else:
        groups.pop("", None)
    items = [
        {
            "metadata": {"name": group},
            "versions": [
                {
                    "version": v,
                    "resources": [_discovered_resource(k, v) for k in kinds_at(kinds, group, v)],
                    "freshness": "Current",
                }
                for v in versions
            ],
        }
        for group, versions in groups.items()
    ]
    return {
        "kind": DISCOVERY_LIST,
        "apiVersion": f"{DISCOVERY_GROUP}/{version}",
        "metadata": {},
        "items": items,
    }


def go_platform() -> str:
    """This machine as Go names it (``linux/amd64``, ``darwin/arm64``)."""
    system = {"win32": "windows", "cygwin": "windows"}.get(sys.platform, sys.platform)
    system = "linux" if system.startswith("linux") else system
    machine = platform.machine().lower()
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(
        machine, machine
    )
    return f"{system}/{arch}"


def version_info() -> dict[str, str]:
    """``/version``: the Kubernetes version Ketch speaks (``gitVersion``, ``major``,
    ``minor``; what kubectl checks its skew against and the dispatcher picks a kubectl
    by) and Ketch's own version (``ketchVersion``)."""
    return {
        "major": KUBERNETES_MAJOR,
        "minor": KUBERNETES_MINOR,
        "gitVersion": KUBERNETES_VERSION,
        "gitCommit": "",
        "gitTreeState": "",
        "buildDate": "",
        "goVersion": "",
        "compiler": platform.python_implementation().lower(),
        "platform": go_platform(),
        "ketchVersion": config.version(),
    }


def json_body(data: Any) -> bytes:
    """``data`` as compact JSON: the bytes a served document's ``ETag`` is made from."""
    return json.dumps(data, separators=(",", ":")).encode()


#: How a client may cache a document that may change (the server's next start).
REVALIDATE = "no-cache, private"


@dataclass(frozen=True)
class Document:
    """A JSON document made once, with its ``ETag``."""

    body: bytes
    etag: str

    @classmethod
    def of(cls, data: Any) -> Document:
        body = json_body(data)
        return cls(body, f'"{hashlib.sha256(body).hexdigest()[:32]}"')

    def response(
        self,
        request: Request,
        media_type: str = "application/json",
        *,
        cache_control: str = REVALIDATE,
    ) -> Response:
        """The document, or 304 when the request's ``If-None-Match`` names its ``ETag``."""
        headers = {"ETag": self.etag, "Vary": "Accept", "Cache-Control": cache_control}
        if _etag_matches(request.headers.get("if-none-match"), self.etag):
            return Response(status_code=304, headers=headers)
        return Response(self.body, media_type=media_type, headers=headers)


def _etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    tags = {t.strip().removeprefix("W/") for t in header.split(",")}
    return "*" in tags or etag in tags


class Discovery:
    """Every discovery document of one app's kinds, made when first asked for."""

    def __init__(self, kinds: KindRegistry) -> None:
        self.kinds = list(kinds)
        self._documents: dict[tuple[str, ...], Document] = {}

    def document(self, *key: str) -> Document:
        """The document for ``key``: ``("apis", format)``, ``("api", format)`` (format
        ``""`` for the legacy list, or ``v2``/``v2beta1``), ``("group", group,
        version)`` or ``("version",)``."""
        found = self._documents.get(key)
        if found is None:
            found = self._documents[key] = Document.of(self._make(key))
        return found

    def _make(self, key: tuple[str, ...]) -> Any:
        what = key[0]
        if what == "apis":
            return aggregated(self.kinds, key[1], core=False) if key[1] else group_list(self.kinds)
        if what == "api":
            return aggregated(self.kinds, key[1], core=True)
        if what == "group":
            group, version = key[1], key[2]
            return resource_list(kinds_at(self.kinds, group, version), group, version)
        if what == "version":
            return version_info()
        raise KeyError(key)


def discovery_of(request: Request) -> Discovery:
    """The app's :class:`Discovery` (made on first use)."""
    return per_app(request, "kube_discovery", Discovery)


def _negotiated(request: Request, key: str) -> Response:
    asked = discovery_format(request.headers.get("accept"))
    if asked is None:
        raise NotAcceptable(
            f"none of the media types in Accept ({request.headers.get('accept')}) can be "
            "given; ask for application/json, or for aggregated discovery with "
            f"{discovery_media_type('v2')} or {discovery_media_type('v2beta1')}"
        )
    document = discovery_of(request).document(key, asked)
    if asked:
        return document.response(request, discovery_media_type(asked))
    return document.response(request)


# -- routes ---------------------------------------------------------------------------


@router.get("/version", summary="The Kubernetes version served, and Ketch's own")
@rule(AUTHENTICATED)
async def version(request: Request) -> Response:
    return discovery_of(request).document("version").response(request)


@router.get("/api", summary="The core group's versions (aggregated discovery when asked)")
@rule(AUTHENTICATED)
async def core_versions(request: Request) -> Response:
    asked = discovery_format(request.headers.get("accept"))
    if asked == "":
        host = request.headers.get("host") or f"{request.url.hostname}:{request.url.port}"
        return Response(
            json.dumps(
                {
                    "kind": "APIVersions",
                    "versions": ["v1"],
                    "serverAddressByClientCIDRs": [
                        {"clientCIDR": "0.0.0.0/0", "serverAddress": host}
                    ],
                }
            ),
            media_type="application/json",
            headers={"Vary": "Accept", "Cache-Control": "no-cache, private"},
        )
    return _negotiated(request, "api")


@router.get("/api/v1", summary="The core group's kinds")
@rule(AUTHENTICATED)
async def core_resources(request: Request) -> Response:
    return discovery_of(request).document("group", "", "v1").response(request)


@router.get("/apis", summary="API groups and versions (aggregated discovery when asked)")
@rule(AUTHENTICATED)
async def api_groups(request: Request) -> Response:
    return _negotiated(request, "apis")


@router.get("/apis/ketch.dev/v1/kinds", summary="Every kind served")
@rule(AUTHENTICATED)
async def list_kinds(request: Request) -> dict[str, Any]:
    return {
        "apiVersion": "ketch.dev/v1",
        "kind": "KindList",
        "items": [kind.to_json() for kind in api_state(request).kinds],
    }


@router.get("/apis/{group}/{version}", summary="The kinds of a group version")
@rule(AUTHENTICATED)
async def api_resources(group: str, version: str, request: Request) -> Response:
    discovery = discovery_of(request)
    if not kinds_at(discovery.kinds, group, version):
        raise NotFound(f"the server has no API group version {group}/{version}")
    return discovery.document("group", group, version).response(request)
