"""Field ownership (``metadata.managedFields``) and server-side apply, as the
Kubernetes API server keeps them, at the fidelity ``kubectl apply --server-side``
needs.

Every write through the API is made by a field manager: the ``fieldManager`` query
parameter, else the first part of the client's ``User-Agent`` (``kubectl``,
``OpenAPI-Generator``), as Kubernetes names it. An entry of ``managedFields`` says
which fields one manager owns, by which operation (``Apply`` for server-side apply,
``Update`` for every other write), with which apiVersion and when, its fields as a
``FieldsV1`` tree (``{"f:spec": {"f:replicas": {}}}``).

- An update (create, PUT, any non-apply PATCH) gives its manager the fields whose
  value it set or changed, and takes them from every other manager; fields it removed
  are owned by nobody.
- An apply (``PATCH`` with ``application/apply-patch+yaml``) sets the fields of the
  configuration it sends; its manager then owns exactly those. A field another manager
  owns with another value is a conflict, answered 409 and naming the field and its
  manager, unless the apply is forced (``force=true``, ``kubectl apply --server-side
  --force-conflicts``), which takes the field over. A field the same manager applied
  before and now leaves out is removed from the object, unless another manager owns
  it too. Applying the same configuration again changes nothing.

What is tracked: ``metadata.labels``, ``metadata.annotations``,
``metadata.ownerReferences`` and ``metadata.finalizers``, and every top-level field
but ``apiVersion``, ``kind``, ``metadata`` and ``status`` (a status write is tracked
in the status only, with ``subresource: status``). Mappings are granular, each key its
own field; lists are atomic (owned, set and replaced whole), as a custom resource's
lists are when its schema declares no list type.

A write that sends ``managedFields`` different from the stored ones replaces them
(kubectl does so when it moves an object from client-side to server-side apply); an
empty or missing list keeps them.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ketch.core.errors import Conflict, InvalidSpec
from ketch.core.timestamps import format_time, utcnow

Path = tuple[str, ...]

APPLY = "Apply"
UPDATE = "Update"
FIELDS_TYPE = "FieldsV1"
MAX_MANAGER = 128
#: metadata fields an object's managers own (the rest are the server's)
TRACKED_METADATA = ("labels", "annotations", "ownerReferences", "finalizers")
_UNTRACKED = ("apiVersion", "kind", "metadata", "status")


@dataclass
class Entry:
    """One entry of ``managedFields``."""

    manager: str
    operation: str
    api_version: str
    time: str
    fields: set[Path] = field(default_factory=set)
    subresource: str = ""

    def same(self, manager: str, operation: str, subresource: str) -> bool:
        return (
            self.manager == manager
            and self.operation == operation
            and self.subresource == subresource
        )

    def describe(self) -> str:
        """The manager as Kubernetes names it in a conflict."""
        named = f'"{self.manager}"'
        if self.subresource:
            named += f' with subresource "{self.subresource}"'
        if self.operation == UPDATE:
            named += f" using {self.api_version}"
        return named

    def to_json(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "apiVersion": self.api_version,
            "fieldsType": FIELDS_TYPE,
            "fieldsV1": to_fields_v1(self.fields),
            "manager": self.manager,
            "operation": self.operation,
        }
        if self.subresource:
            entry["subresource"] = self.subresource
        entry["time"] = self.time
        return entry


class ApplyConflict(Conflict):
    """An apply set fields other managers own with other values (409)."""

    def __init__(self, conflicts: list[tuple[Entry, Path]]) -> None:
        self.conflicts = conflicts
        super().__init__(conflict_message(conflicts))

    def causes(self) -> list[dict[str, str]]:
        return [
            {
                "reason": "FieldManagerConflict",
                "message": f"conflict with {entry.describe()}",
                "field": path_text(path),
            }
            for entry, path in self.conflicts
        ]


def path_text(path: Path) -> str:
    """``(f:spec, f:replicas)`` as ``.spec.replicas``."""
    return "".join(f".{part[2:]}" if part.startswith("f:") else f"[{part}]" for part in path)


def conflict_message(conflicts: list[tuple[Entry, Path]]) -> str:
    if len(conflicts) == 1:
        entry, path = conflicts[0]
        return f"Apply failed with 1 conflict: conflict with {entry.describe()}: {path_text(path)}"
    by_manager: dict[str, list[Path]] = {}
    for entry, path in conflicts:
        by_manager.setdefault(entry.describe(), []).append(path)
    parts = []
    for manager, paths in by_manager.items():
        if len(paths) == 1:
            parts.append(f"conflicts with {manager}: {path_text(paths[0])}")
        else:
            parts.append(
                f"conflicts with {manager}:" + "".join(f"\n- {path_text(p)}" for p in paths)
            )
    return f"Apply failed with {len(conflicts)} conflicts: " + ", ".join(parts)


# -- managers ---------------------------------------------------------------------------


def manager_name(given: str | None, user_agent: str | None, *, apply: bool = False) -> str:
    """The field manager of a request: ``fieldManager``, else what the ``User-Agent``
    starts with (``kubectl/v1.32 ...`` -> ``kubectl``). An apply must name one."""
    if given is not None:
        if not given or len(given) > MAX_MANAGER:
            raise InvalidSpec(
                f"must be 1 to {MAX_MANAGER} characters long, got {len(given)}",
                field="fieldManager",
            )
        if not given.isprintable():
            raise InvalidSpec("must be printable characters only", field="fieldManager")
        return given
    if apply:
        raise InvalidSpec(
            "is required for apply patch: name the manager applying "
            "(kubectl sends fieldManager=kubectl)",
            field="fieldManager",
        )
    agent = (user_agent or "").split("/", 1)[0].strip()
    agent = "".join(c for c in agent if c.isprintable())[:MAX_MANAGER]
    return agent or "unknown"


# -- field sets ---------------------------------------------------------------------------


def tracked(manifest: Mapping[str, Any] | None, subresource: str = "") -> dict[str, Any]:
    """The part of ``manifest`` field managers own."""
    if not manifest:
        return {}
    if subresource == "status":
        status = manifest.get("status")
        return {"status": status} if status is not None else {}
    out: dict[str, Any] = {key: value for key, value in manifest.items() if key not in _UNTRACKED}
    metadata = manifest.get("metadata")
    if isinstance(metadata, Mapping):
        owned = {k: metadata[k] for k in TRACKED_METADATA if metadata.get(k) not in (None, {}, [])}
        if owned:
            out["metadata"] = owned
    return out


def leaves(value: Any, prefix: Path = ()) -> set[Path]:
    """The fields ``value`` sets: every scalar, list and empty mapping, by path
    (``None`` sets nothing)."""
    if isinstance(value, Mapping):
        if not value:
            return {prefix} if prefix else set()
        found: set[Path] = set()
        for key, item in value.items():
            if item is not None:
                found |= leaves(item, (*prefix, f"f:{key}"))
        return found
    if value is None:
        return set()
    return {prefix} if prefix else set()


_MISSING = object()


def value_at(value: Any, path: Path) -> Any:
    for part in path:
        if not isinstance(value, Mapping) or not part.startswith("f:"):
            return _MISSING
        value = value.get(part[2:], _MISSING)
        if value is _MISSING:
            return _MISSING
    return value


def _remove_at(value: Any, path: Path) -> None:
    """Remove the field at ``path`` from ``value`` in place (nothing when absent), and
    the mappings inside a top-level field it leaves empty."""
    parents: list[tuple[dict[str, Any], str]] = []
    for part in path:
        if not isinstance(value, dict) or not part.startswith("f:"):
            return
        parents.append((value, part[2:]))
        value = value.get(part[2:])
    for depth in range(len(parents) - 1, -1, -1):
        parent, key = parents[depth]
        if depth == len(parents) - 1:
            parent.pop(key, None)
        elif depth >= 1 and parent.get(key) == {}:
            parent.pop(key, None)
        else:
            break


def _overlaps(one: Path, other: Path) -> bool:
    """Whether one path is the other or lies inside it."""
    shorter = min(len(one), len(other))
    return one[:shorter] == other[:shorter]


def to_fields_v1(paths: Iterable[Path]) -> dict[str, Any]:
    """Paths as a ``FieldsV1`` tree (``{"f:spec": {"f:replicas": {}}}``)."""
    tree: dict[str, Any] = {}
    for path in sorted(paths):
        node = tree
        for part in path:
            node = node.setdefault(part, {})
    return tree


def from_fields_v1(tree: Any, prefix: Path = ()) -> set[Path]:
    """The paths of a ``FieldsV1`` tree (a node marked ``"."`` is owned itself)."""
    if not isinstance(tree, Mapping) or not tree:
        return {prefix} if prefix else set()
    found: set[Path] = set()
    for part, child in tree.items():
        if part == ".":
            if prefix:
                found.add(prefix)
            continue
        found |= from_fields_v1(child, (*prefix, str(part)))
    return found


# -- managedFields ------------------------------------------------------------------------


def decode(entries: Any, *, field_name: str = "metadata.managedFields") -> list[Entry]:
    """``managedFields`` as entries (a malformed one is an ``InvalidSpec``); entries
    naming no manager (``[{}]``, how one clears them) are dropped."""
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise InvalidSpec("must be a list", field=field_name)
    found: list[Entry] = []
    for index, raw in enumerate(entries):
        where = f"{field_name}[{index}]"
        if not isinstance(raw, Mapping):
            raise InvalidSpec("must be an object", field=where)
        manager = raw.get("manager")
        if not manager:
            continue
        if not isinstance(manager, str):
            raise InvalidSpec("must be a string", field=f"{where}.manager")
        operation = raw.get("operation") or UPDATE
        if operation not in (APPLY, UPDATE):
            raise InvalidSpec(
                f'must be "Apply" or "Update", got {operation!r}', field=f"{where}.operation"
            )
        fields_type = raw.get("fieldsType") or FIELDS_TYPE
        if fields_type != FIELDS_TYPE:
            raise InvalidSpec(
                f'must be "FieldsV1", got {fields_type!r}', field=f"{where}.fieldsType"
            )
        tree = raw.get("fieldsV1") or {}
        if not isinstance(tree, Mapping):
            raise InvalidSpec("must be an object", field=f"{where}.fieldsV1")
        found.append(
            Entry(
                manager=manager,
                operation=str(operation),
                api_version=str(raw.get("apiVersion") or ""),
                time=str(raw.get("time") or format_time(utcnow())),
                fields=from_fields_v1(tree),
                subresource=str(raw.get("subresource") or ""),
            )
        )
    return found


def encode(entries: Iterable[Entry]) -> list[dict[str, Any]]:
    return [entry.to_json() for entry in entries if entry.fields]


def base_entries(current: Mapping[str, Any] | None, sent: Mapping[str, Any] | None) -> list[Entry]:
    """The entries a write starts from: the ones it sent when they differ from the
    stored ones and are not empty (it replaces them), else the stored ones."""
    stored = ((current or {}).get("metadata") or {}).get("managedFields")
    given = ((sent or {}).get("metadata") or {}).get("managedFields")
    if given and given != stored:
        return decode(given)
    return decode(stored)


def _entry(entries: list[Entry], manager: str, operation: str, subresource: str) -> Entry | None:
    return next((e for e in entries if e.same(manager, operation, subresource)), None)


def update(
    entries: list[Entry],
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any],
    *,
    manager: str,
    api_version: str,
    subresource: str = "",
) -> list[Entry]:
    """``entries`` after ``manager`` changed ``before`` (``None``: created) into
    ``after`` by an update."""
    old = tracked(before, subresource)
    new = tracked(after, subresource)
    old_leaves, new_leaves = leaves(old), leaves(new)
    changed = {p for p in new_leaves if value_at(old, p) != value_at(new, p)}
    removed = {p for p in old_leaves if value_at(new, p) is _MISSING}
    if not changed and not removed:
        return entries
    touched = changed | removed
    for entry in entries:
        if not entry.same(manager, UPDATE, subresource):
            entry.fields = {f for f in entry.fields if not any(_overlaps(f, t) for t in touched)}
    mine = _entry(entries, manager, UPDATE, subresource)
    now = _now()
    if mine is None:
        mine = Entry(manager, UPDATE, api_version, now, subresource=subresource)
        entries.append(mine)
    mine.fields = {f for f in mine.fields if not any(_overlaps(f, r) for r in removed)} | changed
    mine.time, mine.api_version = now, api_version
    return [e for e in entries if e.fields]


def _merge(target: Any, config: Any) -> Any:
    """``config`` set onto ``target``: mappings merge key by key, anything else replaces
    (``None`` removes the key)."""
    if not isinstance(config, Mapping) or not isinstance(target, Mapping):
        return copy.deepcopy(config)
    result = dict(target)
    for key, value in config.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge(result.get(key), value)
    return result


def apply(
    entries: list[Entry],
    current: Mapping[str, Any] | None,
    config: Mapping[str, Any],
    *,
    manager: str,
    api_version: str,
    force: bool,
    subresource: str = "",
) -> tuple[dict[str, Any], list[Entry]]:
    """The object after ``manager`` applied ``config`` to ``current`` (``None``: it is
    created), and the entries after it. ``ApplyConflict`` when ``config`` sets fields
    other managers own to other values and ``force`` is not set."""
    wanted = tracked(config, subresource)
    have = tracked(current, subresource)
    applied = leaves(wanted)
    mine = _entry(entries, manager, APPLY, subresource)
    previous = set(mine.fields) if mine is not None else set()
    others = [e for e in entries if e is not mine]
    result: dict[str, Any] = copy.deepcopy(dict(current or {}))
    # what this manager applied before and leaves out now goes, unless another owns it
    for path in sorted(previous - applied, key=len, reverse=True):
        if any(a[: len(path)] == path for a in applied):
            continue  # it holds fields applied now
        if any(_overlaps(path, owned) for e in others for owned in e.fields):
            continue  # another manager owns it too: it stays
        _remove_at(result, path)
    if subresource == "status":
        result["status"] = _merge(result.get("status"), wanted.get("status") or {})
    else:
        for key, value in wanted.items():
            if key == "metadata":
                metadata = dict(result.get("metadata") or {})
                for meta_key, meta_value in value.items():
                    if meta_key in ("ownerReferences", "finalizers"):
                        metadata[meta_key] = copy.deepcopy(meta_value)
                    else:
                        metadata[meta_key] = _merge(metadata.get(meta_key), meta_value)
                result["metadata"] = metadata
            else:
                result[key] = _merge(result.get(key), value)
    # a field this apply changes that another manager owns is a conflict
    after = tracked(result, subresource)
    changed = [
        p
        for p in sorted(applied)
        if value_at(wanted, p) != {} and value_at(after, p) != value_at(have, p)
    ]
    conflicts: list[tuple[Entry, Path]] = [
        (entry, path)
        for entry in others
        for path in changed
        if any(_overlaps(path, owned) for owned in entry.fields)
    ]
    if conflicts and not force:
        raise ApplyConflict(conflicts)
    for entry, path in conflicts:
        entry.fields = {f for f in entry.fields if not _overlaps(f, path)}
    now = _now()
    if mine is None:
        mine = Entry(manager, APPLY, api_version, now, subresource=subresource)
        entries.append(mine)
    if mine.fields != applied or mine.api_version != api_version:
        mine.time = now
    mine.fields, mine.api_version = applied, api_version
    return result, [e for e in entries if e.fields]


def _now() -> str:
    """Now, to the second, as managedFields times are written."""
    return format_time(utcnow().replace(microsecond=0))
