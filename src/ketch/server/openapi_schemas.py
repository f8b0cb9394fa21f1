"""The schemas of Kubernetes' OpenAPI documents: their names, ``meta/v1``'s shared
schemas (``ObjectMeta``, ``ListMeta``, ``Status``, ...) and each kind's, whose spec
is its typed spec model made structural (:func:`ketch.server.structural.structural`)."""

from __future__ import annotations

import logging
from typing import Any

from ketch.core.kinds import Kind
from ketch.server.structural import PRESERVE, structural

log = logging.getLogger(__name__)

GVK = "x-kubernetes-group-version-kind"
META = "io.k8s.apimachinery.pkg.apis.meta.v1"
V3_REF = "#/components/schemas/"

# -- names ------------------------------------------------------------------------


def schema_prefix(group: str, version: str) -> str:
    """The prefix Kubernetes names a group version's schemas with:
    ``io.k8s.api.core.v1`` (core), ``io.k8s.api.batch.v1`` (Kubernetes' own groups:
    no dot, or ``*.k8s.io``), else the group reversed (``org.kubeflow.v1``)."""
    if not group:
        return f"io.k8s.api.core.{version}"
    if "." not in group:
        return f"io.k8s.api.{group}.{version}"
    if group.endswith(".k8s.io"):
        return f"io.k8s.api.{group.split('.', 1)[0]}.{version}"
    return ".".join([*reversed(group.split(".")), version])


def schema_name(kind: Kind, version: str) -> str:
    return f"{schema_prefix(kind.group, version)}.{kind.kind}"


def document_path(group: str, version: str) -> str:
    """A group version's key in the v3 index (``apis/kubeflow.org/v1``, ``api/v1``)."""
    return f"apis/{group}/{version}" if group else f"api/{version}"


def camel(group: str, version: str) -> str:
    words = [w for part in group.split(".") for w in part.split("-") if w]
    return "".join(w[:1].upper() + w[1:] for w in words) + version[:1].upper() + version[1:]


def ref(name: str) -> dict[str, Any]:
    return {"$ref": V3_REF + name}


# -- Kubernetes' shared schemas (meta/v1) ---------------------------------------------


def _s(description: str, **schema: Any) -> dict[str, Any]:
    return {"type": "string", "description": description, **schema}


def _i(description: str) -> dict[str, Any]:
    return {"type": "integer", "format": "int64", "description": description}


def _map(description: str) -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": {"type": "string", "default": ""},
        "description": description,
    }


def _metaref(name: str, description: str, **extra: Any) -> dict[str, Any]:
    return {"allOf": [ref(f"{META}.{name}")], "description": description, **extra}


_API_VERSION = _s(
    "The versioned schema of this representation of an object: servers convert "
    "recognized schemas to the latest internal value and may reject unrecognized ones."
)
_KIND = _s(
    "The REST resource this object represents, in CamelCase. Servers may infer it "
    "from the endpoint the client sends requests to; it cannot be updated."
)


