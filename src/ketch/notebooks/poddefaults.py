"""Kubeflow's ``PodDefault`` (``kubeflow.org/v1alpha1``, namespaced): what Kubeflow's
admission webhook adds to a pod whose labels its ``selector`` matches, applied here
to a Notebook's pod ``<name>-0`` each time its server starts.

Which PodDefaults apply: those of the notebook's namespace whose ``selector`` (a
Kubernetes label selector: ``matchLabels`` and ``matchExpressions`` with ``In``,
``NotIn``, ``Exists``, ``DoesNotExist``; an empty one matches every pod) matches the
labels the pod gets (:func:`ketch.notebooks.pods.pod_labels`: the Notebook's labels,
``statefulset`` and ``notebook-name``), in the order of their names, unless the pod
carries the annotation ``poddefault.admission.kubeflow.org/exclude: "true"`` (from
the Notebook's annotations). Kubeflow's webhook serves the namespaces of profiles
only; every namespace of Ketch is treated as one.

How they merge (:func:`ketch.notebooks.admission.merge`), as the webhook does:

- ``env`` and ``volumeMounts`` go into every container, ``envFrom`` is appended to
  each container's own (the later source wins for a key, and ``env`` over any source,
  as the kubelet reads them); ``volumes``, ``tolerations``, ``imagePullSecrets``,
  ``initContainers`` and ``sidecars`` (as containers) go into the pod; ``labels`` and
  ``annotations`` onto the pod; ``command`` and ``args`` into each container that has
  none (the first PodDefault that has them wins); ``serviceAccountName`` and
  ``automountServiceAccountToken`` of the last PodDefault that sets them win.
- An item already there under the same name (an ``env`` variable, a volume, a mount's
  name or path, a toleration's key, a container, a label's or an annotation's key)
  must be the same item: a different one, from the pod or from another PodDefault, is
  a conflict, and the pod is refused (:class:`PodDefaultRefused`): its notebook does
  not start, and says which PodDefaults and which item.
- Each applied PodDefault is recorded on the pod as the annotation
  ``poddefault.admission.kubeflow.org/poddefault-<name>: <its resourceVersion>``.

The pod that results is checked as the Notebook's own pod is
(:func:`ketch.notebooks.spec.validate`): a mount naming no volume, or ``args`` that set
what Ketch sets, refuse it too.

What applies on this machine: ``env``, ``envFrom`` (read from the namespace's Secrets
and ConfigMaps when the server starts: :mod:`ketch.notebooks.environment`),
``volumes`` and ``volumeMounts`` (a ``persistentVolumeClaim`` is a folder as the
notebook's own are: :mod:`ketch.notebooks.workspace`), ``labels``, ``annotations``,
``command`` and ``args``, and ``automountServiceAccountToken: false`` (the server does
not get its namespace's API token, ``KETCH_TOKEN``). Accepted and checked for
conflicts, but not acted on: ``tolerations`` (one machine, no taints),
``imagePullSecrets`` (images are not pulled), ``serviceAccountName`` (every workload
of a namespace calls the API as its ``default-editor`` account), ``initContainers`` and
``sidecars`` (a notebook's pod runs its server only): the last three are said in the
notebook's ``PodDefaultsApplied`` event.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal

from pydantic import Field

from ketch.core.errors import InvalidSpec, KetchError
from ketch.core.resource import Resource
from ketch.core.spec import COMPLETE, SpecModel, parse
from ketch.core.store.selectors import LabelSelector as Selector
from ketch.core.store.selectors import Requirement
from ketch.core.workloads.pods import Strings
from ketch.notebooks.spec import Volume, VolumeMount, check_claim, check_mount

KIND = "PodDefault"
GROUP = "kubeflow.org"
VERSION = "v1alpha1"
PLURAL = "poddefaults"
ANNOTATION_PREFIX = "poddefault.admission.kubeflow.org"
#: a pod annotated ``"true"`` with it gets no PodDefault
EXCLUDE = f"{ANNOTATION_PREFIX}/exclude"
#: the container the webhook never gives ``command`` or ``args``
ISTIO_PROXY = "istio-proxy"

_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
#: the longest name whose record annotation ``poddefault-<name>`` is a valid key
MAX_NAME = 63 - len("poddefault-")

# -- the spec, with Kubernetes' field names ----------------------------------------------


class SelectorRequirement(SpecModel):
    key: str
    operator: str
    values: list[str] = Field(default_factory=list)


class LabelSelector(SpecModel):
    matchLabels: dict[str, str] = Field(default_factory=dict)
    matchExpressions: list[SelectorRequirement] = Field(default_factory=list)


class KeySelector(SpecModel):
    """A key of a Secret or a ConfigMap (``secretKeyRef``, ``configMapKeyRef``)."""

    name: str = ""
    key: str
    optional: bool | None = None


class FieldSelector(SpecModel):
    fieldPath: str
    apiVersion: str | None = None


class ResourceFieldSelector(SpecModel):
    resource: str
    containerName: str | None = None
    divisor: str | int | None = None


class EnvVarSource(SpecModel):
    secretKeyRef: KeySelector | None = None
    configMapKeyRef: KeySelector | None = None
    fieldRef: FieldSelector | None = None
    resourceFieldRef: ResourceFieldSelector | None = None


class EnvVar(SpecModel):
    name: str
    value: str | None = None
    valueFrom: EnvVarSource | None = None


class SourceReference(SpecModel):
    """A whole Secret or ConfigMap (``secretRef``, ``configMapRef``)."""

    name: str = ""
    optional: bool | None = None


class EnvFromSource(SpecModel):
    prefix: str | None = None
    secretRef: SourceReference | None = None
    configMapRef: SourceReference | None = None


class Toleration(SpecModel):
    key: str | None = None
    operator: str | None = None
    value: str | None = None
    effect: str | None = None
    tolerationSeconds: int | None = None


class LocalObjectReference(SpecModel):
    name: str = ""


class PodDefaultContainer(SpecModel):
    """An init container or a sidecar: a Kubernetes ``Container``."""

    name: str
    image: str | None = None


class PodDefaultSpec(SpecModel):
    """``spec`` of a PodDefault: every field of Kubeflow's CRD (no other is kept)."""

    model_config = COMPLETE

    selector: LabelSelector
    desc: str | None = None
    env: list[EnvVar] = Field(default_factory=list)
    envFrom: list[EnvFromSource] = Field(default_factory=list)
    volumes: list[Volume] = Field(default_factory=list)
    volumeMounts: list[VolumeMount] = Field(default_factory=list)
    annotations: dict[str, str] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=list)
    serviceAccountName: str | None = None
    automountServiceAccountToken: bool | None = None
    command: Strings | None = None
    args: Strings | None = None
    initContainers: list[PodDefaultContainer] = Field(default_factory=list)
    sidecars: list[PodDefaultContainer] = Field(default_factory=list)
    imagePullSecrets: list[LocalObjectReference] = Field(default_factory=list)


