"""InferenceServices KServe's webhook (or Ketch) would refuse are refused at apply by a
real ``ketch up``: 422 Invalid naming the field, nothing stored. InferenceGraphs are refused
with a message saying they are not supported yet."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.server import fixtures

server = fixtures.server  # a real ``ketch up`` per database, shared by the session
ns = fixtures.ns
client = fixtures.client

URI = "file:///models/iris"
STANDARD = {"serving.kserve.io/deploymentMode": "Standard"}


def _isvc(predictor: dict[str, Any], **extra: Any) -> dict[str, Any]:
    annotations = extra.pop("annotations", {})
    name = extra.pop("name", "isvc")
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": name, "annotations": annotations},
        "spec": {"predictor": predictor, **extra},
    }


def _sklearn(**fields: Any) -> dict[str, Any]:
    return {"sklearn": {"storageUri": URI}, **fields}


def _model(**fields: Any) -> dict[str, Any]:
    return {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": URI, **fields}}


CASES: list[tuple[str, dict[str, Any], str, str]] = [
    ("name starts with a digit", _isvc(_sklearn(), name="1model"), "metadata.name", "regex"),
    ("name with a dot", _isvc(_sklearn(), name="my.model"), "metadata.name", "regex"),
    ("no model", _isvc({"minReplicas": 1}), "spec.predictor", "exactly one of"),
    (
        "two implementations",
        _isvc({**_sklearn(), **_model()}),
        "spec.predictor",
        "sklearn, model",
    ),
    (
        "a custom container",
        _isvc({"containers": [{"name": "kserve-container", "image": "me/model:1"}]}),
        "spec.predictor.containers",
        "cannot run",
    ),
    (
        "a framework without a local runtime",
        _isvc({"tensorflow": {"storageUri": "gs://kfserving-examples/models/tensorflow/flowers"}}),
        "spec.predictor.tensorflow",
        "sklearn",
    ),
    (
        "an unknown model format",
        _isvc({"model": {"modelFormat": {"name": "caffe"}, "storageUri": URI}}),
        "spec.predictor.model.modelFormat.name",
        "sklearn, xgboost, lightgbm, onnx, pytorch",
    ),
    (
        "a model format without a name",
        _isvc({"model": {"modelFormat": {}, "storageUri": URI}}),
        "spec.predictor.model.modelFormat.name",
        "required",
    ),
    (
        "a name in a standard predictor",
        _isvc({"sklearn": {"name": "iris", "storageUri": URI}}),
        "spec.predictor.sklearn.name",
        "not allowed",
    ),
    (
        "an unsupported storageUri scheme",
        _isvc({"sklearn": {"storageUri": "ftp://models/iris"}}),
        "spec.predictor.sklearn.storageUri",
        "s3://",
    ),
    (
        "storageUri and storageUris",
        _isvc({**_sklearn(), "storageUris": [{"uri": URI, "mountPath": "/mnt/models"}]}),
        "spec.predictor.storageUris",
        "both",
    ),
    (
        "a storage spec with a gs:// uri",
        _isvc(
            {
                "model": {
                    "modelFormat": {"name": "sklearn"},
                    "storageUri": "gs://b/m",
                    "storage": {"key": "localMinIO"},
                }
            }
        ),
        "spec.predictor.model.storageUri",
        "s3://",
    ),
    (
        "a storage spec of an unknown type",
        _isvc(
            {
                "model": {
                    "modelFormat": {"name": "sklearn"},
                    "storage": {"key": "x", "parameters": {"type": "gcs"}},
                }
            }
        ),
        "spec.predictor.model.storage.parameters.type",
        "s3, hdfs, webhdfs",
    ),
    ("negative minReplicas", _isvc(_sklearn(minReplicas=-1)), "spec.predictor.minReplicas", "0"),
    ("negative maxReplicas", _isvc(_sklearn(maxReplicas=-1)), "spec.predictor.maxReplicas", "0"),
    (
        "minReplicas above maxReplicas",
        _isvc(_sklearn(minReplicas=3, maxReplicas=2)),
        "spec.predictor.minReplicas",
        "greater than maxReplicas",
    ),
    (
        "an unknown scale metric",
        _isvc(_sklearn(scaleMetric="gpu")),
        "spec.predictor.scaleMetric",
        "concurrency",
    ),
    (
        "cpu scaling on the Knative autoscaler",
        _isvc(_sklearn(scaleMetric="cpu")),
        "spec.predictor.scaleMetric",
        "Standard",
    ),
    (
        "a cpu target above 100%",
        _isvc(_sklearn(scaleMetric="cpu", scaleTarget=150), annotations=STANDARD),
        "spec.predictor.scaleTarget",
        "1 to 100",
    ),
    (
        "rps scaling on the HPA autoscaler",
        _isvc(_sklearn(scaleMetric="rps"), annotations=STANDARD),
        "spec.predictor.scaleMetric",
        "cpu or memory",
    ),
    (
        "a scale metric with keda",
        _isvc(
            _sklearn(scaleMetric="cpu"),
            annotations={**STANDARD, "serving.kserve.io/autoscalerClass": "keda"},
        ),
        "spec.predictor.scaleMetric",
        "keda",
    ),
    (
        "an unknown autoscaler class",
        _isvc(_sklearn(), annotations={"serving.kserve.io/autoscalerClass": "magic"}),
        "metadata.annotations[serving.kserve.io/autoscalerClass]",
        "hpa",
    ),
    (
        "canary traffic above 100",
        _isvc(_sklearn(canaryTrafficPercent=101)),
        "spec.predictor.canaryTrafficPercent",
        "between 0 and 100",
    ),
    (
        "negative containerConcurrency",
        _isvc(_sklearn(containerConcurrency=-1)),
        "spec.predictor.containerConcurrency",
        "less than 0",
    ),
    (
        "an unknown logger mode",
        _isvc(_sklearn(logger={"url": "http://127.0.0.1:9/", "mode": "everything"})),
        "spec.predictor.logger.mode",
        "request",
    ),
    (
        "a transformer without a container",
        _isvc(_sklearn(), transformer={"minReplicas": 1}),
        "spec.transformer.containers",
        "exactly one of",
    ),
    (
        "a transformer with a storage uri",
        _isvc(
            _sklearn(),
            transformer={
                "containers": [{"name": "t", "env": [{"name": "STORAGE_URI", "value": URI}]}]
            },
        ),
        "spec.transformer.containers[0].env",
        "storage uri",
    ),
    (
        "transformer replicas",
        _isvc(
            _sklearn(),
            transformer={"minReplicas": 2, "maxReplicas": 1, "containers": [{"name": "t"}]},
        ),
        "spec.transformer.minReplicas",
        "greater than maxReplicas",
    ),
    (
        "an explainer with two implementations",
        _isvc(
            _sklearn(), explainer={"art": {"type": "SquareAttack"}, "containers": [{"name": "e"}]}
        ),
        "spec.explainer",
        "exactly one of",
    ),
    (
        "an explainer",
        _isvc(_sklearn(), explainer={"art": {"type": "SquareAttack"}}),
        "spec.explainer.art",
        "explainers",
    ),
]


def _path(namespace: str, name: str = "") -> str:
    base = f"/apis/serving.kserve.io/v1beta1/namespaces/{namespace}/inferenceservices"
    return f"{base}/{name}" if name else base


@pytest.mark.parametrize(("what", "manifest", "field", "words"), CASES, ids=[c[0] for c in CASES])
def test_bad_inference_services_are_refused_naming_the_field(
    client: httpx.Client, ns: str, what: str, manifest: dict[str, Any], field: str, words: str
) -> None:
    name = manifest["metadata"]["name"]
    sends: list[Callable[[], httpx.Response]] = [
        lambda: client.put(_path(ns, name), json=manifest),
        lambda: client.post(_path(ns), json=copy.deepcopy(manifest)),
    ]
    for send in sends:
        response = send()
        assert response.status_code == 422, f"{what}: {response.text}"
        message = response.json()["message"]
        assert "Traceback" not in response.text
        assert field in message, message
        assert words in message, message
    assert client.get(_path(ns, name)).status_code == 404


def test_inference_graphs_are_refused_as_not_supported_yet(client: httpx.Client, ns: str) -> None:
    graph = {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "InferenceGraph",
        "metadata": {"name": "pipeline"},
        "spec": {
            "nodes": {
                "root": {
                    "routerType": "Sequence",
                    "steps": [{"serviceName": "a"}, {"serviceName": "b", "data": "$response"}],
                }
            }
        },
    }
    path = f"/apis/serving.kserve.io/v1alpha1/namespaces/{ns}/inferencegraphs/pipeline"
    response = client.put(path, json=graph)
    assert response.status_code == 422, response.text
    assert "InferenceGraph is not supported" in response.json()["message"]
    assert client.get(path).status_code == 404