def meta_schemas() -> dict[str, dict[str, Any]]:
    """``meta/v1``'s schemas every group version's document refers to."""
    time = f"{META}.Time"
    return {
        time: {
            "type": "string",
            "format": "date-time",
            "description": "A point in time, as RFC 3339 text in UTC (2006-01-02T15:04:05Z).",
        },
        f"{META}.FieldsV1": {
            "type": "object",
            "description": "The set of fields an entry of managedFields owns, as a tree.",
        },
        f"{META}.ManagedFieldsEntry": {
            "type": "object",
            "description": "Which fields of an object a field manager owns, and since when.",
            "properties": {
                "apiVersion": _s("The version of the fields' schema."),
                "fieldsType": _s("The format of fieldsV1; FieldsV1 is the only one."),
                "fieldsV1": _metaref("FieldsV1", "The fields owned."),
                "manager": _s("The name of the manager owning the fields."),
                "operation": _s("The operation that made this entry: Apply or Update."),
                "subresource": _s("The subresource the fields were written through."),
                "time": _metaref("Time", "When the fields were last written."),
            },
        },
        f"{META}.OwnerReference": {
            "type": "object",
            "description": "An object owning this one; the owner must be in the same "
            "namespace, or cluster-scoped.",
            "required": ["apiVersion", "kind", "name", "uid"],
            "properties": {
                "apiVersion": _s("The owner's API version.", default=""),
                "blockOwnerDeletion": {
                    "type": "boolean",
                    "description": "Whether the owner waits for this object to be "
                    "deleted before it is deleted itself (foreground deletion).",
                },
                "controller": {
                    "type": "boolean",
                    "description": "Whether this owner is the managing controller.",
                },
                "kind": _s("The owner's kind.", default=""),
                "name": _s("The owner's name.", default=""),
                "uid": _s("The owner's UID.", default=""),
            },
            "x-kubernetes-map-type": "atomic",
        },
        f"{META}.ObjectMeta": {
            "type": "object",
            "description": "The metadata every persisted resource has.",
            "properties": {
                "annotations": _map(
                    "Unstructured key value data that tools set and read; not queryable."
                ),
                "creationTimestamp": _metaref(
                    "Time", "When the server created the object; set by the server, read-only."
                ),
                "deletionGracePeriodSeconds": _i(
                    "Seconds the object is given to end gracefully before it is removed."
                ),
                "deletionTimestamp": _metaref(
                    "Time", "When the object will be deleted; set by the server on deletion."
                ),
                "finalizers": {
                    "type": "array",
                    "items": {"type": "string", "default": ""},
                    "description": "What must be done before the object is removed.",
                    "x-kubernetes-list-type": "set",
                },
                "generateName": _s(
                    "A prefix the server completes into a unique name when name is not given."
                ),
                "generation": _i("A number the server increments on each change of the spec."),
                "labels": _map(
                    "Key value pairs that organize and select objects (label selectors)."
                ),
                "managedFields": {
                    "type": "array",
                    "items": {"allOf": [ref(f"{META}.ManagedFieldsEntry")], "default": {}},
                    "description": "Which manager owns which fields (server-side apply).",
                },
                "name": _s("The object's name, unique in its namespace; cannot be updated."),
                "namespace": _s(
                    "The namespace the object is in; empty for cluster-scoped objects."
                ),
                "ownerReferences": {
                    "type": "array",
                    "items": {"allOf": [ref(f"{META}.OwnerReference")], "default": {}},
                    "description": "The objects this one depends on.",
                    "x-kubernetes-list-map-keys": ["uid"],
                    "x-kubernetes-list-type": "map",
                    "x-kubernetes-patch-merge-key": "uid",
                    "x-kubernetes-patch-strategy": "merge",
                },
                "resourceVersion": _s(
                    "An opaque value that changes on every write of the object: optimistic "
                    "concurrency, and where a watch resumes."
                ),
                "selfLink": _s("Deprecated; not set."),
                "uid": _s("The object's unique identity in time and space; set by the server."),
            },
        },
        f"{META}.ListMeta": {
            "type": "object",
            "description": "The metadata of a list.",
            "properties": {
                "continue": _s("The token to ask for the next page with, when there is one."),
                "remainingItemCount": _i("How many objects are left after this page, if known."),
                "resourceVersion": _s("The version of the list, where a watch may start."),
                "selfLink": _s("Deprecated; not set."),
            },
        },
        f"{META}.StatusCause": {
            "type": "object",
            "description": "One cause of a failure.",
            "properties": {
                "field": _s("The field that caused the failure (spec.a[0].b)."),
                "message": _s("What went wrong, for a person."),
                "reason": _s("What went wrong, for a machine (FieldValueInvalid, ...)."),
            },
        },
        f"{META}.StatusDetails": {
            "type": "object",
            "description": "More about a failure: the object and the causes.",
            "properties": {
                "causes": {
                    "type": "array",
                    "items": {"allOf": [ref(f"{META}.StatusCause")], "default": {}},
                    "description": "The causes of the failure.",
                    "x-kubernetes-list-type": "atomic",
                },
                "group": _s("The group of the object's kind."),
                "kind": _s("The object's kind."),
                "name": _s("The object's name."),
                "retryAfterSeconds": {
                    "type": "integer",
                    "format": "int32",
                    "description": "Seconds to wait before trying again, if set.",
                },
                "uid": _s("The object's UID."),
            },
        },
        f"{META}.Status": {
            "type": "object",
            "description": "What a call that does not answer an object answers: its outcome.",
            "properties": {
                "apiVersion": _API_VERSION,
                "code": {
                    "type": "integer",
                    "format": "int32",
                    "description": "The HTTP status code.",
                },
                "details": _metaref("StatusDetails", "More about the outcome."),
                "kind": _KIND,
                "message": _s("The outcome, for a person."),
                "metadata": _metaref("ListMeta", "Standard list metadata.", default={}),
                "reason": _s("The outcome, for a machine (NotFound, AlreadyExists, ...)."),
                "status": _s("Success or Failure."),
            },
            GVK: [{"group": "", "kind": "Status", "version": "v1"}],
        },
        f"{META}.Preconditions": {
            "type": "object",
            "description": "What must hold before an operation is carried out.",
            "properties": {
                "resourceVersion": _s("The object's resourceVersion must be this."),
                "uid": _s("The object's UID must be this."),
            },
        },
        f"{META}.DeleteOptions": {
            "type": "object",
            "description": "Options of a deletion.",
            "properties": {
                "apiVersion": _API_VERSION,
                "dryRun": {
                    "type": "array",
                    "items": {"type": "string", "default": ""},
                    "description": "All: check the deletion without carrying it out.",
                    "x-kubernetes-list-type": "atomic",
                },
                "gracePeriodSeconds": _i("Seconds the object is given before it is removed."),
                "kind": _KIND,
                "preconditions": _metaref("Preconditions", "What must hold first."),
                "propagationPolicy": _s(
                    "Whether and how dependents are deleted: Orphan, Background or Foreground."
                ),
            },
        },
        f"{META}.Patch": {
            "type": "object",
            "description": "The body of a PATCH: a JSON patch, a JSON merge patch or an "
            "apply configuration, as its Content-Type says.",
        },
    }


