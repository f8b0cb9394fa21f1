"""Kinds of resources: group, versions, plural, singular and short names, categories,
printer columns and the schema of their spec.

Each capability declares the kinds it serves (its ``Capability.kinds``); the server
serves the union. Lookups are case-insensitive and accept a kind's name
(``PyTorchJob``), its plural (``pytorchjobs``), its singular (``pytorchjob``) and its
short names (``run``). Unknown names raise ``NotFound`` listing the closest known
names.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from ketch.core.errors import InvalidSpec, NotFound


@dataclass(frozen=True)
class Column:
    """A printer column, as a CRD's ``additionalPrinterColumns`` declares one: what
    ``kubectl get`` shows (a ``meta.k8s.io/v1`` Table) besides the name.

    ``json_path`` is a Kubernetes JSONPath without braces (``.status.url``,
    ``.status.conditions[-1:].type``, ``.status.conditions[?(@.type=='Ready')].status``);
    ``type`` an OpenAPI type (``string``, ``integer``, ``number``, ``boolean``, ``date``).
    Columns of ``priority`` above 0 are shown only in wide output.
    """

    name: str
    json_path: str
    type: str = "string"
    description: str = ""
    priority: int = 0
    format: str = ""

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "type": self.type, "jsonPath": self.json_path}
        if self.description:
            data["description"] = self.description
        if self.priority:
            data["priority"] = self.priority
        if self.format:
            data["format"] = self.format
        return data


#: A zero-argument function returning the JSON schema of a kind's spec (see
#: :attr:`Kind.spec_schema`).
SpecSchema = Callable[[], dict[str, Any]]
#: A function making, from an object, what a kind's printer columns read (see
#: :attr:`Kind.table_view`).
TableView = Callable[[dict[str, Any]], dict[str, Any]]

#: Every verb of a kind's objects, as discovery lists them.
VERBS = ("create", "delete", "get", "list", "patch", "update", "watch")
#: The verbs of a kind whose objects are read-only (Ketch writes them itself).
READ_VERBS = ("get", "list", "watch")

#: The column every kind ends with, as Kubernetes adds it to a CRD without columns.
AGE = Column("Age", ".metadata.creationTimestamp", "date")
#: The last condition's type: the State column of Kubeflow's job kinds.
LAST_CONDITION = Column("State", ".status.conditions[-1:].type")


@dataclass(frozen=True)
class Kind:
    """One kind of resource. ``versions[0]`` is the version new objects are stored with.

    ``columns`` are its printer columns (the ones Kubeflow's CRD declares; ``Age`` is
    added when they do not end with it) and ``categories`` the groups ``kubectl get``
    accepts for it (``kubectl get kubeflow``).

    ``spec_schema``, when set, returns the JSON schema of the kind's ``spec``: what
    pydantic's ``model_json_schema`` makes of the capability's typed spec model, field
    names by their wire aliases (:func:`ketch.core.spec.model_schema` makes one from
    the model). The server calls it once, when it first builds its OpenAPI documents.
    A kind without one is published with a free-form spec.

    ``verbs`` are what clients may do with its objects and ``subresources`` the
    subresources it serves (``status``), as discovery and the OpenAPI documents list
    them. ``object_schema``, for kinds that, like Kubernetes' core ones (``Secret``,
    ``ConfigMap``, ``Event``), have top-level fields instead of ``spec`` and
    ``status``, returns the JSON schema of those fields by name (published instead of
    ``spec`` and ``status``). ``table_view``, when set, makes from an object what its
    printer columns are read from (a column computed in code, as Kubernetes prints its
    own kinds: a Secret's number of keys, never its values).
    """

    kind: str
    group: str
    versions: tuple[str, ...]
    plural: str
    singular: str = ""
    short_names: tuple[str, ...] = ()
    namespaced: bool = True
    columns: tuple[Column, ...] = ()
    categories: tuple[str, ...] = ()
    spec_schema: SpecSchema | None = field(default=None, compare=False, repr=False)
    verbs: tuple[str, ...] = VERBS
    subresources: tuple[str, ...] = ("status",)
    object_schema: SpecSchema | None = field(default=None, compare=False, repr=False)
    table_view: TableView | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.versions:
            raise ValueError(f"kind {self.kind} needs at least one version")
        if not self.singular:
            object.__setattr__(self, "singular", self.kind.lower())
        if not self.columns or self.columns[-1].json_path != AGE.json_path:
            object.__setattr__(self, "columns", (*self.columns, AGE))

    @property
    def version(self) -> str:
        return self.versions[0]

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def api_versions(self) -> tuple[str, ...]:
        return tuple(f"{self.group}/{v}" if self.group else v for v in self.versions)

    @property
    def names(self) -> tuple[str, ...]:
        """Every lower-case name this kind answers to."""
        return (self.kind.lower(), self.plural, self.singular, *self.short_names)

    def check_api_version(self, api_version: str) -> str:
        """``api_version`` if this kind is served at it, else ``InvalidSpec``."""
        if api_version not in self.api_versions:
            served = ", ".join(self.api_versions)
            raise InvalidSpec(
                f"{self.kind} is not served at apiVersion {api_version!r}; use {served}",
                field="apiVersion",
            )
        return api_version

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "group": self.group,
            "version": self.version,
            "versions": list(self.versions),
            "apiVersion": self.api_version,
            "plural": self.plural,
            "singular": self.singular,
            "shortNames": list(self.short_names),
            "namespaced": self.namespaced,
            "columns": [column.to_json() for column in self.columns],
            "categories": list(self.categories),
            "verbs": list(self.verbs),
            "subresources": list(self.subresources),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Kind:
        return cls(
            kind=str(data["kind"]),
            group=str(data.get("group", "")),
            versions=tuple(data.get("versions") or [data["version"]]),
            plural=str(data["plural"]),
            singular=str(data.get("singular", "")),
            short_names=tuple(data.get("shortNames", ())),
            namespaced=bool(data.get("namespaced", True)),
            columns=tuple(
                Column(
                    name=str(c["name"]),
                    json_path=str(c["jsonPath"]),
                    type=str(c.get("type", "string")),
                    description=str(c.get("description", "")),
                    priority=int(c.get("priority", 0)),
                    format=str(c.get("format", "")),
                )
                for c in data.get("columns", ())
            ),
            categories=tuple(data.get("categories", ())),
            verbs=tuple(data.get("verbs") or VERBS),
            subresources=tuple(data.get("subresources", ("status",))),
        )


@dataclass
class KindRegistry:
    """Kinds by lower-case name, plural, singular and short name.

    Two groups may serve a kind of the same name (``Event`` in the core group and in
    ``events.k8s.io``): the one registered first is the one its names look up; URLs
    and manifests tell them apart by their group.
    """

    _kinds: dict[tuple[str, str], Kind] = field(default_factory=dict)
    _names: dict[str, Kind] = field(default_factory=dict)
    _plurals: dict[tuple[str, str], Kind] = field(default_factory=dict)

    def register(self, kind: Kind) -> Kind:
        """Add ``kind``; a name already taken by another kind is a ``ValueError``."""
        for name in kind.names:
            taken = self._names.get(name)
            if taken is not None and taken.kind != kind.kind:
                raise ValueError(f"{name!r} already names kind {taken.kind}")
        self._kinds[(kind.group, kind.kind)] = kind
        self._plurals[(kind.group, kind.plural)] = kind
        for name in kind.names:
            taken = self._names.get(name)
            if taken is None or taken.group == kind.group:
                self._names[name] = kind
        return kind

    def __iter__(self) -> Iterator[Kind]:
        return iter(sorted(self._kinds.values(), key=lambda k: (k.group, k.kind)))

    def __len__(self) -> int:
        return len(self._kinds)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._names

    def lookup(self, name: str) -> Kind:
        """The kind called ``name`` (any case, plural, singular or short name)."""
        found = self._names.get(name.strip().lower())
        if found is None:
            raise NotFound(f"unknown kind {name!r}{self._suggest(name)}")
        return found

    def for_manifest(self, api_version: str, kind: str) -> Kind:
        """The kind of a manifest: ``kind`` must be known and served at ``api_version``."""
        group = api_version.rpartition("/")[0]
        found = self._kinds.get((group, kind))
        if found is None:
            same = [k for k in self._kinds.values() if k.kind.lower() == kind.lower()]
            if not same:
                raise InvalidSpec(f"unknown kind {kind!r}{self._suggest(kind)}", field="kind")
            found = next((k for k in same if k.group == group), same[0])
        found.check_api_version(api_version)
        return found

    def for_path(self, group: str, version: str, plural: str) -> Kind:
        """The kind served at ``/apis/{group}/{version}/.../{plural}`` (``/api/{version}``
        for the core group; ``NotFound`` if none)."""
        found = self._plurals.get((group, plural))
        if found is None:
            where = f"{group}/{version}" if group else f"the core group ({version})"
            raise NotFound(
                f"the server has no resource {plural!r} in API group {where}"
                f"{self._suggest(plural, group)}"
            )
        if version not in found.versions:
            served = ", ".join(found.api_versions)
            where = f"{group}/{version}" if group else version
            raise NotFound(f"{found.kind} is not served at {where}; it is served at {served}")
        return found

    def _suggest(self, name: str, group: str | None = None) -> str:
        candidates = {
            n: k for n, k in self._names.items() if group is None or k.group == group
        } or dict(self._names)
        close = difflib.get_close_matches(name.lower(), list(candidates), n=5, cutoff=0.6)
        kinds: list[str] = []
        for match in close:
            label = candidates[match].kind if group is None else candidates[match].plural
            if label not in kinds:
                kinds.append(label)
        if kinds:
            return f"; did you mean {', '.join(kinds)}?"
        return "; list the kinds with: ketch get kinds"

    def copy(self) -> KindRegistry:
        return KindRegistry(dict(self._kinds), dict(self._names), dict(self._plurals))


def registry_of(kinds: Iterable[Kind]) -> KindRegistry:
    """A registry holding ``kinds``."""
    registry = KindRegistry()
    for kind in kinds:
        registry.register(kind)
    return registry


def collection_path(kind: Kind, namespace: str | None, version: str | None = None) -> str:
    """The URL path of ``kind``'s objects in ``namespace`` (all namespaces: ``None``):
    ``/apis/{group}/{version}/...``, or ``/api/{version}/...`` for the core group. A
    cluster-scoped kind's objects (``namespaces``, ``clustertrainingruntimes``) are
    addressed without a namespace, whatever ``namespace`` says."""
    version = version or kind.version
    if not kind.group:
        if namespace is None or not kind.namespaced:
            return f"/api/{version}/{kind.plural}"
        return f"/api/{version}/namespaces/{quote(namespace, safe='')}/{kind.plural}"
    base = f"/apis/{kind.group}/{version}"
    if namespace is None or not kind.namespaced:
        return f"{base}/{kind.plural}"
    return f"{base}/namespaces/{quote(namespace, safe='')}/{kind.plural}"


def object_path(kind: Kind, namespace: str, name: str, version: str | None = None) -> str:
    """The URL path of one object of ``kind``."""
    return f"{collection_path(kind, namespace, version)}/{quote(name, safe='')}"
