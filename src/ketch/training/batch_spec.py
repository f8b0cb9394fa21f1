"""The typed spec of Kubernetes' ``batch/v1`` ``Job``, with Kubernetes' field names.

Only the fields Ketch acts on are typed; everything else in a manifest (selector,
podFailurePolicy, initContainers, volumes, ...) is kept as written.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, cast

from pydantic import Field, ValidationError

from ketch.core.backend import parse_cpu, parse_memory
from ketch.core.errors import InvalidSpec, KetchError
from ketch.training.admission import Request
from ketch.training.spec import Container, PodTemplateSpec, _Model

DEFAULT_BACKOFF_LIMIT = 6
RESTART_POLICIES = ("Never", "OnFailure")

JobRestartPolicy = Literal["Never", "OnFailure"]


class BatchJobSpec(_Model):
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
        """What one pod asks of the machine: its containers' requests (else limits)."""
        total = Request()
        for container in self.containers:
            resources = container.resources
            cpu = resources.requests.get("cpu", resources.limits.get("cpu"))
            memory = resources.requests.get("memory", resources.limits.get("memory"))
            total = total + Request(
                parse_cpu(cpu) if cpu is not None else 0.0,
                float(parse_memory(memory)) if memory is not None else 0.0,
            )
        return total


def parse_batch_job(name: str, namespace: str, spec: dict[str, Any]) -> BatchJob:
    """Validate a Job's ``spec``; ``InvalidSpec`` names the offending field."""
    try:
        model = BatchJobSpec.model_validate(spec)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(["spec", *(str(p) for p in first["loc"])])
        raise InvalidSpec(f"{first['msg']}", field=where) from None
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
