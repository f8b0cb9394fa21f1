"""The PATCH body types Kubernetes takes, applied to an object's manifest:

- ``application/merge-patch+json`` (RFC 7386): mappings merge, ``null`` deletes a key,
  lists are replaced (plain ``application/json`` is taken as one, as Ketch's own
  clients send it);
- ``application/json-patch+json`` (RFC 6902): a list of ``add``, ``remove``,
  ``replace``, ``move``, ``copy`` and ``test`` operations;
- ``application/strategic-merge-patch+json``: a merge patch whose lists of objects
  merge by their key (``containers`` by ``name``, ...), with Kubernetes' ``$patch``,
  ``$retainKeys``, ``$setElementOrder/`` and ``$deleteFromPrimitiveList/`` directives.
  Only Kubernetes' own kinds take it (the core group, ``batch``); a custom resource
  refuses it with 415, as Kubernetes does, since its Go types (where the keys are
  declared) are not known: Ketch's Kubeflow kinds are custom resources;
- ``application/apply-patch+yaml``: server-side apply (:mod:`ketch.server.fieldmanager`).

A body that is not a patch of its type is a 400 naming the body; a JSON patch whose
operation does not apply (a missing path, a failed ``test``) is a 422.
"""

from __future__ import annotations

import copy
from typing import Any, Literal

import jsonpatch  # type: ignore[import-untyped,unused-ignore]
import jsonpointer  # type: ignore[import-untyped,unused-ignore]

from ketch.core.errors import InvalidSpec, KetchError
from ketch.core.kinds import Kind
from ketch.core.sources import merge_patch

PatchType = Literal["merge", "json", "strategic", "apply"]

MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
APPLY = "application/apply-patch+yaml"

_TYPES: dict[str, PatchType] = {
    MERGE: "merge",
    "application/json": "merge",
    JSON_PATCH: "json",
    STRATEGIC: "strategic",
    APPLY: "apply",
}
ACCEPTED = (JSON_PATCH, MERGE, STRATEGIC, APPLY)


class UnsupportedMediaType(KetchError):
    """A PATCH whose Content-Type is not a patch type the object takes (415)."""

    http_status = 415
    exit_code = 2


class PatchFailed(KetchError):
    """A patch that does not apply to the object (a JSON patch operation on a missing
    path, a failed ``test``): 422, as Kubernetes answers it."""

    http_status = 422
    exit_code = 2


def builtin_group(group: str) -> bool:
    """Whether ``group`` is one of Kubernetes' own (the core group, ``batch``,
    ``events.k8s.io``...), whose kinds take strategic merge patches; every other group
    is a custom resource's."""
    return not group or "." not in group or group.endswith(".k8s.io")


def patch_type(content_type: str | None, kind: Kind) -> PatchType:
    """The patch type a PATCH's ``Content-Type`` names (415 when it names none, or a
    strategic merge patch of a custom resource)."""
    media = (content_type or "").split(";")[0].strip().lower()
    found = _TYPES.get(media)
    if found is None:
        raise UnsupportedMediaType(
            f"the body of the request was in an unknown format - accepted media types "
            f"include: {', '.join(ACCEPTED)}"
            + (f" (got {media!r})" if media else " (no Content-Type given)")
        )
    if found == "strategic" and not builtin_group(kind.group):
        raise UnsupportedMediaType(
            f"the body of the request was in an unknown format - accepted media types "
            f"include: {JSON_PATCH}, {MERGE}, {APPLY}: {kind.kind} "
            f"({kind.plural}.{kind.group}) is a custom resource, and custom resources do "
            "not take strategic merge patches; use --type=merge or --type=json"
        )
    return found


# -- JSON patch (RFC 6902) -------------------------------------------------------------


def json_patch(document: dict[str, Any], operations: Any) -> dict[str, Any]:
    """``document`` with the RFC 6902 ``operations`` applied."""
    if not isinstance(operations, list):
        raise InvalidSpec(
            f"a JSON patch must be a list of operations, got {type(operations).__name__}",
            field="body",
        )
    for index, operation in enumerate(operations):
        if not isinstance(operation, dict) or not isinstance(operation.get("op"), str):
            raise InvalidSpec(
                'each operation must be an object with "op" and "path"', field=f"body[{index}]"
            )
    try:
        patch = jsonpatch.JsonPatch(operations)
        result = patch.apply(copy.deepcopy(document))
    except jsonpatch.JsonPatchTestFailed as exc:
        raise PatchFailed(f"the JSON patch's test operation failed: {exc}") from None
    except jsonpatch.InvalidJsonPatch as exc:
        raise InvalidSpec(f"not a valid JSON patch: {exc}", field="body") from None
    except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as exc:
        raise PatchFailed(f"the JSON patch does not apply to the object: {exc}") from None
    except (TypeError, KeyError, IndexError, ValueError) as exc:
        raise PatchFailed(f"the JSON patch does not apply to the object: {exc}") from None
    if not isinstance(result, dict):
        raise PatchFailed("the JSON patch replaced the whole object with something else")
    return result


# -- JSON merge patch -------------------------------------------------------------------


