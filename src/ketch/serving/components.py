"""What one component of an InferenceService runs: its model source (the
predictor's framework and storage URI, or a transformer's Python class), its
scaling, what each of its replicas asks for (:func:`component_resources`, charged
to the namespace's quota), and the hash that tells when a changed spec makes a new
revision.

A transformer cannot run its container image here. Ketch runs a transformer
written as a :class:`ketch.serving.Model` subclass (``preprocess`` /
``postprocess``), named ``FILE.py:Class`` or ``package.module:Class``, given
either in the annotation ``serving.ketch.dev/transformer`` or in the
transformer container's args as ``--ketch-transformer=FILE.py:Class`` (or the
two args ``--ketch-transformer FILE.py:Class``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ketch.core.errors import InvalidSpec
from ketch.core.workloads.pods import ResourceRequirements
from ketch.serving.spec import (
    FRAMEWORKS,
    TRANSFORMER_ANNOTATION,
    TRANSFORMER_ARG,
    WINDOW_ANNOTATION,
    ComponentSpec,
    PredictorSpec,
    TransformerSpec,
)

# fields of a component applied to its running revision in place (no new revision)
SCALING_FIELDS = (
    "canaryTrafficPercent",
    "minReplicas",
    "maxReplicas",
    "scaleTarget",
    "scaleMetric",
    "logger",
    "containerConcurrency",
    "timeout",
)
_FORMAT_ALIASES = {"pytorch": "pytorch", "torchscript": "pytorch", "scikit-learn": "sklearn"}


@dataclass(frozen=True)
class Scaling:
    min_replicas: int
    max_replicas: int
    target: int
    metric: str
    window: float  # seconds of low load before scaling down (and to zero)


@dataclass(frozen=True)
class ModelSource:
    """What one ``ketch serve`` process serves."""

    uri: str
    format: str | None
    protocol: str
    model_class: str | None = None


def predictor_source(predictor: PredictorSpec) -> ModelSource:
    """The predictor's model: format, storage URI and protocol (``InvalidSpec`` if unclear)."""
    frameworks = predictor.frameworks()
    chosen = list(frameworks)
    if predictor.model is not None:
        chosen.append("model")
    if not chosen:
        raise InvalidSpec(
            "the predictor names no model: set one of "
            f"{', '.join(FRAMEWORKS)} or model.modelFormat with a storageUri",
            field="spec.predictor",
        )
    if len(chosen) > 1:
        raise InvalidSpec(
            f"the predictor names several models ({', '.join(chosen)}); keep one",
            field="spec.predictor",
        )
    key = chosen[0]
    if predictor.model is not None:
        name = predictor.model.modelFormat.name.lower()
        fmt = _FORMAT_ALIASES.get(name, name)
        if fmt not in FRAMEWORKS:
            raise InvalidSpec(
                f"model format {predictor.model.modelFormat.name!r} has no local runtime; "
                f"use one of {', '.join(FRAMEWORKS)}",
                field="spec.predictor.model.modelFormat.name",
            )
        uri, protocol = predictor.model.storageUri, predictor.model.protocolVersion
        field = "spec.predictor.model.storageUri"
    else:
        framework = frameworks[key]
        fmt, uri, protocol = key, framework.storageUri, framework.protocolVersion
        field = f"spec.predictor.{key}.storageUri"
    if not uri:
        raise InvalidSpec("a storageUri is required", field=field)
    return ModelSource(uri=uri, format=fmt, protocol=protocol or "v1")


