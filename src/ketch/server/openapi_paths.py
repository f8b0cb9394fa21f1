"""The paths of a kind in Kubernetes' OpenAPI documents, as a CRD's are published:
list, create, read, replace, patch and delete, the ``status`` subresource and the
list in every namespace, each operation with ``x-kubernetes-action`` and
``x-kubernetes-group-version-kind``, every write with ``dryRun``, ``fieldManager``
and ``fieldValidation`` (which tells kubectl the server validates fields), PATCH with
JSON patch, merge patch and apply patch (no strategic merge patch, which custom
resources do not take; the core group's kinds take it too, as Kubernetes' own kinds
do). Which operations a kind has follows the verbs discovery lists (``Kind.verbs``,
:data:`~ketch.server.discovery.STATUS_VERBS` when it has the ``status`` subresource).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ketch.core.kinds import Kind
from ketch.server.discovery import STATUS_VERBS
from ketch.server.openapi_schemas import GVK, META, camel, ref, schema_name
from ketch.server.patches import builtin_group


def _query(name: str, description: str, kind: str = "string") -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "description": description,
        "schema": {"type": kind, "uniqueItems": True},
    }


def _path_param(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string", "uniqueItems": True},
    }


_PRETTY = _query("pretty", "If 'true', the output is pretty printed.")
_DRY_RUN = _query("dryRun", "All: check the request without persisting anything.")
_FIELD_MANAGER = _query(
    "fieldManager", "The name of the actor making the change (server-side apply ownership)."
)
_FIELD_VALIDATION = _query(
    "fieldValidation",
    "What to do with unknown or duplicate fields in the object: Ignore, Warn or Strict.",
)
_FORCE = _query("force", "Take over the fields other managers own (apply patches).", "boolean")
_WRITE_PARAMS = [_DRY_RUN, _FIELD_MANAGER, _FIELD_VALIDATION]
_LIST_PARAMS = [
    _query("allowWatchBookmarks", "Ask a watch for BOOKMARK events.", "boolean"),
    _query("continue", "The token of the next page, from the previous page's metadata."),
    _query("fieldSelector", "Select objects by their fields (metadata.name=x)."),
    _query("labelSelector", "Select objects by their labels (a=b,c in (d,e),!f)."),
    _query("limit", "The most objects to answer; the rest follow with continue.", "integer"),
    _query("resourceVersion", "The version to list or watch from."),
    _query("resourceVersionMatch", "How resourceVersion applies to a list."),
    _query("sendInitialEvents", "Start a watch with the objects that exist.", "boolean"),
    _query("timeoutSeconds", "End the call after this many seconds.", "integer"),
    _query("watch", "Watch for changes instead of listing.", "boolean"),
]
_DELETE_PARAMS = [
    _DRY_RUN,
    _query("gracePeriodSeconds", "Seconds the object is given before it is removed.", "integer"),
    _query("propagationPolicy", "Whether and how dependents are deleted."),
]
_PATCH_TYPES = (
    "application/apply-patch+yaml",
    "application/json-patch+json",
    "application/merge-patch+json",
)
_CORE_PATCH_TYPES = (*_PATCH_TYPES, "application/strategic-merge-patch+json")


def _body(schema: dict[str, Any], types: Iterable[str] = ("*/*",)) -> dict[str, Any]:
    return {"content": {t: {"schema": schema} for t in types}, "required": True}


def _responses(schema: dict[str, Any], *codes: str) -> dict[str, Any]:
    described = {"200": "OK", "201": "Created", "202": "Accepted"}
    content = {t: {"schema": schema} for t in ("application/json", "application/yaml")}
    answers: dict[str, Any] = {
        code: {"description": described[code], "content": content} for code in codes
    }
    answers["401"] = {"description": "Unauthorized"}
    return answers


@dataclass(frozen=True)
class Operations:
    """What makes the operations of one kind at one version."""

    kind: Kind
    version: str

    @property
    def gvk(self) -> dict[str, str]:
        return {"group": self.kind.group, "kind": self.kind.kind, "version": self.version}

    def op(
        self, verb: str, action: str, describe: str, *, suffix: str = "", **fields: Any
    ) -> dict[str, Any]:
        scope = "Namespaced" if self.kind.namespaced else ""
        operation: dict[str, Any] = {
            "tags": [camel(self.kind.group or "core", self.version)],
            "description": describe,
            "operationId": f"{verb}{camel(self.kind.group or 'core', self.version)}"
            f"{scope}{self.kind.kind}{suffix}",
            **fields,
            "x-kubernetes-action": action,
            GVK: self.gvk,
        }
        return operation

    def _read_write(
        self, verbs: set[str], subject: str, suffix: str, patch_types: tuple[str, ...]
    ) -> dict[str, Any]:
        """The ``get``, ``put`` and ``patch`` operations ``verbs`` allow on an object
        (``suffix`` ``""``) or on its status (``"Status"``); ``subject`` is what they
        act on (``a PyTorchJob``, ``the status of a PyTorchJob``)."""
        one_ref = ref(schema_name(self.kind, self.version))
        operations: dict[str, Any] = {}
        if "get" in verbs:
            operations["get"] = self.op(
                "read",
                "get",
                f"Read {subject}.",
                suffix=suffix,
                responses=_responses(one_ref, "200"),
            )
        if "update" in verbs:
            operations["put"] = self.op(
                "replace",
                "put",
                f"Replace {subject}.",
                suffix=suffix,
                parameters=_WRITE_PARAMS,
                requestBody=_body(one_ref),
                responses=_responses(one_ref, "200", "201"),
            )
        if "patch" in verbs:
            operations["patch"] = self.op(
                "patch",
                "patch",
                f"Partially update {subject}.",
                suffix=suffix,
                parameters=[*_WRITE_PARAMS, _FORCE],
                requestBody=_body(ref(f"{META}.Patch"), patch_types),
                responses=_responses(one_ref, "200", "201"),
            )
        return operations

    def paths(self) -> dict[str, dict[str, Any]]:
        kind, version = self.kind, self.version
        one_ref = ref(schema_name(kind, version))
        list_ref = ref(f"{schema_name(kind, version)}List")
        status_ref = ref(f"{META}.Status")
        base = f"/apis/{kind.group}/{version}" if kind.group else f"/api/{version}"
        name_param = _path_param("name", f"The name of the {kind.kind}.")
        scoped = (
            [_path_param("namespace", "The namespace of the objects.")] if kind.namespaced else []
        )
        collection = (
            f"{base}/namespaces/{{namespace}}/{kind.plural}"
            if kind.namespaced
            else f"{base}/{kind.plural}"
        )
        item = f"{collection}/{{name}}"
        verbs = set(kind.verbs)
        status_verbs = set(STATUS_VERBS) if "status" in kind.subresources else set()
        # Kubernetes' own kinds take strategic merge patches, custom resources do not
        patch_types = _CORE_PATCH_TYPES if builtin_group(kind.group) else _PATCH_TYPES

        listed: dict[str, Any] = {"parameters": [*scoped, _PRETTY]}
        if "list" in verbs:
            listed["get"] = self.op(
                "list",
                "list",
                f"List or watch {kind.plural}.",
                parameters=_LIST_PARAMS,
                responses=_responses(list_ref, "200"),
            )
        if "create" in verbs:
            listed["post"] = self.op(
                "create",
                "post",
                f"Create a {kind.kind}.",
                parameters=_WRITE_PARAMS,
                requestBody=_body(one_ref),
                responses=_responses(one_ref, "200", "201", "202"),
            )
        one: dict[str, Any] = {
            "parameters": [name_param, *scoped, _PRETTY],
            **self._read_write(verbs, f"a {kind.kind}", "", patch_types),
        }
        if "delete" in verbs:
            one["delete"] = self.op(
                "delete",
                "delete",
                f"Delete a {kind.kind}.",
                parameters=_DELETE_PARAMS,
                requestBody={"content": {"*/*": {"schema": ref(f"{META}.DeleteOptions")}}},
                responses={
                    **_responses(one_ref, "200"),
                    "202": {**_responses(status_ref, "202")["202"]},
                },
            )
        status: dict[str, Any] = {
            "parameters": [name_param, *scoped, _PRETTY],
            **self._read_write(
                status_verbs, f"the status of a {kind.kind}", "Status", _PATCH_TYPES
            ),
        }
        paths = {collection: listed, item: one}
        if status_verbs:
            paths[f"{item}/status"] = status
        if kind.namespaced and "list" in verbs:
            paths[f"{base}/{kind.plural}"] = {
                "parameters": [_PRETTY],
                "get": self.op(
                    "list",
                    "list",
                    f"List or watch {kind.plural} in every namespace.",
                    suffix="ForAllNamespaces",
                    parameters=_LIST_PARAMS,
                    responses=_responses(list_ref, "200"),
                ),
            }
        return paths
