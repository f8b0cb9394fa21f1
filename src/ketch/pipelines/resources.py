"""A container task's requests and limits (CPU, memory, accelerators), as the
compiled pipeline sets them, turned into the backend's :class:`Resources`, and into
its pod's ``resources`` (what its namespace's quota charges it)."""

from __future__ import annotations

from typing import Any

from ketch.core.backend import Resources
from ketch.core.backend.resources import parse_cpu, parse_memory
from ketch.core.errors import InvalidSpec
from ketch.pipelines.placeholders import PlaceholderContext, resolve_string

_RESOURCE_FIELDS = {
    "resourceCpuRequest": ("set_cpu_request", parse_cpu),
    "resourceCpuLimit": ("set_cpu_limit", parse_cpu),
    "resourceMemoryRequest": ("set_memory_request", parse_memory),
    "resourceMemoryLimit": ("set_memory_limit", parse_memory),
}


def task_resources(res: dict[str, Any], pctx: PlaceholderContext | None = None) -> Resources:
    """The container's requests and limits, with pipeline-parameter placeholders
    (``set_cpu_limit(param)`` compiles to ``{{$.inputs.parameters['...']}}``) resolved
    from the task's inputs as the KFP driver resolves them. A value that is not a
    quantity fails the task with a message naming the field and the value."""

    def resolved(key: str, value: Any) -> str:
        text = str(value)
        if pctx is not None and "{{$" in text:
            text = resolve_string(text, pctx)
        if not text.strip():
            raise InvalidSpec(f"{key} {value!r} resolved to an empty value", field="resources")
        return text.strip()

    def s(key: str, alt: str, unit: str = "") -> str | None:
        if res.get(key):
            text = resolved(key, res[key])
            setter, parse = _RESOURCE_FIELDS[key]
            try:
                parse(text)
            except InvalidSpec as exc:
                shown = f" (from {res[key]!r})" if text != str(res[key]) else ""
                raise InvalidSpec(
                    f"{setter}: {text!r}{shown} is not a valid quantity: {exc.message}",
                    field=f"resources.{key}",
                    hint="write e.g. '500m', '2', '1Gi'",
                ) from None
            return text
        if res.get(alt) not in (None, 0, 0.0):
            v = res[alt]
            return f"{v}{unit}"
        return None

    acc = res.get("accelerator", {}) or {}
    acc_type = acc.get("type")
    if acc.get("resourceType"):
        acc_type = resolved("accelerator.resourceType", acc["resourceType"])
    count: Any = acc.get("count") or 0
    if acc.get("resourceCount"):
        count = resolved("accelerator.resourceCount", acc["resourceCount"])
    try:
        number = float(count)
        if not number.is_integer() or number < 0:
            raise ValueError
    except (TypeError, ValueError):
        shown = (
            f" (from {acc['resourceCount']!r})"
            if str(count) != str(acc.get("resourceCount", count))
            else ""
        )
        raise InvalidSpec(
            f"set_accelerator_limit: {count!r}{shown} is not a whole number of accelerators",
            field="resources.accelerator.resourceCount",
        ) from None
    return Resources(
        cpu_request=s("resourceCpuRequest", "cpuRequest"),
        cpu_limit=s("resourceCpuLimit", "cpuLimit"),
        memory_request=s("resourceMemoryRequest", "memoryRequest", "G"),
        memory_limit=s("resourceMemoryLimit", "memoryLimit", "G"),
        accelerator_type=acc_type or None,
        accelerator_count=int(number),
    )


#: the accelerator a task asks for when it names no type
GPU = "nvidia.com/gpu"


def pod_resources(resources: Resources) -> dict[str, dict[str, str]]:
    """The ``resources`` of the pod that runs a task with ``resources``, as KFP's
    driver writes them on its container (``requests``, ``limits``, an accelerator's
    count as a limit of its type); empty parts left out."""
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    for part, key, value in (
        (requests, "cpu", resources.cpu_request),
        (limits, "cpu", resources.cpu_limit),
        (requests, "memory", resources.memory_request),
        (limits, "memory", resources.memory_limit),
    ):
        if value:
            part[key] = str(value)
    if resources.accelerator_count:
        limits[resources.accelerator_type or GPU] = str(resources.accelerator_count)
    return {k: v for k, v in (("requests", requests), ("limits", limits)) if v}
