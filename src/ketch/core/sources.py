"""Where the resource API reads and writes a kind's objects.

Most kinds live in the ``resources`` table (:class:`StoreSource`, over
``ResourceStore``). A capability may serve a kind from elsewhere by naming a source
for it (``Capability.sources``): the pipelines capability serves ``PipelineRun`` as a
view of its ``pipeline_runs`` table. Every source speaks manifests (JSON-ready dicts
with Kubernetes field names).

Watches: a :class:`JournaledSource` (a :class:`StoreSource`, the core group's pods
and events, and the pipelines capability's PipelineRuns) reads the store's change
journal (:meth:`JournaledSource.changes`: exactly the writes after a
``resourceVersion``); any other source is watched by polling :meth:`Source.versions`
and fetching what changed.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from sqlalchemy import select

from ketch.core.errors import Conflict, InvalidSpec, KetchError
from ketch.core.kinds import Kind
from ketch.core.resource import Resource
from ketch.core.store.models import ResourceRow
from ketch.core.store.resources import Applied, Changes, ResourceStore, to_resource
from ketch.core.store.selectors import LabelSelector

Manifest = dict[str, Any]
ApplyResult = Applied


class MethodNotAllowed(KetchError):
    http_status = 405
    exit_code = 2


@dataclass
class Page:
    items: list[Manifest]
    continue_token: str | None = None
    #: the list's ``metadata.resourceVersion`` (``None``: the source has none of its own)
    resource_version: str | None = None


class Source(Protocol):
    """Reads and writes the objects of the kinds it serves."""

    def get(self, kind: Kind, namespace: str, name: str) -> Manifest: ...

    def list(
        self,
        kind: Kind,
        namespace: str | None,
        *,
        label_selector: str | None,
        limit: int | None,
        continue_token: str | None,
    ) -> Page: ...

    def create(self, kind: Kind, resource: Resource) -> Manifest: ...

    def apply(self, kind: Kind, resource: Resource) -> tuple[Manifest, ApplyResult]: ...

    def patch(
        self, kind: Kind, namespace: str, name: str, patch: Manifest, check: Check | None = None
    ) -> Manifest:
        """Merge-patch the object; ``check`` sees the patched object before it is stored."""
        ...

    def put_status(
        self, kind: Kind, namespace: str, name: str, status: Manifest, resource_version: str | None
    ) -> Manifest: ...

    def delete(self, kind: Kind, namespace: str, name: str) -> Manifest: ...

    def default_name(self, kind: Kind, manifest: Manifest) -> str | None:
        """The name an object created with neither ``metadata.name`` nor
        ``metadata.generateName`` gets; ``None``: it must be given one."""
        ...

    def versions(
        self, kind: Kind, namespace: str | None, selector: LabelSelector
    ) -> dict[str, str]:
        """``uid -> resourceVersion`` of every matching object (cheap: a watch polls it)."""
        ...

    def fetch(self, kind: Kind, uids: Iterable[str]) -> dict[str, Manifest]:
        """Full manifests of the objects with these uids (missing ones left out)."""
        ...


@runtime_checkable
class JournaledSource(Source, Protocol):
    """A source whose objects' writes take the store's revision and are in its change
    journal (:mod:`ketch.core.store.resources`): its lists answer a revision, and a
    watch of it resumes from a ``resourceVersion`` exactly."""

    def revision(self) -> int:
        """The store's revision (a watch's starting ``resourceVersion``)."""
        ...

    def changes(self, kind: Kind, namespace: str | None, after: int) -> Changes:
        """The writes to ``kind``'s objects (in ``namespace``, ``None``: all) after
        revision ``after``, their objects as the source serves them; ``Expired`` when
        the journal no longer goes back that far."""
        ...

    def previous(self, kind: Kind, uid: str, before: int) -> Manifest | None:
        """Object ``uid`` as it was before revision ``before``, if the journal has it."""
        ...


#: how many objects a namespace holds, and when the oldest was made
NamespaceCount = tuple[int, datetime | None]


@runtime_checkable
class CountsByNamespace(Protocol):
    """A source that can say how many objects of a kind each namespace holds without
    reading them (the namespace list asks on every call; reading 10,000 runs to count
    them made it take seconds)."""

    def namespace_counts(self, kind: Kind) -> tuple[dict[str, NamespaceCount], str | None]:
        """``namespace -> (objects, the oldest's creation time)`` and the list's
        ``resourceVersion`` they were counted at (``None``: the source has none)."""
        ...


Check = Callable[[Resource], object]


class RefusesWrites:
    """The writes of a source whose objects cannot be written (events, which Ketch
    records itself; a kind served by routes of its own): each raises what
    :meth:`refusal` makes."""

    def refusal(self) -> KetchError:
        raise NotImplementedError

    def create(self, kind: Kind, resource: Resource) -> Manifest:
        raise self.refusal()

    def apply(self, kind: Kind, resource: Resource) -> tuple[Manifest, ApplyResult]:
        raise self.refusal()

    def patch(
        self, kind: Kind, namespace: str, name: str, patch: Manifest, check: Check | None = None
    ) -> Manifest:
        raise self.refusal()

    def put_status(
        self, kind: Kind, namespace: str, name: str, status: Manifest, resource_version: str | None
    ) -> Manifest:
        raise self.refusal()

    def delete(self, kind: Kind, namespace: str, name: str) -> Manifest:
        raise self.refusal()

    def default_name(self, kind: Kind, manifest: Manifest) -> str | None:
        return None


# Status fields only controllers write: a client's status write leaves them as they are
# (the server opens the files ``logPaths`` names).
SERVER_OWNED_STATUS = ("logPaths",)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: mappings merge recursively, ``null`` deletes a key."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


_PATCHABLE_META = {"labels", "annotations"}
_FIXED_META = {"name", "namespace", "uid", "resourceVersion", "generation", "creationTimestamp"}


def check_patch(current: Manifest, patch: Any) -> None:
    """Only ``metadata.labels``, ``metadata.annotations`` and ``spec`` may change."""
    if not isinstance(patch, dict):
        raise InvalidSpec("a merge patch must be a JSON object", field="body")
    for key, value in patch.items():
        if key == "spec":
            if value is not None and not isinstance(value, dict):
                raise InvalidSpec("must be an object", field="spec")
        elif key in ("apiVersion", "kind"):
            if value != current.get(key):
                raise InvalidSpec(
                    f"cannot be changed by a patch (it is {current.get(key)!r})", field=key
                )
        elif key == "metadata":
            if not isinstance(value, dict):
                raise InvalidSpec("must be an object", field="metadata")
            for meta_key, meta_value in value.items():
                field = f"metadata.{meta_key}"
                if meta_key in _PATCHABLE_META:
                    if meta_value is not None and not isinstance(meta_value, dict):
                        raise InvalidSpec("must be an object", field=field)
                    for label, text in (meta_value or {}).items():
                        if text is not None and not isinstance(text, str):
                            raise InvalidSpec("values must be strings", field=f"{field}.{label}")
                elif meta_key in _FIXED_META:
                    if meta_key == "resourceVersion" and meta_value is not None:
                        if str(meta_value) != current["metadata"].get("resourceVersion"):
                            raise _stale(current, str(meta_value))
                    elif meta_value is not None and meta_value != current["metadata"].get(meta_key):
                        raise InvalidSpec("cannot be changed by a patch", field=field)
                else:
                    raise InvalidSpec(
                        "cannot be patched; only metadata.labels, metadata.annotations and "
                        "spec can",
                        field=field,
                    )
        elif key == "status":
            raise InvalidSpec(
                "cannot be patched here; write status through the status subresource "
                "(PUT .../status)",
                field="status",
            )
        else:
            raise InvalidSpec(
                "cannot be patched; only metadata.labels, metadata.annotations and spec can",
                field=key,
            )


def _stale(current: Manifest, given: str) -> Conflict:
    meta = current["metadata"]
    return Conflict(
        f"{current['kind']} {meta['name']!r} in namespace {meta['namespace']!r} was modified: "
        f"it is at resourceVersion {meta.get('resourceVersion')}, not {given}",
        hint="read it again and retry",
    )


class StoreSource:
    """Kinds kept in the ``resources`` table."""

    def __init__(self, store: ResourceStore) -> None:
        self.store = store

    def get(self, kind: Kind, namespace: str, name: str) -> Manifest:
        return self.store.get(kind.kind, namespace, name).to_manifest()

    def list(
        self,
        kind: Kind,
        namespace: str | None,
        *,
        label_selector: str | None,
        limit: int | None,
        continue_token: str | None,
    ) -> Page:
        page = self.store.list_manifests(
            kind.kind,
            namespace,
            label_selector=label_selector,
            limit=limit,
            continue_token=continue_token,
        )
        return Page(page.items, page.continue_token, page.resource_version)

    def create(self, kind: Kind, resource: Resource) -> Manifest:
        resource.status = {}
        return self.store.create(resource).to_manifest()

    def apply(self, kind: Kind, resource: Resource) -> tuple[Manifest, ApplyResult]:
        """Create or update the object; a ``metadata.resourceVersion`` it carries must be
        the stored object's (checked in the write's transaction: 409 otherwise)."""
        resource.status = {}
        after, outcome = self.store.apply_outcome(
            resource, expected_version=resource.metadata.resourceVersion
        )
        return after.to_manifest(), outcome

    def patch(
        self, kind: Kind, namespace: str, name: str, patch: Manifest, check: Check | None = None
    ) -> Manifest:
        current = self.get(kind, namespace, name)
        check_patch(current, patch)
        merged = merge_patch(current, {k: v for k, v in patch.items() if k in ("metadata", "spec")})
        merged["metadata"].pop("resourceVersion", None)
        resource = Resource.from_manifest(merged)
        if check is not None:
            check(resource)
        return self.store.apply(resource).to_manifest()

    def put_status(
        self, kind: Kind, namespace: str, name: str, status: Manifest, resource_version: str | None
    ) -> Manifest:
        return self.store.update_status(
            kind.kind,
            namespace,
            name,
            status,
            resource_version=resource_version,
            keep=SERVER_OWNED_STATUS,
        ).to_manifest()

    def delete(self, kind: Kind, namespace: str, name: str) -> Manifest:
        return self.store.delete(kind.kind, namespace, name).to_manifest()

    def default_name(self, kind: Kind, manifest: Manifest) -> str | None:
        return None

    def versions(
        self, kind: Kind, namespace: str | None, selector: LabelSelector
    ) -> dict[str, str]:
        query = select(ResourceRow.uid, ResourceRow.resource_version, ResourceRow.labels).where(
            ResourceRow.kind == kind.kind
        )
        if namespace is not None:
            query = query.where(ResourceRow.namespace == namespace)
        with self.store.database.session(readonly=True) as session:
            rows = session.execute(query).all()
        return {
            uid: str(version) for uid, version, labels in rows if selector.matches(labels or {})
        }

    def fetch(self, kind: Kind, uids: Iterable[str]) -> dict[str, Manifest]:
        wanted = list(uids)
        if not wanted:
            return {}
        found: dict[str, Manifest] = {}
        with self.store.database.session(readonly=True) as session:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                rows = session.scalars(select(ResourceRow).where(ResourceRow.uid.in_(chunk)))
                for row in rows:
                    found[row.uid] = to_resource(row).to_manifest()
        return found

    # -- the change journal (watches) ----------------------------------------------

    def present(self, kind: Kind, manifest: Manifest) -> Manifest:
        """An object as the store keeps it (in the journal too), as this source serves
        it; a source that serves its kind in another shape than it stores it overrides
        this."""
        return manifest

    def revision(self) -> int:
        """The store's revision (a list's or a watch's starting ``resourceVersion``)."""
        return self.store.revision()

    def changes(self, kind: Kind, namespace: str | None, after: int) -> Changes:
        """The writes to ``kind``'s objects (in ``namespace``, ``None``: all) after
        revision ``after``, their objects as :meth:`present` serves them;
        ``Expired`` when the journal no longer goes back that far."""
        found = self.store.changes(after, kind=kind.kind, namespace=namespace)
        items = [replace(change, object=self.present(kind, change.object)) for change in found]
        return Changes(items, found.revision)

    def previous(self, kind: Kind, uid: str, before: int) -> Manifest | None:
        """Object ``uid`` as it was before revision ``before``, if the journal has it."""
        found = self.store.previous(kind.kind, uid, before)
        return None if found is None else self.present(kind, found)
