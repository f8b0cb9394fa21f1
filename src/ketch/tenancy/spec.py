"""The typed spec of Kubeflow's ``Profile`` (``kubeflow.org/v1``, also ``v1beta1``), and
the check the API server runs on it at apply time.

::

    spec:
      owner: {kind: User, name: alice@example.com}      # required
      resourceQuotaSpec: {hard: {cpu: "8", memory: 16Gi, requests.nvidia.com/gpu: "1"}}
      plugins: [{kind: WorkloadIdentity, spec: {gcpServiceAccount: ...}}]   # kept as is

A profile's name is the name of its namespace, so it must be a valid namespace name;
``default`` (where Ketch keeps cluster-scoped objects) cannot be one.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from ketch.core.backend.resources import parse_cpu
from ketch.core.errors import InvalidSpec
from ketch.core.resource import DEFAULT_NAMESPACE, validate_namespace
from ketch.core.spec import SpecModel, parse
from ketch.core.validation import ManifestValidator, spec_of

PROFILE = "Profile"


class Owner(SpecModel):
    """``spec.owner``: an RBAC subject, a User (its name, an email, is who owns the
    profile's namespace)."""

    kind: str = Field("User", description="User (the profile's owner is a person).")
    name: str = Field(description="The owner's user name, an email.")
    apiGroup: str | None = Field(None, description="rbac.authorization.k8s.io")


class ResourceQuotaSpec(SpecModel):
    """``spec.resourceQuotaSpec``: a core ResourceQuotaSpec for the namespace."""

    hard: dict[str, str | int | float] = Field(
        default_factory=dict,
        description="The most the namespace may use, by resource (cpu, memory, "
        "requests.nvidia.com/gpu, count/pods, ...), as Kubernetes quantities.",
    )
    scopes: list[str] | None = None
    scopeSelector: dict[str, Any] | None = None


class Plugin(SpecModel):
    """A profile plugin (``WorkloadIdentity``, ``AwsIamForServiceAccount``): kept."""

    kind: str
    spec: dict[str, Any] = Field(default_factory=dict)


class ProfileSpec(SpecModel):
    owner: Owner = Field(description="Who owns the profile and its namespace.")
    resourceQuotaSpec: ResourceQuotaSpec = Field(default_factory=ResourceQuotaSpec)
    plugins: list[Plugin] = Field(default_factory=list)


def parse_profile(spec: dict[str, Any]) -> ProfileSpec:
    """``spec`` checked as a Profile's; ``InvalidSpec`` names the field."""
    parsed = parse(ProfileSpec, spec)
    if parsed.owner.kind != "User":
        raise InvalidSpec(
            f'Unsupported value: "{parsed.owner.kind}": a profile\'s owner is a "User"',
            field="spec.owner.kind",
        )
    if not parsed.owner.name.strip():
        raise InvalidSpec("is required: the owner's user name (an email)", field="spec.owner.name")
    for resource, quantity in parsed.resourceQuotaSpec.hard.items():
        field = f"spec.resourceQuotaSpec.hard[{resource}]"
        try:
            parse_cpu(quantity)
        except InvalidSpec:
            raise InvalidSpec(
                f"{quantity!r} is not a Kubernetes quantity: write e.g. '2', '500m', '16Gi'",
                field=field,
            ) from None
    return parsed


def check_name(name: str) -> str:
    """A profile's name: the name of its namespace (and not ``default``)."""
    validate_namespace(name, field="metadata.name")
    if name == DEFAULT_NAMESPACE:
        raise InvalidSpec(
            "a profile cannot be named 'default': that namespace is Ketch's own (it holds "
            "the cluster-scoped objects)",
            field="metadata.name",
        )
    return name


def _check(manifest: dict[str, Any]) -> None:
    metadata = manifest.get("metadata") or {}
    check_name(str(metadata.get("name") or ""))
    parse_profile(spec_of(manifest))


#: The validator of Profiles, as the API server runs it.
check_profile = ManifestValidator(PROFILE, _check)
