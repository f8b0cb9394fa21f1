"""Cache keys with the KFP backend's semantics.

A task's key covers its resolved input parameters, its input artifacts (by
URI), the types of its outputs and its container (image, command, args); a
``cachingOptions.cacheKey`` set on the task replaces the computed key. Entries
live in the store, so the cache survives across runs and processes.

Every key also covers the run's namespace, as KFP looks a cached execution up in
the run's namespace only: a run never reuses the outputs (and artifact paths) of
another profile's task.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def cache_key(
    *,
    component: dict[str, Any],
    executor: dict[str, Any],
    parameters: dict[str, Any],
    artifacts: dict[str, list[dict[str, Any]]],
    namespace: str,
    custom_key: str | None = None,
) -> str:
    if custom_key:  # a namespace is a DNS label: no "/" in it
        return hashlib.sha256(f"custom:{namespace}/{custom_key}".encode()).hexdigest()
    container = executor.get("container", {})
    outputs = component.get("outputDefinitions", {})
    payload = {
        "namespace": namespace,
        "inputParameterValues": parameters,
        "inputArtifacts": {k: [a.get("uri") for a in v] for k, v in sorted(artifacts.items())},
        "outputArtifactsSpec": {
            k: v.get("artifactType", {}) for k, v in outputs.get("artifacts", {}).items()
        },
        "outputParametersSpec": {
            k: v.get("parameterType") for k, v in outputs.get("parameters", {}).items()
        },
        "containerSpec": {
            "image": container.get("image"),
            "cmdArgs": list(container.get("command", [])) + list(container.get("args", [])),
        },
    }
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def enabled(task: dict[str, Any], run_override: bool | None) -> bool:
    """Per-run override wins; otherwise the task's ``cachingOptions.enableCache``."""
    if run_override is not None:
        return run_override
    return bool(task.get("cachingOptions", {}).get("enableCache", False))