def transformer_source(
    transformer: TransformerSpec | None, annotations: dict[str, str]
) -> ModelSource | None:
    """The transformer's ``FILE.py:Class`` as a servable source, or None without one."""
    target = annotations.get(TRANSFORMER_ANNOTATION)
    if transformer is None and target is None:
        return None
    if target is None and transformer is not None:
        for container in transformer.containers:
            args = [*container.command, *container.args]
            for index, arg in enumerate(args):
                if arg.startswith(TRANSFORMER_ARG + "="):
                    target = arg.split("=", 1)[1]
                elif arg == TRANSFORMER_ARG and index + 1 < len(args):
                    target = args[index + 1]
    if target is None:
        raise InvalidSpec(
            "a transformer's container image cannot run locally; name a Python transformer "
            f"class with the annotation {TRANSFORMER_ANNOTATION}: FILE.py:Class, or the "
            f"container arg {TRANSFORMER_ARG}=FILE.py:Class",
            field="spec.transformer",
        )
    path, _, cls = target.partition(":")
    file = _resolve_module(path)
    return ModelSource(uri=str(file), format="python", protocol="v1", model_class=cls or None)


def _resolve_module(path: str) -> Path:
    if path.startswith("file://"):
        path = path[len("file://") :]
    candidate = Path(path).expanduser()
    if candidate.exists():
        return candidate.resolve()
    if re.fullmatch(r"[A-Za-z_][\w.]*", path):
        try:
            found = importlib.util.find_spec(path)
        except (ImportError, ValueError):
            found = None
        if found is not None and found.origin:
            return Path(found.origin)
    raise InvalidSpec(
        f"transformer {path!r} is neither a file nor an importable module",
        field="spec.transformer",
    )


def scaling(
    component: ComponentSpec, annotations: dict[str, str], *, component_name: str = "predictor"
) -> Scaling:
    low = 1 if component.minReplicas is None else component.minReplicas
    high = component.maxReplicas or 0
    if high == 0:  # KServe: 0 means no limit; locally, a few per core at most
        high = max(low, 1, 4)
    if high < low:
        raise InvalidSpec(
            f"maxReplicas ({high}) is below minReplicas ({low})",
            field=f"spec.{component_name}.maxReplicas",
        )
    metric = component.scaleMetric or "concurrency"
    return Scaling(
        min_replicas=low,
        max_replicas=high,
        target=component.scaleTarget or 100,
        metric=metric,
        window=parse_duration(annotations.get(WINDOW_ANNOTATION, "60s")),
    )


def parse_duration(text: str) -> float:
    match = re.fullmatch(r"\s*([0-9.]+)\s*(ms|s|m|h)?\s*", text)
    if not match:
        raise InvalidSpec(f"{text!r} is not a duration like '30s'", field=WINDOW_ANNOTATION)
    value = float(match.group(1))
    return value * {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}[match.group(2) or "s"]


def revision_hash(component: dict[str, Any]) -> str:
    """A digest of what makes a new revision (scaling and traffic fields excluded)."""
    kept = {k: v for k, v in component.items() if k not in SCALING_FIELDS}
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()[:16]


def component_resources(spec: dict[str, Any]) -> ResourceRequirements:
    """The ``resources`` of a component's model container, as KServe reads them from
    its spec: the predictor's framework (``sklearn``, ...) or ``model`` entry, else
    its first container (a transformer's container); what is not a quantity map is
    left out. Each replica of the component asks for these."""
    found: Any = None
    for key in (*FRAMEWORKS, "model"):
        entry = spec.get(key)
        if isinstance(entry, dict) and isinstance(entry.get("resources"), dict):
            found = entry["resources"]
            break
    if found is None:
        containers = spec.get("containers")
        first = containers[0] if isinstance(containers, list) and containers else None
        if isinstance(first, dict) and isinstance(first.get("resources"), dict):
            found = first["resources"]
    parts: dict[str, dict[str, str | int | float]] = {"requests": {}, "limits": {}}
    for part in parts:
        values = found.get(part) if isinstance(found, dict) else None
        if isinstance(values, dict):
            parts[part] = {
                str(k): v
                for k, v in values.items()
                if isinstance(v, str | int | float) and not isinstance(v, bool)
            }
    return ResourceRequirements(requests=parts["requests"], limits=parts["limits"])