def parse_spec_of(resource: Resource) -> PodDefaultSpec:
    """The PodDefault's ``spec`` (``InvalidSpec`` names the field)."""
    return parse(PodDefaultSpec, resource.spec)


# -- checks at apply ---------------------------------------------------------------------

_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")
_TOLERATION_OPERATORS = ("Exists", "Equal")
_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")


def _check_key(key: str, field: str, what: str = "key") -> None:
    prefix, _, name = key.rpartition("/")
    if (
        not name
        or len(name) > 63
        or not _LABEL_NAME.match(name)
        or (prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)))
        or (not prefix and key.startswith("/"))
    ):
        raise InvalidSpec(
            f"{key!r} is not a valid {what}: an optional DNS subdomain and '/', then at "
            "most 63 letters, digits, '-', '_' and '.', starting and ending with a letter "
            "or digit",
            field=field,
        )


def _check_value(value: str, field: str) -> None:
    if len(value) > 63 or not _LABEL_VALUE.match(value):
        raise InvalidSpec(
            f"{value!r} is not a valid label value: at most 63 letters, digits, '-', '_' "
            "and '.', starting and ending with a letter or digit (or empty)",
            field=field,
        )


def selector_of(selector: LabelSelector, where: str = "spec.selector") -> Selector:
    """``selector`` as a label selector (``InvalidSpec`` names what Kubernetes refuses).
    An empty selector matches every pod."""
    requirements: list[Requirement] = []
    for key, value in sorted(selector.matchLabels.items()):
        _check_key(key, f"{where}.matchLabels[{key}]", "label key")
        _check_value(value, f"{where}.matchLabels[{key}]")
        requirements.append(Requirement(key, "=", value))
    for index, expression in enumerate(selector.matchExpressions):
        at = f"{where}.matchExpressions[{index}]"
        _check_key(expression.key, f"{at}.key", "label key")
        operator = expression.operator
        if operator not in _OPERATORS:
            raise InvalidSpec(
                f"Unsupported value: {operator!r}: supported values: "
                + ", ".join(f'"{o}"' for o in _OPERATORS),
                field=f"{at}.operator",
            )
        values = expression.values
        if operator in ("In", "NotIn"):
            if not values:
                raise InvalidSpec(
                    f"Required value: must be specified when `operator` is '{operator}'",
                    field=f"{at}.values",
                )
            for v, value in enumerate(values):
                _check_value(value, f"{at}.values[{v}]")
            kind: Literal["in", "notin"] = "in" if operator == "In" else "notin"
            requirements.append(Requirement(expression.key, kind, values=tuple(values)))
        else:
            if values:
                raise InvalidSpec(
                    f"Forbidden: may not be specified when `operator` is '{operator}'",
                    field=f"{at}.values",
                )
            exists: Literal["exists", "!exists"] = "exists" if operator == "Exists" else "!exists"
            requirements.append(Requirement(expression.key, exists))
    return Selector(tuple(requirements))


