"""The typed spec of Kubernetes' ``batch/v1`` ``Job``, with Kubernetes' field names,
and its apply-time check.

Only the fields Ketch acts on are typed; everything else in a manifest (selector,
podFailurePolicy, initContainers, volumes, ...) is kept as written.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal, cast

from pydantic import Field

from ketch.core.backend import Request, parse_cpu, parse_memory
from ketch.core.errors import InvalidSpec, KetchError
from ketch.core.spec import SpecModel
from ketch.core.spec import parse as parse_model
from ketch.core.validation import ManifestValidator
from ketch.core.workloads.containers import container_request
from ketch.core.workloads.pods import Container, PodTemplateSpec

KIND = "Job"
DEFAULT_BACKOFF_LIMIT = 6
RESTART_POLICIES = ("Never", "OnFailure")

JobRestartPolicy = Literal["Never", "OnFailure"]


class BatchJobSpec(SpecModel):
    template: PodTemplateSpec
    parallelism: int | None = Field(default=None, ge=0)
    completions: int | None = Field(default=None, ge=0)
    completionMode: Literal["NonIndexed", "Indexed"] | None = None
    backoffLimit: int | None = Field(default=None, ge=0)
    activeDeadlineSeconds: int | None = Field(default=None, gt=0)
    ttlSecondsAfterFinished: int | None = Field(default=None, ge=0)
    suspend: bool = False


@dataclass(frozen=True)
class BatchJob:
    """A parsed Job with Kubernetes' defaults applied."""

    name: str
    namespace: str
    spec: BatchJobSpec
    restart_policy: JobRestartPolicy

    @property
    def containers(self) -> list[Container]:
        return self.spec.template.spec.containers

    @property
    def completions(self) -> int | None:
        """Successful pods wanted; ``None``: a work queue (done once one pod succeeds)."""
        spec = self.spec
        if spec.completions is None and spec.parallelism is None:
            return 1
        return spec.completions

    @property
    def parallelism(self) -> int:
        return 1 if self.spec.parallelism is None else self.spec.parallelism

    @property
    def backoff_limit(self) -> int:
        limit = self.spec.backoffLimit
        return DEFAULT_BACKOFF_LIMIT if limit is None else limit

    @property
    def indexed(self) -> bool:
        return self.spec.completionMode == "Indexed"

    def pod_request(self) -> Request:
        """What one pod asks of the machine: its containers' requests (else limits),
        on the node its template's ``spec.nodeName`` names, if any."""
        total = Request()
        for container in self.containers:
            total = total + container_request(container)
        node = (self.spec.template.spec.model_extra or {}).get("nodeName")
        return dataclasses.replace(total, node=str(node)) if node else total


def parse_batch_job(name: str, namespace: str, spec: dict[str, Any]) -> BatchJob:
    """Validate a Job's ``spec``; ``InvalidSpec`` names the offending field."""
    model = parse_model(BatchJobSpec, spec)
    pod = model.template.spec
    if not pod.containers:
        raise InvalidSpec(
            "a Job's pod template needs at least one container",
            field="spec.template.spec.containers",
        )
    policy = pod.restartPolicy
    if policy not in RESTART_POLICIES:
        got = "is missing" if policy is None else f"is {policy!r}"
        raise InvalidSpec(
            f"restartPolicy {got}; a Job's pods need restartPolicy Never or OnFailure",
            field="spec.template.spec.restartPolicy",
        )
    for index, container in enumerate(pod.containers):
        where = f"spec.template.spec.containers[{index}]"
        if not container.command:
            raise InvalidSpec(
                f"container {container.name or index!r} has no command; a command is required "
                "to run locally (images are not run; the command runs on this machine)",
                field=f"{where}.command",
            )
        for part in ("requests", "limits"):
            values = getattr(container.resources, part)
            for resource, parse in (("cpu", parse_cpu), ("memory", parse_memory)):
                if resource in values:
                    try:
                        parse(values[resource])
                    except KetchError as exc:
                        raise InvalidSpec(
                            exc.message,
                            field=f"{where}.resources.{part}.{resource}",
                            hint=exc.hint,
                        ) from None
    if model.completionMode == "Indexed" and model.completions is None:
        raise InvalidSpec(
            "an Indexed Job needs spec.completions (how many indexes to complete)",
            field="spec.completions",
        )
    return BatchJob(name, namespace, model, cast(JobRestartPolicy, policy))


def validate_manifest(manifest: dict[str, Any]) -> None:
    """Refuse a Job manifest Ketch cannot run (``InvalidSpec`` names the field); a
    template without a name (a Katib trial's) is checked too."""
    metadata = manifest.get("metadata")
    metadata = metadata if isinstance(metadata, dict) else {}
    spec = manifest.get("spec")
    if not isinstance(spec, dict):
        raise InvalidSpec("a Job needs a spec object", field="spec")
    parse_batch_job(
        str(metadata.get("name") or "job"), str(metadata.get("namespace") or "default"), spec
    )


#: the registered check: called with a Resource, or ``validate.validate_manifest(manifest)``
validate = ManifestValidator(KIND, validate_manifest)