# -- a kind's schemas -------------------------------------------------------------


def published_spec(kind: Kind) -> dict[str, Any]:
    """The structural schema of ``kind``'s spec (free-form without a model)."""
    described = f"What the {kind.kind} should be: the desired state its controller brings about."
    if kind.spec_schema is not None:
        try:
            converted = structural(kind.spec_schema())
        except Exception:
            log.exception(
                "the spec schema of %s could not be made; publishing it free-form", kind.kind
            )
        else:
            converted.setdefault("description", described)
            return converted
    return {"type": "object", PRESERVE: True, "description": described}


def kind_schemas(kind: Kind, version: str) -> dict[str, dict[str, Any]]:
    """The schemas of ``kind`` and its list at ``version``, by name."""
    name = schema_name(kind, version)
    scope = "namespaced" if kind.namespaced else "cluster-scoped"
    fields: dict[str, Any]
    if kind.object_schema is not None:  # top-level fields, as Kubernetes' core kinds have
        fields = dict(kind.object_schema())
    else:
        fields = {
            "spec": published_spec(kind),
            "status": {
                "type": "object",
                PRESERVE: True,
                "description": f"What the {kind.kind} is: its observed state, written by "
                "its controller.",
            },
        }
    kind_schema = {
        "type": "object",
        "description": f"{kind.kind} is a {scope} {kind.group or 'core'}/{version} resource "
        "served by Ketch.",
        "properties": {
            "apiVersion": _API_VERSION,
            "kind": _KIND,
            "metadata": _metaref("ObjectMeta", "Standard object metadata.", default={}),
            **fields,
        },
        GVK: [{"group": kind.group, "kind": kind.kind, "version": version}],
    }
    list_schema = {
        "type": "object",
        "description": f"A list of {kind.kind} objects.",
        "required": ["items"],
        "properties": {
            "apiVersion": _API_VERSION,
            "items": {
                "type": "array",
                "items": ref(name),
                "description": f"The {kind.plural}.",
            },
            "kind": _KIND,
            "metadata": _metaref("ListMeta", "Standard list metadata.", default={}),
        },
        GVK: [{"group": kind.group, "kind": f"{kind.kind}List", "version": version}],
    }
    return {name: kind_schema, f"{name}List": list_schema}