def _check_env(env: Sequence[EnvVar], where: str) -> None:
    for index, variable in enumerate(env):
        at = f"{where}[{index}]"
        if not variable.name or "=" in variable.name:
            raise InvalidSpec(
                f"{variable.name!r} is not a valid environment variable name: it must be "
                "non-empty and hold no '='",
                field=f"{at}.name",
            )
        source = variable.valueFrom
        if source is None:
            continue
        if variable.value:
            raise InvalidSpec(
                "Invalid value: may not be specified when `value` is not empty",
                field=f"{at}.valueFrom",
            )
        given = [
            name
            for name in ("secretKeyRef", "configMapKeyRef", "fieldRef", "resourceFieldRef")
            if getattr(source, name) is not None
        ]
        if len(given) != 1:
            raise InvalidSpec(
                "Invalid value: must specify one of: `fieldRef`, `resourceFieldRef`, "
                "`configMapKeyRef` or `secretKeyRef`"
                + (f" (found {', '.join(given)})" if given else ""),
                field=f"{at}.valueFrom",
            )
        for name in ("secretKeyRef", "configMapKeyRef"):
            ref = getattr(source, name)
            if ref is not None and not ref.name:
                raise InvalidSpec("Required value", field=f"{at}.valueFrom.{name}.name")
            if ref is not None and not ref.key:
                raise InvalidSpec("Required value", field=f"{at}.valueFrom.{name}.key")


def _check_env_from(sources: Sequence[EnvFromSource], where: str) -> None:
    for index, source in enumerate(sources):
        at = f"{where}[{index}]"
        given = [r for r in ("secretRef", "configMapRef") if getattr(source, r) is not None]
        if len(given) != 1:
            raise InvalidSpec(
                "Invalid value: must specify one of: `configMapRef` or `secretRef`", field=at
            )
        ref = getattr(source, given[0])
        if not ref.name:
            raise InvalidSpec("Required value", field=f"{at}.{given[0]}.name")
        if source.prefix and "=" in source.prefix:
            raise InvalidSpec("must hold no '='", field=f"{at}.prefix")


def _check_containers(containers: Sequence[PodDefaultContainer], where: str) -> None:
    names: set[str] = set()
    for index, container in enumerate(containers):
        at = f"{where}[{index}]"
        if not container.name:
            raise InvalidSpec("Required value", field=f"{at}.name")
        if container.name in names:
            raise InvalidSpec(f"Duplicate value: {container.name!r}", field=f"{at}.name")
        names.add(container.name)
        if not (container.image or "").strip():
            raise InvalidSpec("Required value", field=f"{at}.image")


