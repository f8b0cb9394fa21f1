"""Apply-time validation of InferenceServices: KServe's webhook rules, then what
Ketch can run. A manifest either would refuse is refused before it is stored, with
an ``InvalidSpec`` naming the field; InferenceGraphs are refused as not run yet.
"""

from __future__ import annotations

import re
from typing import Any

from ketch.core.errors import InvalidSpec
from ketch.core.resource import DNS_1035_LABEL, Resource
from ketch.serving.components import predictor_source, scaling, transformer_source
from ketch.serving.spec import FRAMEWORKS, TRANSFORMER_ARG, parse

#: every predictor implementation KServe knows, in its order (the custom
#: predictor is ``containers``)
PREDICTOR_IMPLEMENTATIONS = (
    "sklearn",
    "xgboost",
    "tensorflow",
    "pytorch",
    "triton",
    "onnx",
    "huggingface",
    "pmml",
    "lightgbm",
    "paddle",
    "catboost",
    "model",
)
EXPLAINER_IMPLEMENTATIONS = ("art", "alibi")
#: KServe's storageUri schemes (any other URI needs a storage initializer Ketch lacks)
STORAGE_URI_PREFIXES = (
    "gs://",
    "s3://",
    "pvc://",
    "file://",
    "https://",
    "http://",
    "hdfs://",
    "webhdfs://",
    "oci://",
    "hf://",
)
#: what a ``storage`` spec (a storage-config secret entry) can point at
STORAGE_SPEC_PREFIXES = ("s3://", "hdfs://", "webhdfs://")
#: schemes Ketch reads besides KServe's (its model registry)
KETCH_URI_PREFIXES = ("model-registry://",)
DEPLOYMENT_MODE = "serving.kserve.io/deploymentMode"
AUTOSCALER_CLASS = "serving.kserve.io/autoscalerClass"
KNATIVE_CLASS = "autoscaling.knative.dev/class"
AUTOSCALER_CLASSES = ("hpa", "external", "none", "keda")
KPA_METRICS = ("concurrency", "rps")
HPA_METRICS = ("cpu", "memory")
TRANSFORMER_CONTAINER = "transformer-container"
PREDICTOR_CONTAINER = "kserve-container"


def validate(resource: Resource) -> None:
    """Refuse an InferenceService KServe's webhook would refuse, or one Ketch cannot
    run, before it is stored: ``InvalidSpec`` names the field."""
    name = str(resource.metadata.name)
    if not DNS_1035_LABEL.fullmatch(name) or len(name) > 63:
        raise InvalidSpec(
            f"{name!r} is not a valid InferenceService name: use at most 63 lower-case "
            "letters, digits and '-', starting with a letter and ending with a letter or "
            f"digit (regex {DNS_1035_LABEL.pattern})",
            field="metadata.name",
            hint="for example 'my-model' or 'iris-v2'",
        )
    raw = resource.spec
    if not isinstance(raw, dict) or not isinstance(raw.get("predictor"), dict):
        raise InvalidSpec("is required (the model to serve)", field="spec.predictor")
    annotations: dict[str, str] = dict(resource.metadata.annotations or {})
    _check_autoscaler_class(annotations)
    for component in ("predictor", "transformer", "explainer"):
        value = raw.get(component)
        if value is None:
            continue
        if not isinstance(value, dict):
            raise InvalidSpec("must be an object", field=f"spec.{component}")
        _check_extension(component, value, annotations)
    _check_predictor(raw["predictor"])
    if raw.get("transformer") is not None:
        _check_transformer(raw["transformer"])
    if raw.get("explainer") is not None:
        _check_explainer(raw["explainer"])
    spec = parse(raw)
    predictor_source(spec.predictor)
    transformer_source(spec.transformer, annotations)
    scaling(spec.predictor, annotations)
    if spec.transformer is not None:
        scaling(spec.transformer, annotations, component_name="transformer")


def _check_autoscaler_class(annotations: dict[str, str]) -> None:
    value = annotations.get(AUTOSCALER_CLASS)
    if value is not None and value not in AUTOSCALER_CLASSES:
        raise InvalidSpec(
            f"{value!r} is not a supported autoscaler class; use one of "
            f"{', '.join(AUTOSCALER_CLASSES)}",
            field=f"metadata.annotations[{AUTOSCALER_CLASS}]",
        )


def _int_field(component: dict[str, Any], key: str, where: str) -> int | None:
    value = component.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidSpec(f"must be an integer, got {value!r}", field=f"{where}.{key}")
    return value


