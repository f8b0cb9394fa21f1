"""Kubeflow's admission webhook for PodDefaults, as it applies them to a notebook's
pod: :func:`merge` gives a pod the PodDefaults chosen for it (or refuses it, naming
every conflict), :func:`apply_to_notebook` chooses them for a Notebook's pod and
checks the pod that results as the Notebook's own pod is checked. The rules are
:mod:`ketch.notebooks.poddefaults`'s.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from ketch.core.errors import InvalidSpec
from ketch.core.resource import Resource
from ketch.notebooks.poddefaults import (
    ANNOTATION_PREFIX,
    ISTIO_PROXY,
    EnvFromSource,
    EnvVar,
    LocalObjectReference,
    PodDefaultContainer,
    PodDefaultRefused,
    Toleration,
    excluded,
    parse_spec_of,
    select,
)
from ketch.notebooks.pods import pod_annotations, pod_labels, pod_name
from ketch.notebooks.spec import (
    NotebookContainer,
    NotebookSpec,
    Volume,
    VolumeMount,
    main_container,
    parse_spec,
    validate,
)


def _plain(value: Any) -> Any:
    """``value`` without what Go leaves out of an object (null, false, empty strings,
    lists and objects), so that two items compare as the webhook compares them."""
    if isinstance(value, dict):
        kept = {k: _plain(v) for k, v in value.items()}
        return {k: v for k, v in kept.items() if v not in (None, False, "", [], {})}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _dump(model: type[BaseModel], item: Any) -> dict[str, Any]:
    """``item`` (a model or its JSON) as ``model``'s JSON, without empty fields."""
    if isinstance(item, BaseModel):
        item = item.model_dump(mode="json", by_alias=True, exclude_none=True)
    parsed = model.model_validate(item)
    found: dict[str, Any] = _plain(parsed.model_dump(mode="json", by_alias=True, exclude_none=True))
    return found


def _shown(item: Mapping[str, Any]) -> str:
    """An item as a message shows it (a Secret's reference, never a value read)."""
    return ", ".join(f"{k}: {v}" for k, v in item.items() if k != "name") or "{}"


@dataclass
class _Merge:
    """Items of one list keyed by one of their fields, and who brought each."""

    what: str
    model: type[BaseModel]
    key: Callable[[dict[str, Any]], str | None]
    #: where the list is (`` in container 'nb'``)
    place: str = ""
    items: list[dict[str, Any]] = field(default_factory=list)
    by_key: dict[str, tuple[dict[str, Any], str]] = field(default_factory=dict)

    def start(self, items: Iterable[Any], origin: str) -> _Merge:
        for item in items:
            plain = _dump(self.model, item)
            self.items.append(plain)
            key = self.key(plain)
            if key is not None:
                self.by_key.setdefault(key, (plain, origin))
        return self

    def add(self, item: Any, origin: str, conflicts: list[str], *, keep: bool = True) -> None:
        plain = _dump(self.model, item)
        key = self.key(plain)
        if key is None:
            self.items.append(plain)
            return
        found = self.by_key.get(key)
        if found is None:
            self.by_key[key] = (plain, origin)
            if keep:
                self.items.append(plain)
        elif found[0] != plain:
            conflicts.append(
                f"{self.what} {key!r}{self.place}: {origin} has {_shown(plain)}, "
                f"{found[1]} has {_shown(found[0])}"
            )


@dataclass
class Merged:
    """A pod with its PodDefaults applied (:func:`merge`)."""

    #: the PodDefaults applied, by name
    names: list[str]
    #: the pod's spec (a Kubernetes ``PodSpec``)
    spec: dict[str, Any]
    #: the pod's labels and annotations, the PodDefaults' added
    labels: dict[str, str]
    annotations: dict[str, str]
    #: what was accepted and is not acted on here (said in an event)
    notes: list[str] = field(default_factory=list)


def _map_merge(
    what: str,
    existing: Mapping[str, str],
    defaults: Sequence[tuple[str, Mapping[str, str]]],
    conflicts: list[str],
) -> dict[str, str]:
    out = dict(existing)
    origin = dict.fromkeys(existing, "the pod")
    for name, values in defaults:
        for key, value in values.items():
            if key not in out:
                out[key], origin[key] = value, f"PodDefault {name!r}"
            elif out[key] != value:
                conflicts.append(
                    f"{what} {key!r}: PodDefault {name!r} has {value!r}, {origin[key]} has "
                    f"{out[key]!r}"
                )
    return out