def validate_poddefault(resource: Resource) -> None:
    """Refuse a PodDefault Kubernetes would refuse, or whose record annotation could not
    be written, naming the field."""
    name = resource.metadata.name
    if len(name) > MAX_NAME or not _DNS_SUBDOMAIN.match(name):
        raise InvalidSpec(
            f"{name!r} is not a valid PodDefault name: use at most {MAX_NAME} lower-case "
            "letters, digits, '-' and '.' (the pods it applies to record it in the "
            f"annotation {ANNOTATION_PREFIX}/poddefault-<name>)",
            field="metadata.name",
        )
    if "selector" not in resource.spec:
        raise InvalidSpec("Required value", field="spec.selector")
    spec = parse_spec_of(resource)
    selector_of(spec.selector)
    _check_env(spec.env, "spec.env")
    _check_env_from(spec.envFrom, "spec.envFrom")
    volumes: set[str] = set()
    for index, volume in enumerate(spec.volumes):
        at = f"spec.volumes[{index}]"
        if not volume.name:
            raise InvalidSpec("Required value", field=f"{at}.name")
        if volume.name in volumes:
            raise InvalidSpec(f"Duplicate value: {volume.name!r}", field=f"{at}.name")
        volumes.add(volume.name)
        check_claim(volume, at)
    for index, mount in enumerate(spec.volumeMounts):
        at = f"spec.volumeMounts[{index}]"
        if not mount.name:
            raise InvalidSpec("Required value", field=f"{at}.name")
        check_mount(mount, at)
    for key, value in spec.labels.items():
        _check_key(key, f"spec.labels[{key}]", "label key")
        _check_value(value, f"spec.labels[{key}]")
    for key in spec.annotations:
        _check_key(key, f"spec.annotations[{key}]", "annotation key")
    for index, toleration in enumerate(spec.tolerations):
        at = f"spec.tolerations[{index}]"
        if toleration.operator not in (None, "", *_TOLERATION_OPERATORS):
            raise InvalidSpec(
                f'Unsupported value: {toleration.operator!r}: supported values: "Equal", "Exists"',
                field=f"{at}.operator",
            )
        if toleration.effect not in (None, "", *_EFFECTS):
            raise InvalidSpec(
                f"Unsupported value: {toleration.effect!r}: supported values: "
                + ", ".join(f'"{e}"' for e in _EFFECTS),
                field=f"{at}.effect",
            )
    _check_containers(spec.initContainers, "spec.initContainers")
    _check_containers(spec.sidecars, "spec.sidecars")


# -- selection -----------------------------------------------------------------------------


def excluded(annotations: Mapping[str, str]) -> bool:
    """Whether a pod with ``annotations`` opted out of PodDefaults."""
    return annotations.get(EXCLUDE) == "true"


def select(
    defaults: Iterable[Resource], namespace: str, labels: Mapping[str, str]
) -> list[Resource]:
    """The PodDefaults of ``namespace`` that select a pod with ``labels``, by name."""
    chosen = []
    for default in sorted(defaults, key=lambda d: d.metadata.name):
        if default.kind != KIND or default.metadata.namespace != namespace:
            continue
        try:
            selector = selector_of(parse_spec_of(default).selector)
        except InvalidSpec as exc:  # stored before it was checked: refuse the pod
            raise PodDefaultRefused(
                f"PodDefault {default.metadata.name!r} cannot be read: {exc}",
                names=[default.metadata.name],
            ) from None
        if selector.matches(labels):
            chosen.append(default)
    return chosen


class PodDefaultRefused(KetchError):
    """The pod cannot have its PodDefaults (a conflict, or an invalid pod): as the
    webhook refuses the pod, the notebook does not start. ``names``: the PodDefaults."""

    def __init__(self, message: str, *, names: Sequence[str]) -> None:
        self.names = list(names)
        super().__init__(message)
