"""The write side of the resource API, generic over every kind: create, replace (PUT),
patch (every patch type, server-side apply included), delete and status writes, with
Kubernetes' write options.

- ``dryRun=All``: the write is checked as it would be made (the kind's validator,
  unknown fields, conflicts, field ownership) and answered as if made, but nothing is
  stored, no controller or watcher hears of it and no event is recorded. Any other
  value is a 400 naming ``dryRun``.
- ``fieldValidation=Strict|Warn|Ignore``: what unknown fields do
  (:mod:`ketch.server.fieldvalidation`); ``Warn`` by default.
- ``fieldManager`` and ``force``: who makes the change, and whether an apply takes
  over fields others own (:mod:`ketch.server.fieldmanager`).
- Read-only metadata a client sends back (``uid``, ``creationTimestamp`` in any
  format, ``generation``, ``managedFields`` as read, ``selfLink``) is ignored, as
  Kubernetes ignores it; a ``metadata.resourceVersion`` that is not the object's
  (a PUT's, or one a patch sets) is a 409 Conflict: someone wrote in between.
- A PUT of an object that does not exist creates it (Ketch's own clients apply with
  PUT).

Cluster-scoped kinds are kept in the store's ``default`` namespace
(:data:`CLUSTER_NAMESPACE`) and served without ``metadata.namespace``.
"""

from __future__ import annotations

import copy
import secrets
import string
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from ketch.core.errors import AlreadyExists, Conflict, InvalidSpec, NotFound
from ketch.core.kinds import Kind
from ketch.core.resource import DEFAULT_NAMESPACE, Resource, format_time, utcnow
from ketch.core.sources import ApplyResult, Source, StoreSource
from ketch.server import fieldmanager, fieldvalidation, patches
from ketch.server.bodies import parse_json, parse_yaml, read_document, require_mapping
from ketch.server.errors import note_name, status_response

#: Where the store keeps the objects of cluster-scoped kinds (ClusterTrainingRuntimes).
CLUSTER_NAMESPACE = DEFAULT_NAMESPACE
APPLY_HEADER = "X-Ketch-Apply"
DRY_RUN = "dryRun"

#: metadata a client may send back as it read it, which no write changes
READ_ONLY_METADATA = (
    "uid",
    "creationTimestamp",
    "generation",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
)
# how often a patch is made again when another write came between its read and its write
_PATCH_ATTEMPTS = 5


# -- options ---------------------------------------------------------------------------


@dataclass(frozen=True)
class WriteOptions:
    """What a write request asks besides its body."""

    dry_run: bool = False
    validation: fieldvalidation.Mode = fieldvalidation.DEFAULT
    manager: str = ""
    force: bool = False
    warnings: list[str] = field(default_factory=list)


def parse_dry_run(values: list[str]) -> bool:
    for value in values:
        if value != "All":
            raise InvalidSpec(
                f'Unsupported value: "{value}": supported values: "All"', field=DRY_RUN
            )
    return bool(values)


def _flag(request: Request, name: str) -> bool:
    raw = request.query_params.get(name)
    if raw is None or raw.lower() in ("", "false", "0"):
        return False
    if raw.lower() in ("true", "1"):
        return True
    raise InvalidSpec(f"must be true or false, got {raw!r}", field=name)


def write_options(request: Request, *, apply: bool = False) -> WriteOptions:
    """The options of a write (``dryRun``, ``fieldValidation``, ``fieldManager``,
    ``force``), checked."""
    params = request.query_params
    force = _flag(request, "force")
    if force and not apply:
        raise InvalidSpec("may not be specified for non-apply patch", field="force")
    return WriteOptions(
        dry_run=parse_dry_run(params.getlist(DRY_RUN)),
        validation=fieldvalidation.parse_mode(params.get(fieldvalidation.FIELD)),
        manager=fieldmanager.manager_name(
            params.get("fieldManager"), request.headers.get("user-agent"), apply=apply
        ),
        force=force,
    )


# -- answers ---------------------------------------------------------------------------


def served(kind: Kind, manifest: dict[str, Any]) -> dict[str, Any]:
    """``manifest`` as the API serves it: a cluster-scoped object has no namespace."""
    if not kind.namespaced:
        metadata = manifest.get("metadata")
        if isinstance(metadata, dict) and "namespace" in metadata:
            manifest = {
                **manifest,
                "metadata": {k: v for k, v in metadata.items() if k != "namespace"},
            }
    return manifest