def _check_extension(name: str, component: dict[str, Any], annotations: dict[str, str]) -> None:
    """KServe's ComponentExtensionSpec rules: replicas, concurrency, traffic, logger,
    and the scale metric and target the autoscaler in use understands."""
    where = f"spec.{name}"
    low = _int_field(component, "minReplicas", where)
    high = _int_field(component, "maxReplicas", where)
    if low is not None and low < 0:
        raise InvalidSpec("minReplicas cannot be less than 0", field=f"{where}.minReplicas")
    if high is not None and high < 0:
        raise InvalidSpec("maxReplicas cannot be less than 0", field=f"{where}.maxReplicas")
    effective_low = 1 if low is None else low
    if high and effective_low > high:
        raise InvalidSpec(
            f"minReplicas ({effective_low}) cannot be greater than maxReplicas ({high})",
            field=f"{where}.minReplicas",
        )
    concurrency = _int_field(component, "containerConcurrency", where)
    if concurrency is not None and concurrency < 0:
        raise InvalidSpec(
            "containerConcurrency cannot be less than 0", field=f"{where}.containerConcurrency"
        )
    canary = _int_field(component, "canaryTrafficPercent", where)
    if canary is not None and not 0 <= canary <= 100:
        raise InvalidSpec(
            f"canaryTrafficPercent must be between 0 and 100, got {canary}",
            field=f"{where}.canaryTrafficPercent",
        )
    timeout = _int_field(component, "timeout", where)
    if timeout is not None and timeout < 1:
        raise InvalidSpec("must be at least 1 (seconds)", field=f"{where}.timeout")
    logger = component.get("logger")
    if logger is not None:
        mode = logger.get("mode", "all") if isinstance(logger, dict) else None
        if mode not in ("all", "request", "response"):
            raise InvalidSpec(
                f"invalid logger mode {mode!r}; use all, request or response",
                field=f"{where}.logger.mode",
            )
    _check_scaling(where, component, annotations)


def _check_scaling(where: str, component: dict[str, Any], annotations: dict[str, str]) -> None:
    metric = component.get("scaleMetric")
    target = _int_field(component, "scaleTarget", where)
    if metric is not None and metric not in (*KPA_METRICS, *HPA_METRICS):
        raise InvalidSpec(
            f"{metric!r} is not a scale metric; use one of "
            f"{', '.join((*KPA_METRICS, *HPA_METRICS))}",
            field=f"{where}.scaleMetric",
        )
    mode = annotations.get(DEPLOYMENT_MODE, "")
    if mode in ("Standard", "RawDeployment"):
        autoscaler = annotations.get(AUTOSCALER_CLASS, "hpa")
        if autoscaler == "keda" and metric is not None:
            raise InvalidSpec(
                "scaleMetric is not supported with the keda autoscaler class",
                field=f"{where}.scaleMetric",
            )
        hpa = autoscaler == "hpa"
    else:
        hpa = annotations.get(KNATIVE_CLASS, "").endswith("hpa.autoscaling.knative.dev")
    if hpa:
        chosen = metric or "cpu"
        if chosen not in HPA_METRICS:
            raise InvalidSpec(
                f"{chosen!r} is not a metric the HPA autoscaler scales on; use cpu or memory",
                field=f"{where}.scaleMetric",
            )
        if target is not None and chosen == "cpu" and not 1 <= target <= 100:
            raise InvalidSpec(
                "the target CPU utilization must be a percentage from 1 to 100",
                field=f"{where}.scaleTarget",
            )
        if target is not None and chosen == "memory" and target < 1:
            raise InvalidSpec(
                "the target memory must be at least 1 (MiB)", field=f"{where}.scaleTarget"
            )
        return
    chosen = metric or "concurrency"
    if chosen not in KPA_METRICS:
        raise InvalidSpec(
            f"{chosen!r} is not a metric the Knative autoscaler scales on; use concurrency or "
            f"rps (cpu and memory need the annotation {DEPLOYMENT_MODE}: Standard)",
            field=f"{where}.scaleMetric",
        )
    if target is not None and target < 1:
        raise InvalidSpec(f"the {chosen} target must be at least 1", field=f"{where}.scaleTarget")


def _check_predictor(predictor: dict[str, Any]) -> None:
    where = "spec.predictor"
    chosen = [key for key in PREDICTOR_IMPLEMENTATIONS if predictor.get(key) is not None]
    containers = predictor.get("containers") or []
    if not isinstance(containers, list):
        raise InvalidSpec("must be a list", field=f"{where}.containers")
    custom = bool(containers) and (
        not chosen
        or any(isinstance(c, dict) and c.get("name") == PREDICTOR_CONTAINER for c in containers)
    )
    if len(chosen) + int(custom) != 1:
        named = [*chosen, *(["containers"] if custom else [])]
        found = f" (found {', '.join(named)})" if named else ""
        raise InvalidSpec(
            "exactly one of ["
            + ", ".join((*PREDICTOR_IMPLEMENTATIONS, "containers"))
            + f"] must be specified in the predictor{found}",
            field=where,
        )
    if custom:
        raise InvalidSpec(
            "a custom predictor's container image cannot run on Ketch; serve the model with "
            f"model.modelFormat (one of {', '.join(FRAMEWORKS)}) and a storageUri",
            field=f"{where}.containers",
        )
    key = chosen[0]
    implementation = predictor[key]
    at = f"{where}.{key}"
    if not isinstance(implementation, dict):
        raise InvalidSpec("must be an object", field=at)
    if implementation.get("name"):
        raise InvalidSpec(
            "the 'name' field is not allowed in a standard predictor", field=f"{at}.name"
        )
    if key != "model" and key not in FRAMEWORKS:
        raise InvalidSpec(
            f"Ketch has no local runtime for the {key} predictor; use one of "
            f"{', '.join(FRAMEWORKS)} (or model.modelFormat.name with one of them)",
            field=at,
        )
    if key == "model":
        model_format = implementation.get("modelFormat")
        if not isinstance(model_format, dict) or not model_format.get("name"):
            raise InvalidSpec(
                f"is required; use one of {', '.join(FRAMEWORKS)}",
                field=f"{at}.modelFormat.name",
            )
    _check_storage(implementation, predictor, at, where)
    for container in containers:  # collocated transformer: it must not load the model
        if isinstance(container, dict) and container.get("name") == TRANSFORMER_CONTAINER:
            for env in container.get("env") or []:
                if isinstance(env, dict) and env.get("name") == "STORAGE_URI":
                    raise InvalidSpec(
                        "a storage uri must not be given in the transformer container",
                        field=f"{where}.containers",
                    )