def json_merge_patch(document: dict[str, Any], patch: Any) -> dict[str, Any]:
    """``document`` with the RFC 7386 merge ``patch`` applied."""
    if not isinstance(patch, dict):
        raise InvalidSpec(
            f"a merge patch must be a JSON object, got {type(patch).__name__}", field="body"
        )
    result = merge_patch(document, patch)
    assert isinstance(result, dict)
    return result


# -- strategic merge patch --------------------------------------------------------------

#: The lists of Kubernetes' own types whose items merge by a key (``patchMergeKey``).
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "ports": "containerPort",
    "imagePullSecrets": "name",
    "hostAliases": "ip",
    "ownerReferences": "uid",
    "conditions": "type",
    "topologySpreadConstraints": "topologyKey",
    "resourceClaims": "name",
    "readinessGates": "conditionType",
}
#: Lists of scalars that merge as sets (``patchStrategy: merge``).
MERGED_SCALAR_LISTS = frozenset({"finalizers"})

_ORDER = "$setElementOrder/"
_DELETE_FROM = "$deleteFromPrimitiveList/"


def strategic_merge_patch(document: dict[str, Any], patch: Any) -> dict[str, Any]:
    """``document`` with the strategic merge ``patch`` applied."""
    if not isinstance(patch, dict):
        raise InvalidSpec(
            f"a strategic merge patch must be a JSON object, got {type(patch).__name__}",
            field="body",
        )
    result = _merge_map(document, patch, "")
    if result is None:
        raise PatchFailed("the patch deletes the whole object ($patch: delete)")
    return result


def apply_patch(document: dict[str, Any], kind_of_patch: PatchType, body: Any) -> dict[str, Any]:
    """``document`` patched by ``body``, a JSON patch, strategic merge patch or merge
    patch as ``kind_of_patch`` says (an apply is :mod:`ketch.server.fieldmanager`'s)."""
    if kind_of_patch == "json":
        return json_patch(document, body)
    if kind_of_patch == "strategic":
        return strategic_merge_patch(document, body)
    return json_merge_patch(document, body)


def _merge_map(target: Any, patch: dict[str, Any], path: str) -> dict[str, Any] | None:
    directive = patch.get("$patch")
    if directive == "delete":
        return None
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if not k.startswith("$")}
    if directive is not None:
        raise InvalidSpec(f"unknown $patch directive {directive!r}", field=path or "body")
    result = dict(target) if isinstance(target, dict) else {}
    orders: dict[str, list[Any]] = {}
    for key, value in patch.items():
        where = f"{path}.{key}" if path else key
        if key == "$retainKeys":
            continue
        if key.startswith(_ORDER):
            if isinstance(value, list):
                orders[key[len(_ORDER) :]] = value
            continue
        if key.startswith(_DELETE_FROM):
            field = key[len(_DELETE_FROM) :]
            if isinstance(value, list) and isinstance(result.get(field), list):
                result[field] = [v for v in result[field] if v not in value]
            continue
        if key.startswith("$"):
            raise InvalidSpec(f"unknown patch directive {key!r}", field=where)
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            merged = _merge_map(result.get(key), value, where)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        elif isinstance(value, list):
            result[key] = _merge_list(key, result.get(key), value, where)
        else:
            result[key] = copy.deepcopy(value)
    retain = patch.get("$retainKeys")
    if isinstance(retain, list):
        result = {k: v for k, v in result.items() if k in retain}
    for field, order in orders.items():
        if isinstance(result.get(field), list):
            result[field] = _ordered(field, result[field], order)
    return result


def _merge_list(field: str, target: Any, patch: list[Any], path: str) -> list[Any]:
    current = list(target) if isinstance(target, list) else []
    key = MERGE_KEYS.get(field)
    if field in MERGED_SCALAR_LISTS and all(not isinstance(v, dict | list) for v in patch):
        return current + [v for v in patch if v not in current]
    if key is None or not all(isinstance(item, dict) for item in patch):
        return [item for item in copy.deepcopy(patch) if not _is_directive(item)]
    if any(item.get("$patch") == "replace" for item in patch):
        return [
            {k: v for k, v in item.items() if k != "$patch"}
            for item in copy.deepcopy(patch)
            if item.get("$patch") != "replace"
        ]
    for index, item in enumerate(patch):
        if key not in item:
            raise InvalidSpec(
                f"an item of {field} must name its merge key {key!r}", field=f"{path}[{index}]"
            )
        at = next(
            (
                i
                for i, old in enumerate(current)
                if isinstance(old, dict) and old.get(key) == item[key]
            ),
            None,
        )
        if item.get("$patch") == "delete":
            if at is not None:
                del current[at]
            continue
        merged = _merge_map(current[at] if at is not None else {}, item, f"{path}[{index}]")
        if merged is None:
            continue
        if at is None:
            current.append(merged)
        else:
            current[at] = merged
    return current


def _is_directive(item: Any) -> bool:
    return isinstance(item, dict) and set(item) == {"$patch"}


def _ordered(field: str, items: list[Any], order: list[Any]) -> list[Any]:
    key = MERGE_KEYS.get(field)

    def position(item: Any) -> int:
        wanted = item.get(key) if key and isinstance(item, dict) else item
        for index, entry in enumerate(order):
            named = entry.get(key) if key and isinstance(entry, dict) else entry
            if named == wanted:
                return index
        return len(order)

    return sorted(items, key=position)