def answer(
    kind: Kind,
    manifest: dict[str, Any],
    options: WriteOptions,
    *,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """The response of a write: the object, with a ``Warning`` header per warning."""
    response = JSONResponse(served(kind, manifest), status_code=status_code, headers=headers)
    for warning in options.warnings:
        escaped = warning.replace("\\", "\\\\").replace('"', '\\"')
        response.headers.append("Warning", f'299 - "{escaped}"')
    return response


def conflict_response(exc: fieldmanager.ApplyConflict) -> JSONResponse:
    """An apply's conflicts as Kubernetes answers them (409, a cause per field)."""
    return status_response(409, exc.message, reason="Conflict", details={"causes": exc.causes()})


# -- manifests -------------------------------------------------------------------------


def _checked_envelope(kind: Kind, manifest: dict[str, Any]) -> None:
    for key in ("apiVersion", "kind"):
        if key not in manifest:
            raise InvalidSpec(f"{key} is required", field=key)
        if not isinstance(manifest[key], str):
            raise InvalidSpec("must be a string", field=key)
    if manifest["kind"] != kind.kind:
        raise InvalidSpec(
            f"{manifest['kind']!r} does not match the kind of the URL ({kind.kind})", field="kind"
        )
    kind.check_api_version(manifest["apiVersion"])


def _generated_name(
    metadata: dict[str, Any],
    manifest: dict[str, Any],
    default_name: Callable[[dict[str, Any]], str | None],
) -> str | None:
    prefix = metadata.get("generateName")
    if prefix is None:
        return default_name(manifest)
    if not isinstance(prefix, str) or not prefix:
        return None  # no name: Resource.from_manifest names the missing field
    alphabet = string.ascii_lowercase + string.digits
    return prefix + "".join(secrets.choice(alphabet) for _ in range(5))


def manifest_for(
    kind: Kind,
    namespace: str,
    document: Any,
    name: str | None = None,
    *,
    default_name: Callable[[dict[str, Any]], str | None] = lambda _manifest: None,
) -> dict[str, Any]:
    """Check a manifest against the URL it was sent to: its apiVersion and kind, its
    namespace (a cluster-scoped object's is dropped) and name; an object sent with
    neither a name nor ``generateName`` is named by ``default_name``, if it can. The
    read-only metadata is dropped (``resourceVersion`` is kept: it is a precondition)."""
    manifest = dict(require_mapping(document))
    _checked_envelope(kind, manifest)
    metadata = manifest.get("metadata")
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise InvalidSpec("must be an object", field="metadata")
    metadata = {k: v for k, v in metadata.items() if k not in READ_ONLY_METADATA}
    given_ns = metadata.get("namespace")
    if kind.namespaced and given_ns not in (None, "") and given_ns != namespace:
        raise InvalidSpec(
            f"{given_ns!r} does not match the namespace in the URL ({namespace!r})",
            field="metadata.namespace",
        )
    metadata["namespace"] = namespace
    if name is not None:
        if metadata.get("name") not in (None, name):
            raise InvalidSpec(
                f"{metadata['name']!r} does not match the name in the URL ({name!r})",
                field="metadata.name",
            )
        metadata["name"] = name
    elif not metadata.get("name"):
        generated = _generated_name(metadata, manifest, default_name)
        if generated:
            metadata["name"] = generated
    generate = metadata.pop("generateName", None)
    if generate is not None and not isinstance(generate, str):
        raise InvalidSpec("must be a string", field="metadata.generateName")
    manifest["metadata"] = metadata
    for key in ("spec", "status"):
        if key in manifest and manifest[key] is None:
            manifest[key] = {}
    return manifest


def _resource(manifest: dict[str, Any], entries: list[fieldmanager.Entry]) -> Resource:
    resource = Resource.from_manifest(manifest)
    resource.metadata.managedFields = fieldmanager.encode(entries)
    return resource


def _stored_version(current: dict[str, Any]) -> str | None:
    version = (current.get("metadata") or {}).get("resourceVersion")
    return None if version in (None, "") else str(version)


def _check_version(current: dict[str, Any], given: Any) -> None:
    """``given`` (a ``metadata.resourceVersion`` a write carries) must be the stored
    object's: 409 otherwise."""
    if given is None or given == "":
        return
    if not isinstance(given, str | int):
        raise InvalidSpec("must be a string", field="metadata.resourceVersion")
    if str(given) != _stored_version(current):
        raise Conflict(
            "the object has been modified; please apply your changes to the latest version "
            f"and try again: it is at resourceVersion {_stored_version(current)}, not {given}",
            hint="read it again and retry",
        )


def _check_uid(current: dict[str, Any], sent: dict[str, Any]) -> None:
    given = (sent.get("metadata") or {}).get("uid")
    have = (current.get("metadata") or {}).get("uid")
    if given not in (None, "") and have and given != have:
        raise Conflict(
            f"Precondition failed: UID in precondition: {given}, UID in object meta: {have}"
        )


def _updated_entries(
    current: dict[str, Any] | None,
    sent: dict[str, Any],
    manifest: dict[str, Any],
    options: WriteOptions,
) -> list[fieldmanager.Entry]:
    """The ``managedFields`` entries of ``manifest`` after the write's manager made it
    from ``current`` (``None``: created) by an update, ``sent`` being what it sent."""
    return fieldmanager.update(
        fieldmanager.base_entries(current, sent),
        current,
        manifest,
        manager=options.manager,
        api_version=manifest["apiVersion"],
    )


def _kept_changing(kind: Kind, name: str) -> Conflict:
    """A patch that lost the race with other writes every time it tried."""
    return Conflict(f"{kind.kind} {name!r} kept changing while it was patched", hint="try again")


def _would_be(kind: Kind, current: dict[str, Any] | None, resource: Resource) -> dict[str, Any]:
    """What a write of ``resource`` over ``current`` (``None``: a create) would store,
    for a dry run: the server's metadata kept, ``generation`` counted."""
    manifest = resource.to_manifest()
    metadata = manifest.setdefault("metadata", {})
    if current is None:
        metadata.update(
            {
                "uid": metadata.get("uid") or _uuid(),
                "generation": 1,
                "creationTimestamp": format_time(utcnow()),
            }
        )
        metadata.pop("resourceVersion", None)
        manifest["status"] = {} if kind.object_schema is None else manifest.get("status", {})
    else:
        kept = current.get("metadata") or {}
        for key in ("uid", "creationTimestamp", "resourceVersion", "generation"):
            if key in kept:
                metadata[key] = kept[key]
        if kind.object_schema is None:
            if manifest.get("spec") != current.get("spec"):
                metadata["generation"] = int(kept.get("generation") or 1) + 1
            manifest["status"] = copy.deepcopy(current.get("status") or {})
    if kind.object_schema is not None:
        for key in ("spec", "status"):
            if not manifest.get(key):
                manifest.pop(key, None)
    return manifest


def _uuid() -> str:
    import uuid

    return str(uuid.uuid4())


# -- the writes ------------------------------------------------------------------------


def _admitted(_resource: Resource) -> AbstractContextManager[None]:
    return nullcontext()


@dataclass
class Writer:
    """Writes to one kind's objects through its source; ``admit`` is held while a new
    object is stored (it may refuse it: a namespace's quota)."""

    kind: Kind
    source: Source
    validate: Callable[[Resource], Resource]
    changed: Callable[[str, str], None]
    schemas: fieldvalidation.PublishedSchemas
    admit: Callable[[Resource], AbstractContextManager[None]] = _admitted

    def _get(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self.source.get(self.kind, namespace, name)
        except NotFound:
            return None

    def _store(
        self, namespace: str, name: str, resource: Resource
    ) -> tuple[dict[str, Any], ApplyResult]:
        """Create or update ``resource`` in the source; watchers and controllers hear of
        it unless nothing changed."""
        stored, outcome = self.source.apply(self.kind, resource)
        if outcome != "unchanged":
            self.changed(namespace, name)
        return stored, outcome

    def _prepare(self, manifest: dict[str, Any], options: WriteOptions) -> dict[str, Any]:
        pruned, warnings = fieldvalidation.check(
            self.kind, manifest, options.validation, self.schemas
        )
        options.warnings.extend(warnings)
        return pruned

    # -- create ------------------------------------------------------------------

    def create(
        self, namespace: str, document: Any, options: WriteOptions
    ) -> tuple[dict[str, Any], int]:
        kind = self.kind
        sent = require_mapping(document)
        manifest = manifest_for(
            kind,
            namespace,
            self._prepare(sent, options),
            default_name=lambda m: self.source.default_name(kind, m),
        )
        entries = _updated_entries(None, sent, manifest, options)
        resource = self.validate(_resource(manifest, entries))
        name = resource.metadata.name
        if options.dry_run:
            if self._get(namespace, name) is not None:
                raise AlreadyExists(
                    f"{kind.kind} {name!r} already exists in namespace {namespace!r}",
                    kind=kind.kind,
                    namespace=namespace,
                    name=name,
                )
            with self.admit(resource):
                return _would_be(kind, None, resource), 201
        with self.admit(resource):
            created = self.source.create(kind, resource)
        self.changed(namespace, created["metadata"]["name"])
        return created, 201

    # -- replace (PUT) ---------------------------------------------------------------

    def replace(
        self, namespace: str, name: str, document: Any, options: WriteOptions
    ) -> tuple[dict[str, Any], str]:
        """Replace the object (create it when missing); also says ``created``,
        ``configured`` or ``unchanged``."""
        kind = self.kind
        sent = require_mapping(document)
        manifest = manifest_for(kind, namespace, self._prepare(sent, options), name)
        current = self._get(namespace, name)
        version = manifest["metadata"].get("resourceVersion")
        if current is not None:
            _check_uid(current, sent)
            _check_version(current, version)
        entries = _updated_entries(current, sent, manifest, options)
        if current is None:
            manifest["metadata"].pop("resourceVersion", None)
        resource = self.validate(_resource(manifest, entries))
        if options.dry_run:
            with self.admit(resource) if current is None else nullcontext():
                would = _would_be(kind, current, resource)
            return would, "created" if current is None else "configured"
        with self.admit(resource) if current is None else nullcontext():
            return self._store(namespace, name, resource)

    # -- patch -----------------------------------------------------------------------

    def patch(
        self,
        namespace: str,
        name: str,
        kind_of_patch: patches.PatchType,
        body: Any,
        options: WriteOptions,
    ) -> tuple[dict[str, Any], int]:
        """Patch the object (an apply creates it when missing); answers it and 200, or
        201 when an apply created it."""
        for attempt in range(_PATCH_ATTEMPTS):
            try:
                return self._patch_once(namespace, name, kind_of_patch, body, options)
            except _Raced:
                if attempt == _PATCH_ATTEMPTS - 1:
                    raise _kept_changing(self.kind, name) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _patch_once(
        self,
        namespace: str,
        name: str,
        kind_of_patch: patches.PatchType,
        body: Any,
        options: WriteOptions,
    ) -> tuple[dict[str, Any], int]:
        kind = self.kind
        current = self._get(namespace, name)
        if kind_of_patch == "apply":
            return self._apply(namespace, name, current, body, options)
        if current is None:
            if not isinstance(self.source, StoreSource):  # its own answer (405, 404)
                self.source.patch(kind, namespace, name, {}, self.validate)
            self.source.get(kind, namespace, name)  # raises the kind's NotFound
            raise AssertionError("unreachable")  # pragma: no cover
        patched = patches.apply_patch(copy.deepcopy(current), kind_of_patch, body)
        return self._store_patched(namespace, name, current, patched, body, options), 200

    def _store_patched(
        self,
        namespace: str,
        name: str,
        current: dict[str, Any],
        patched: dict[str, Any],
        body: Any,
        options: WriteOptions,
        entries: list[fieldmanager.Entry] | None = None,
    ) -> dict[str, Any]:
        kind = self.kind
        for key in ("apiVersion", "kind"):
            if patched.get(key) != current.get(key):
                raise InvalidSpec(
                    f"cannot be changed by a patch (it is {current.get(key)!r})", field=key
                )
        metadata = patched.get("metadata")
        if not isinstance(metadata, dict):
            raise InvalidSpec("must be an object", field="metadata")
        if metadata.get("name") != name:
            raise InvalidSpec(
                f"the name of the object ({metadata.get('name')!r}) does not match the name "
                f"in the URL ({name!r}); a patch cannot rename it",
                field="metadata.name",
            )
        if kind.namespaced and metadata.get("namespace") != current["metadata"].get("namespace"):
            raise InvalidSpec("cannot be changed by a patch", field="metadata.namespace")
        _check_uid(current, patched)
        _check_version(current, metadata.get("resourceVersion"))
        # the status is the status subresource's; read-only metadata stays as it is
        patched["status"] = copy.deepcopy(current.get("status") or {})
        if "status" not in current:
            patched.pop("status")
        manifest = manifest_for(kind, namespace, self._prepare(patched, options), name)
        if entries is None:
            entries = _updated_entries(current, patched, manifest, options)
        manifest["metadata"]["resourceVersion"] = _stored_version(current)
        resource = self.validate(_resource(manifest, entries))
        if options.dry_run:
            return _would_be(kind, current, resource)
        if isinstance(self.source, StoreSource):
            try:
                stored, _outcome = self._store(namespace, name, resource)
            except Conflict:
                given = (body or {}).get("metadata", {}) if isinstance(body, dict) else {}
                if isinstance(given, dict) and given.get("resourceVersion") not in (None, ""):
                    raise
                raise _Raced() from None
            return stored
        # another source keeps its own rules: it is given the change as a merge patch
        diff = create_merge_patch(current, served_shape(resource, current))
        stored = self.source.patch(kind, namespace, name, diff, self.validate)
        self.changed(namespace, name)
        return stored

    def _apply(
        self,
        namespace: str,
        name: str,
        current: dict[str, Any] | None,
        body: Any,
        options: WriteOptions,
    ) -> tuple[dict[str, Any], int]:
        kind = self.kind
        config = require_mapping(body, "an apply configuration")
        _checked_envelope(kind, config)
        config_meta = config.get("metadata")
        if config_meta is not None and not isinstance(config_meta, dict):
            raise InvalidSpec("must be an object", field="metadata")
        config_meta = config_meta or {}
        if config_meta.get("name") not in (None, name):
            raise InvalidSpec(
                f"{config_meta['name']!r} does not match the name in the URL ({name!r})",
                field="metadata.name",
            )
        given_ns = config_meta.get("namespace")
        if kind.namespaced and given_ns not in (None, "") and given_ns != namespace:
            raise InvalidSpec(
                f"{given_ns!r} does not match the namespace in the URL ({namespace!r})",
                field="metadata.namespace",
            )
        config = self._prepare(config, options)
        if current is not None:
            _check_uid(current, config)
            _check_version(current, config_meta.get("resourceVersion"))
        entries = fieldmanager.base_entries(current, None)
        base = current or {
            "apiVersion": config["apiVersion"],
            "kind": kind.kind,
            "metadata": {"name": name, "namespace": namespace},
        }
        result, entries = fieldmanager.apply(
            entries,
            base,
            config,
            manager=options.manager,
            api_version=config["apiVersion"],
            force=options.force,
        )
        result["apiVersion"] = config["apiVersion"]
        result.setdefault("metadata", {})["name"] = name
        if current is None:
            manifest = manifest_for(kind, namespace, result, name)
            resource = self.validate(_resource(manifest, entries))
            with self.admit(resource):
                if options.dry_run:
                    return _would_be(kind, None, resource), 201
                stored, outcome = self._store(namespace, name, resource)
            return stored, 201 if outcome == "created" else 200
        result["metadata"]["resourceVersion"] = _stored_version(current)
        return self._store_patched(namespace, name, current, result, None, options, entries), 200

    # -- delete ------------------------------------------------------------------------

    def delete(
        self, namespace: str, name: str, options: WriteOptions, preconditions: dict[str, Any]
    ) -> dict[str, Any]:
        kind = self.kind
        if preconditions or options.dry_run:
            current = self.source.get(kind, namespace, name)
            uid = preconditions.get("uid")
            have = (current.get("metadata") or {}).get("uid")
            if uid not in (None, "") and uid != have:
                raise Conflict(
                    f"Precondition failed: UID in precondition: {uid}, UID in object meta: {have}"
                )
            _check_version(current, preconditions.get("resourceVersion"))
            if options.dry_run:
                return current
        deleted = self.source.delete(kind, namespace, name)
        self.changed(namespace, name)
        return deleted

    # -- status ------------------------------------------------------------------------

    def write_status(
        self,
        namespace: str,
        name: str,
        status: dict[str, Any],
        version: str | None,
        options: WriteOptions,
    ) -> dict[str, Any]:
        kind = self.kind
        if options.dry_run:
            current = self.source.get(kind, namespace, name)
            _check_version(current, version)
            return {**current, "status": status}
        updated = self.source.put_status(kind, namespace, name, status, version)
        self.changed(namespace, name)
        return updated

    def patch_status(
        self,
        namespace: str,
        name: str,
        kind_of_patch: patches.PatchType,
        body: Any,
        options: WriteOptions,
        check: Callable[[dict[str, Any]], None],
    ) -> dict[str, Any]:
        """Patch the status only (a patch's other changes are ignored, as on the status
        subresource of Kubernetes)."""
        kind = self.kind
        for _attempt in range(_PATCH_ATTEMPTS):
            current = self.source.get(kind, namespace, name)
            before = copy.deepcopy(current)
            if kind_of_patch == "apply":
                config = require_mapping(body, "an apply configuration")
                _checked_envelope(kind, config)
                patched, _entries = fieldmanager.apply(
                    fieldmanager.base_entries(current, None),
                    before,
                    config,
                    manager=options.manager,
                    api_version=str(config["apiVersion"]),
                    force=options.force,
                    subresource="status",
                )
            else:
                patched = patches.apply_patch(before, kind_of_patch, body)
            status = patched.get("status")
            if status is None:
                status = {}
            if not isinstance(status, dict):
                raise InvalidSpec("must be an object", field="status")
            check(status)
            version = (patched.get("metadata") or {}).get("resourceVersion")
            given = str(version) if version not in (None, "") else None
            _check_version(current, given)
            if options.dry_run:
                return {**current, "status": status}
            try:
                updated = self.source.put_status(
                    kind, namespace, name, status, _stored_version(current)
                )
            except Conflict:
                if given is not None and given != _stored_version(current):
                    raise
                continue
            self.changed(namespace, name)
            return updated
        raise _kept_changing(kind, name)


class _Raced(Exception):
    """Another write came between a patch's read and its write: read and patch again."""


def served_shape(resource: Resource, current: dict[str, Any]) -> dict[str, Any]:
    """``resource`` as a source serves it, for the merge patch a non-store source is
    given: the keys ``current`` has, status as it is."""
    manifest = resource.to_manifest()
    manifest["status"] = current.get("status")
    if "status" not in current:
        manifest.pop("status")
    return manifest


def create_merge_patch(before: Any, after: Any) -> Any:
    """The RFC 7386 merge patch that makes ``before`` into ``after`` (its metadata: only
    labels and annotations, which a source's patch takes)."""
    if not isinstance(before, dict) or not isinstance(after, dict):
        return copy.deepcopy(after)
    patch: dict[str, Any] = {}
    for key in before:
        if key not in after:
            patch[key] = None
    for key, value in after.items():
        if key not in before:
            patch[key] = copy.deepcopy(value)
        elif before[key] != value:
            patch[key] = create_merge_patch(before[key], value)
    metadata = patch.get("metadata")
    if isinstance(metadata, dict):
        kept = {k: v for k, v in metadata.items() if k in ("labels", "annotations")}
        if kept:
            patch["metadata"] = kept
        else:
            patch.pop("metadata")
    return patch


# -- reading bodies ---------------------------------------------------------------------


async def patch_body(request: Request, kind_of_patch: patches.PatchType) -> Any:
    """A PATCH's body: YAML for an apply, JSON for the others."""
    raw = await request.body()
    if not raw.strip():
        raise InvalidSpec("a request body is required", field="body")
    if kind_of_patch == "apply":
        return parse_yaml(raw)
    return parse_json(raw)


async def create_document(request: Request) -> Any:
    document = await read_document(request)
    if isinstance(document, dict) and isinstance(document.get("metadata"), dict):
        note_name(request, document["metadata"].get("name"))
    return document