def merge(
    pod: str,
    labels: Mapping[str, str],
    annotations: Mapping[str, str],
    spec: Mapping[str, Any],
    defaults: Sequence[Resource],
) -> Merged:
    """Pod ``pod`` (its ``labels``, ``annotations`` and ``spec``, a ``PodSpec``'s JSON)
    with ``defaults`` applied in their order, as Kubeflow's webhook applies them (see
    the module); :class:`PodDefaultRefused` names every conflict."""
    out = copy.deepcopy(dict(spec))
    names = [d.metadata.name for d in defaults]
    if not defaults:
        return Merged([], out, dict(labels), dict(annotations))
    specs = [(d.metadata.name, parse_spec_of(d)) for d in defaults]
    conflicts: list[str] = []
    own = "the pod"

    def by_name(item: dict[str, Any]) -> str | None:
        return str(item.get("name", ""))

    volumes = _Merge("volume", Volume, by_name).start(out.get("volumes") or (), own)
    tolerations = _Merge("toleration", Toleration, lambda t: t.get("key") or "").start(
        out.get("tolerations") or (), own
    )
    pull = _Merge("imagePullSecret", LocalObjectReference, by_name).start(
        out.get("imagePullSecrets") or (), own
    )
    for name, default in specs:
        origin = f"PodDefault {name!r}"
        for volume in default.volumes:
            volumes.add(volume, origin, conflicts)
        for toleration in default.tolerations:
            tolerations.add(toleration, origin, conflicts)
        for secret in default.imagePullSecrets:
            pull.add(secret, origin, conflicts)

    containers: list[dict[str, Any]] = []
    for container in out.get("containers") or ():
        mine = f"container {container.get('name')!r}"
        place = f" in {mine}"
        env = _Merge("env", EnvVar, by_name, place).start(container.get("env") or (), mine)
        mounts = _Merge("volumeMount", VolumeMount, by_name, place).start(
            container.get("volumeMounts") or (), mine
        )
        paths = _Merge(
            "mountPath", VolumeMount, lambda m: str(m.get("mountPath", "")), place
        ).start(container.get("volumeMounts") or (), mine)
        env_from = list(container.get("envFrom") or ())
        for name, default in specs:
            origin = f"PodDefault {name!r}"
            for variable in default.env:
                env.add(variable, origin, conflicts)
            for mount in default.volumeMounts:
                mounts.add(mount, origin, conflicts)
                paths.add(mount, origin, conflicts, keep=False)
            env_from.extend(_dump(EnvFromSource, s) for s in default.envFrom)
        changed = dict(container)
        changed["env"], changed["volumeMounts"], changed["envFrom"] = (
            env.items,
            mounts.items,
            env_from,
        )
        if changed.get("name") != ISTIO_PROXY:
            for _name, default in specs:
                if not changed.get("command") and default.command:
                    changed["command"] = list(default.command)
                if not changed.get("args") and default.args:
                    changed["args"] = list(default.args)
        containers.append({k: v for k, v in changed.items() if v not in (None, [])})

    init = _Merge("initContainer", PodDefaultContainer, by_name).start(
        out.get("initContainers") or (), own
    )
    sidecars = _Merge("container", PodDefaultContainer, by_name).start(containers, own)
    notes: list[str] = []
    for name, default in specs:
        origin = f"PodDefault {name!r}"
        for container in default.initContainers:
            init.add(container, origin, conflicts)
        for container in default.sidecars:
            sidecars.add(container, origin, conflicts)
        if default.initContainers:
            listed = ", ".join(c.name for c in default.initContainers)
            notes.append(f"initContainers {listed} of {origin} do not run")
        if default.sidecars:
            listed = ", ".join(c.name for c in default.sidecars)
            notes.append(f"sidecars {listed} of {origin} do not run")
        if default.serviceAccountName:
            notes.append(
                f"serviceAccountName {default.serviceAccountName!r} of {origin} is recorded "
                "only: the server calls the API as its namespace's default-editor"
            )
    added_labels = _map_merge("label", labels, [(n, d.labels) for n, d in specs], conflicts)
    added_annotations = _map_merge(
        "annotation", annotations, [(n, d.annotations) for n, d in specs], conflicts
    )
    if conflicts:
        raise PodDefaultRefused(
            f"conflict applying PodDefaults {', '.join(names)} to pod {pod}: "
            + "; ".join(conflicts),
            names=_named_in(conflicts, names),
        )

    for key, merged in (
        ("volumes", volumes.items),
        ("tolerations", tolerations.items),
        ("imagePullSecrets", pull.items),
        ("initContainers", init.items),
    ):
        if merged:
            out[key] = merged
    # the sidecars come after the containers, which already had env and mounts added
    out["containers"] = containers + sidecars.items[len(containers) :]
    for _name, default in specs:
        if default.serviceAccountName:
            out["serviceAccountName"] = default.serviceAccountName
        if default.automountServiceAccountToken is not None:
            out["automountServiceAccountToken"] = default.automountServiceAccountToken
    for default_resource in defaults:
        key = f"{ANNOTATION_PREFIX}/poddefault-{default_resource.metadata.name}"
        added_annotations[key] = default_resource.metadata.resourceVersion or ""
    return Merged(names, out, added_labels, added_annotations, notes)


