"""The resource envelope: ``apiVersion``, ``kind``, ``metadata``, ``spec``, ``status``.

Field names are Kubernetes' own, so a manifest written for Kubeflow parses as is
and a resource serialises back to the same shape (``Resource.to_manifest``).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

from pydantic import Field, ValidationError

from ketch.core.conditions import get_condition
from ketch.core.errors import InvalidSpec
from ketch.core.spec import SpecModel, invalid_spec
from ketch.core.timestamps import format_time, utcnow

__all__ = [
    "DEFAULT_NAMESPACE",
    "Condition",
    "ObjectMeta",
    "Resource",
    "format_time",
    "get_condition",
    "set_condition",
    "utcnow",
    "validate_name",
    "validate_namespace",
    "validate_object_name",
]

DEFAULT_NAMESPACE = "default"

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# A DNS-1035 label (without its 63-character limit): what operators require of the
# names of jobs, InferenceServices and experiments, which become Service names.
DNS_1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")

ConditionStatus = Literal["True", "False", "Unknown"]


def validate_name(name: str, field: str = "metadata.name") -> str:
    """Check ``name`` is an RFC 1123 DNS subdomain, as Kubernetes requires of object names."""
    if not name:
        raise InvalidSpec("a name is required", field=field)
    if len(name) > 253:
        raise InvalidSpec(
            f"{name!r} is {len(name)} characters long; an RFC 1123 subdomain has at most 253",
            field=field,
        )
    if not _DNS_SUBDOMAIN.match(name):
        raise InvalidSpec(
            f"{name!r} is not a valid RFC 1123 subdomain: use lowercase letters, digits, '-' "
            "and '.', starting and ending with a letter or digit",
            field=field,
            hint="for example 'my-job' or 'train.v2'",
        )
    return name


#: The API groups whose objects' names are path segments, not DNS subdomains, as
#: Kubernetes has them: RBAC's (Kubeflow's profile controller names its owner's
#: RoleBinding ``namespaceAdmin``).
PATH_SEGMENT_GROUPS = frozenset({"rbac.authorization.k8s.io"})


def validate_object_name(name: str, group: str, field: str = "metadata.name") -> str:
    """Check ``name`` is a valid name for an object of API group ``group``: an RFC 1123
    subdomain (:func:`validate_name`), or, in :data:`PATH_SEGMENT_GROUPS`, any text of
    at most 253 characters without ``/`` or ``%`` other than ``.`` and ``..``."""
    if group not in PATH_SEGMENT_GROUPS:
        return validate_name(name, field)
    if not name:
        raise InvalidSpec("a name is required", field=field)
    if len(name) > 253:
        raise InvalidSpec(f"{name!r} is {len(name)} characters long; at most 253", field=field)
    if name in (".", "..") or "/" in name or "%" in name:
        raise InvalidSpec(
            f"{name!r} is not a valid name: it may not be '.' or '..', nor contain '/' or '%'",
            field=field,
        )
    return name


def validate_namespace(namespace: str, field: str = "metadata.namespace") -> str:
    """Check ``namespace`` is an RFC 1123 DNS label, as Kubernetes requires of namespaces."""
    if not namespace:
        raise InvalidSpec("a namespace is required", field=field)
    if len(namespace) > 63:
        raise InvalidSpec(
            f"{namespace!r} is {len(namespace)} characters long; an RFC 1123 label has at most 63",
            field=field,
        )
    if not _DNS_LABEL.match(namespace):
        raise InvalidSpec(
            f"{namespace!r} is not a valid RFC 1123 label: use lowercase letters, digits and "
            "'-', starting and ending with a letter or digit",
            field=field,
            hint="for example 'team-a'",
        )
    return namespace


class ObjectMeta(SpecModel):
    name: str
    namespace: str = DEFAULT_NAMESPACE
    uid: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    ownerReferences: list[dict[str, Any]] | None = None
    managedFields: list[dict[str, Any]] | None = None
    generation: int | None = None
    resourceVersion: str | None = None
    creationTimestamp: datetime | None = None


class Condition(SpecModel):
    type: str
    status: ConditionStatus
    reason: str = ""
    message: str = ""
    lastTransitionTime: datetime | None = None
    observedGeneration: int | None = None


class Resource(SpecModel):
    apiVersion: str
    kind: str
    metadata: ObjectMeta
    spec: dict[str, Any] = Field(default_factory=dict)
    status: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any]) -> Resource:
        """Parse and validate a manifest; every problem is an ``InvalidSpec`` naming its field."""
        if not isinstance(manifest, dict):
            raise InvalidSpec(f"a manifest must be a mapping, got {type(manifest).__name__}")
        try:
            resource = cls.model_validate(manifest)
        except ValidationError as exc:
            raise invalid_spec(exc) from None
        resource.validate_names()
        return resource

    def validate_names(self) -> None:
        """Check ``apiVersion``, ``kind``, ``metadata.name`` and ``metadata.namespace``."""
        if not self.apiVersion:
            raise InvalidSpec("apiVersion is required", field="apiVersion")
        if not self.kind:
            raise InvalidSpec("kind is required", field="kind")
        validate_object_name(self.metadata.name, self.apiVersion.rpartition("/")[0])
        validate_namespace(self.metadata.namespace)

    @property
    def key(self) -> tuple[str, str]:
        """``(namespace, name)``: how controllers address a resource of a kind."""
        return (self.metadata.namespace, self.metadata.name)

    def to_manifest(self) -> dict[str, Any]:
        """The resource as a JSON-ready dict with Kubernetes field names."""
        return self.model_dump(mode="json", exclude_none=True)

    def conditions(self) -> list[Condition]:
        """``status.conditions`` as models (``InvalidSpec`` if one is malformed)."""
        parsed: list[Condition] = []
        for index, raw in enumerate(self.status.get("conditions", [])):
            try:
                parsed.append(Condition.model_validate(raw))
            except ValidationError as exc:
                raise invalid_spec(exc, prefix=f"status.conditions[{index}]") from None
        return parsed

    def condition(self, type: str) -> Condition | None:
        for condition in self.conditions():
            if condition.type == type:
                return condition
        return None


def set_condition(
    status: dict[str, Any],
    type: str,
    status_value: ConditionStatus,
    reason: str = "",
    message: str = "",
    *,
    observed_generation: int | None = None,
    now: datetime | None = None,
    last: bool = False,
) -> bool:
    """Set condition ``type`` in ``status["conditions"]`` in place.

    ``lastTransitionTime`` changes only when the condition's status changes, as in
    Kubernetes. With ``last`` a condition that changes moves to the end of the list,
    as the training operator and Katib keep theirs: their CRDs show the last one as the
    object's state. Returns whether anything in the condition changed.
    """
    if status_value not in ("True", "False", "Unknown"):
        raise InvalidSpec(
            f"condition status must be 'True', 'False' or 'Unknown', got {status_value!r}",
            field="status.conditions.status",
        )
    conditions: list[dict[str, Any]] = status.setdefault("conditions", [])
    new: dict[str, Any] = {
        "type": type,
        "status": status_value,
        "reason": reason,
        "message": message,
        "lastTransitionTime": format_time(now or utcnow()),
    }
    if observed_generation is not None:
        new["observedGeneration"] = observed_generation
    for index, old in enumerate(conditions):
        if old.get("type") != type:
            continue
        if old.get("status") == status_value and old.get("lastTransitionTime"):
            new["lastTransitionTime"] = old["lastTransitionTime"]
        if old == new:
            return False
        if last:
            del conditions[index]
            conditions.append(new)
        else:
            conditions[index] = new
        return True
    conditions.append(new)
    return True