def _check_storage(
    implementation: dict[str, Any], component: dict[str, Any], at: str, where: str
) -> None:
    uri = implementation.get("storageUri")
    if uri is not None and not isinstance(uri, str):
        raise InvalidSpec("must be a string", field=f"{at}.storageUri")
    if uri is not None and component.get("storageUris") is not None:
        raise InvalidSpec(
            "setting both storageUri and storageUris is not supported",
            field=f"{where}.storageUris",
        )
    if uri:
        _check_storage_uri(uri, f"{at}.storageUri")
    storage = implementation.get("storage")
    if storage is None:
        return
    if not isinstance(storage, dict):
        raise InvalidSpec("must be an object", field=f"{at}.storage")
    supported = ", ".join(STORAGE_SPEC_PREFIXES)
    if uri and not uri.startswith(STORAGE_SPEC_PREFIXES):
        raise InvalidSpec(
            f"with a storage spec, storageUri must start with one of {supported}; {uri!r} does not",
            field=f"{at}.storageUri",
        )
    kind = (storage.get("parameters") or {}).get("type")
    if kind is not None and f"{kind}://" not in STORAGE_SPEC_PREFIXES:
        raise InvalidSpec(
            f"storage type {kind!r} is not supported; use one of s3, hdfs, webhdfs",
            field=f"{at}.storage.parameters.type",
        )


def _check_storage_uri(uri: str, field: str) -> None:
    if "://" not in uri:
        return  # a local path, absolute or relative
    if uri.startswith(STORAGE_URI_PREFIXES + KETCH_URI_PREFIXES):
        return
    if re.match(r"^https://(.+?)\.blob\.core\.windows\.net/(.+)", uri):
        return
    raise InvalidSpec(
        f"storageUri {uri!r} is not supported: it must start with one of "
        f"{', '.join(STORAGE_URI_PREFIXES + KETCH_URI_PREFIXES)}, match "
        "https://{account}.blob.core.windows.net/{container}/{path}, or be a local path",
        field=field,
    )


def _check_transformer(transformer: dict[str, Any]) -> None:
    containers = transformer.get("containers")
    if not isinstance(containers, list) or not containers:
        raise InvalidSpec(
            "exactly one of [containers] must be specified in the transformer "
            f"(Ketch runs it from the container arg {TRANSFORMER_ARG}=FILE.py:Class)",
            field="spec.transformer.containers",
        )
    for index, container in enumerate(containers):
        if not isinstance(container, dict):
            raise InvalidSpec("must be an object", field=f"spec.transformer.containers[{index}]")
        for env in container.get("env") or []:
            if isinstance(env, dict) and env.get("name") == "STORAGE_URI":
                raise InvalidSpec(
                    "a storage uri must not be given in the transformer container",
                    field=f"spec.transformer.containers[{index}].env",
                )


def _check_explainer(explainer: dict[str, Any]) -> None:
    chosen = [key for key in EXPLAINER_IMPLEMENTATIONS if explainer.get(key) is not None]
    if explainer.get("containers"):
        chosen.append("containers")
    if len(chosen) != 1:
        raise InvalidSpec(
            "exactly one of ["
            + ", ".join((*EXPLAINER_IMPLEMENTATIONS, "containers"))
            + "] must be specified in the explainer",
            field="spec.explainer",
        )
    raise InvalidSpec(
        "Ketch does not run explainers yet; remove spec.explainer (the predictor and "
        "transformer run as usual)",
        field=f"spec.explainer.{chosen[0]}",
    )


def validate_inference_graph(resource: Resource) -> None:
    """Ketch does not run InferenceGraphs yet: refuse them with a message that says so."""
    raise InvalidSpec(
        "InferenceGraph is not supported by Ketch yet: nothing would run it. Serve each "
        "model as an InferenceService and chain them from your client (or a transformer)",
        field="kind",
    )