def _named_in(conflicts: Sequence[str], names: Sequence[str]) -> list[str]:
    """The PodDefaults ``conflicts`` name."""
    return [n for n in names if any(f"PodDefault {n!r}" in c for c in conflicts)]


# -- a notebook's pod ------------------------------------------------------------------------


@dataclass
class Applied:
    """A notebook's pod with its PodDefaults: what its server runs as."""

    #: the PodDefaults applied, by name (none: the pod is the Notebook's own)
    names: list[str]
    #: the Notebook's spec with the pod's spec merged into its template
    spec: NotebookSpec
    container: NotebookContainer
    #: what the pod gets besides the Notebook's own labels and annotations
    labels: dict[str, str]
    annotations: dict[str, str]
    notes: list[str] = field(default_factory=list)

    @property
    def automount_token(self) -> bool:
        """Whether the server gets its namespace's API token (``false`` only when
        ``automountServiceAccountToken`` says so)."""
        extra = self.spec.template.spec.model_extra or {}
        return extra.get("automountServiceAccountToken") is not False


def unchanged(resource: Resource) -> Applied:
    """The notebook's pod as its Notebook has it."""
    spec = parse_spec(resource.spec)
    _index, container = main_container(resource.metadata.name, spec)
    return Applied([], spec, container, {}, {})


def apply_to_notebook(resource: Resource, defaults: Iterable[Resource]) -> Applied:
    """The pod of Notebook ``resource`` with the PodDefaults of ``defaults`` that select
    it applied (see the module); :class:`PodDefaultRefused` when it cannot have them."""
    meta = resource.metadata
    labels, annotations = pod_labels(resource), pod_annotations(resource)
    if excluded(annotations):
        return unchanged(resource)
    chosen = select(defaults, meta.namespace, labels)
    if not chosen:
        return unchanged(resource)
    template = dict(resource.spec.get("template") or {})
    merged = merge(pod_name(meta.name), labels, annotations, template.get("spec") or {}, chosen)
    changed = resource.model_copy(deep=True)
    changed.spec = {**changed.spec, "template": {**template, "spec": merged.spec}}
    try:
        validate(changed)
    except InvalidSpec as exc:
        raise PodDefaultRefused(
            f"with PodDefaults {', '.join(merged.names)} applied, pod {pod_name(meta.name)} "
            f"is invalid: {exc}",
            names=merged.names,
        ) from None
    spec = parse_spec(changed.spec)
    _index, container = main_container(meta.name, spec)
    added_labels = {k: v for k, v in merged.labels.items() if labels.get(k) != v}
    added_annotations = {k: v for k, v in merged.annotations.items() if annotations.get(k) != v}
    return Applied(merged.names, spec, container, added_labels, added_annotations, merged.notes)
