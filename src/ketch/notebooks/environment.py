"""A notebook container's environment as the kubelet makes it when the container
starts: its ``envFrom`` sources in order (a later source wins for a key; each key
under the source's ``prefix``), then its ``env`` (which wins over every source), a
``valueFrom`` read from a key of a Secret or a ConfigMap of the pod's namespace, or
from the pod's fields.

Secrets and ConfigMaps are read from the store as the server keeps them (the object's
top-level fields as its stored ``spec``: a Secret's ``data`` base64-encoded, a
ConfigMap's ``data`` as text; ``binaryData`` is not read into an environment, as the
kubelet does not). What is read from them is never shown: it goes into the process's
secret environment, and the pod shows the reference only.

A Secret or ConfigMap that is not there, or a key it lacks, stops the container from
starting (:class:`ConfigMissing`, the kubelet's ``CreateContainerConfigError``), with
the kubelet's message (``secret "creds" not found``), unless the reference is
``optional``. A key that cannot be a variable's name (empty, or holding ``=``) is
skipped, as the kubelet skips it, and said.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ketch.core.errors import KetchError
from ketch.core.resource import Resource
from ketch.notebooks.poddefaults import EnvFromSource, EnvVar, FieldSelector, KeySelector

#: reads an object of the pod's namespace: ``(kind, name)`` → it, or ``None``
Reader = Callable[[str, str], Resource | None]

SECRET, CONFIG_MAP = "Secret", "ConfigMap"
REASON = "CreateContainerConfigError"


class ConfigMissing(KetchError):
    """A Secret, a ConfigMap or a key the container's environment needs is missing."""


@dataclass(frozen=True)
class PodFields:
    """What ``fieldRef`` reads of the pod."""

    name: str
    namespace: str
    uid: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    service_account: str = "default"
    node: str = ""
    ip: str = "127.0.0.1"


@dataclass
class Environment:
    """The variables the manifest writes (``plain``, shown in the pod), those read from
    elsewhere (``hidden``: never shown), and what was skipped (``notes``)."""

    plain: dict[str, str] = field(default_factory=dict)
    hidden: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _values(kind: str, resource: Resource) -> dict[str, str]:
    """The values of a stored Secret (decoded) or ConfigMap."""
    data = resource.spec.get("data") or {}
    if not isinstance(data, dict):
        return {}
    if kind == CONFIG_MAP:
        return {str(k): str(v) for k, v in data.items()}
    found: dict[str, str] = {}
    for key, value in data.items():
        try:
            raw = base64.b64decode(str(value).encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError, ValueError):
            continue
        found[str(key)] = raw.decode("utf-8", "surrogateescape")
    return found


class _Sources:
    """The Secrets and ConfigMaps read for one container, each read once."""

    def __init__(self, namespace: str, read: Reader) -> None:
        self.namespace = namespace
        self.read = read
        self._found: dict[tuple[str, str], dict[str, str] | None] = {}

    def get(self, kind: str, name: str, optional: bool | None) -> dict[str, str] | None:
        if (kind, name) not in self._found:
            resource = self.read(kind, name)
            self._found[kind, name] = None if resource is None else _values(kind, resource)
        found = self._found[kind, name]
        if found is None and not optional:
            raise ConfigMissing(f'{kind.lower()} "{name}" not found')
        return found

    def key(self, kind: str, ref: KeySelector) -> str | None:
        values = self.get(kind, ref.name, ref.optional)
        if values is None:
            return None
        if ref.key not in values:
            if ref.optional:
                return None
            raise ConfigMissing(
                f"couldn't find key {ref.key} in {kind} {self.namespace}/{ref.name}"
            )
        return values[ref.key]


def _field(selector: FieldSelector, pod: PodFields) -> str | None:
    """A pod field, as the downward API gives it (``None``: not one Ketch knows)."""
    path = selector.fieldPath
    simple = {
        "metadata.name": pod.name,
        "metadata.namespace": pod.namespace,
        "metadata.uid": pod.uid,
        "spec.serviceAccountName": pod.service_account,
        "spec.nodeName": pod.node,
        "status.podIP": pod.ip,
        "status.podIPs": pod.ip,
        "status.hostIP": pod.ip,
        "status.hostIPs": pod.ip,
    }
    if path in simple:
        return simple[path]
    for prefix, values in (
        ("metadata.labels", pod.labels),
        ("metadata.annotations", pod.annotations),
    ):
        if path.startswith(f"{prefix}['") and path.endswith("']"):
            return values.get(path[len(prefix) + 2 : -2], "")
    return None


def resolve(container: Mapping[str, Any], pod: PodFields, read: Reader) -> Environment:
    """The environment of ``container`` (a Kubernetes ``Container``'s JSON) in ``pod``
    (see the module); :class:`ConfigMissing` when it cannot be made."""
    sources = _Sources(pod.namespace, read)
    out = Environment()
    for raw in container.get("envFrom") or ():
        source = EnvFromSource.model_validate(raw)
        if source.secretRef is not None:
            kind, ref = SECRET, source.secretRef
        elif source.configMapRef is not None:
            kind, ref = CONFIG_MAP, source.configMapRef
        else:
            continue
        values = sources.get(kind, ref.name, ref.optional)
        skipped = []
        for key, value in (values or {}).items():
            name = f"{source.prefix or ''}{key}"
            if not name or "=" in name or "\0" in value:
                skipped.append(key)
                continue
            out.hidden[name] = value
        if skipped:
            out.notes.append(
                f"keys {', '.join(sorted(skipped))} of {kind} {ref.name} are not valid "
                "environment variables and were skipped"
            )
    for raw in container.get("env") or ():
        variable = EnvVar.model_validate(raw)
        origin = variable.valueFrom
        if origin is None:
            out.plain[variable.name] = variable.value or ""
            out.hidden.pop(variable.name, None)
            continue
        found: str | None = None
        if origin.secretKeyRef is not None:
            found = sources.key(SECRET, origin.secretKeyRef)
        elif origin.configMapKeyRef is not None:
            found = sources.key(CONFIG_MAP, origin.configMapKeyRef)
        elif origin.fieldRef is not None:
            found = _field(origin.fieldRef, pod)
            if found is None:
                out.notes.append(
                    f"{variable.name}: fieldRef {origin.fieldRef.fieldPath} is not a field "
                    "Ketch gives; the variable is not set"
                )
        elif origin.resourceFieldRef is not None:
            out.notes.append(
                f"{variable.name}: resourceFieldRef is not given on this machine; the "
                "variable is not set"
            )
        out.plain.pop(variable.name, None)
        if found is not None and "\0" not in found:
            out.hidden[variable.name] = found
        else:
            out.hidden.pop(variable.name, None)
    return out
