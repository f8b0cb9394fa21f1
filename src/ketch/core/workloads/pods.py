"""The typed Kubernetes pod template (``core/v1``), with Kubernetes' field names:
what a training job's replica, a batch Job's pod and a Trainer runtime's replicated
job run.

Only the fields Ketch acts on are typed; everything else in a manifest is kept (see
:class:`~ketch.core.spec.SpecModel`) so a manifest written for Kubeflow parses as is.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, Field

from ketch.core.spec import SpecModel


def _as_strings(value: Any) -> Any:
    """YAML's numbers and booleans in a command line, as the text they stand for."""
    if isinstance(value, list):
        return [str(v) for v in value]
    return value


#: a container's ``command`` or ``args``
Strings = Annotated[list[str], BeforeValidator(_as_strings)]


class EnvVar(SpecModel):
    name: str
    value: str | None = None


class ContainerPort(SpecModel):
    name: str | None = None
    containerPort: int


class ResourceRequirements(SpecModel):
    requests: dict[str, str | int | float] = Field(default_factory=dict)
    limits: dict[str, str | int | float] = Field(default_factory=dict)


class Container(SpecModel):
    name: str = ""
    image: str | None = None
    command: Strings = Field(default_factory=list)
    args: Strings = Field(default_factory=list)
    env: list[EnvVar] = Field(default_factory=list)
    workingDir: str | None = None
    ports: list[ContainerPort] = Field(default_factory=list)
    resources: ResourceRequirements = Field(default_factory=ResourceRequirements)


class PodSpec(SpecModel):
    containers: list[Container] = Field(default_factory=list)
    restartPolicy: str | None = None


class PodTemplateSpec(SpecModel):
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: PodSpec = Field(default_factory=PodSpec)
