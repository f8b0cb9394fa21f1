"""The capability seam: the server serves exactly the capabilities it is given, every
kind served has a validator, and one kind's validator can reach another's."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from ketch.capabilities import CAPABILITIES, backend
from ketch.core.capability import Admission, Capability, kinds_of
from ketch.core.errors import InvalidSpec
from ketch.core.kinds import Kind
from ketch.core.resource import Resource
from ketch.pipelines.capability import CAPABILITY as PIPELINES
from ketch.server.app import create_app
from ketch.server.core_api import CORE_KINDS
from ketch.serving.capability import CAPABILITY as SERVING
from tests.server.helpers import ThreadServer, assert_error


def test_every_served_kind_has_a_validator() -> None:
    served = {kind.kind for kind in kinds_of(CAPABILITIES)}
    assert served <= Admission(CAPABILITIES).kinds()
    assert {"PyTorchJob", "MXJob", "Job", "TrainJob", "Experiment", "InferenceService"} <= served
    names = [c.name for c in CAPABILITIES]
    assert len(names) == len(set(names))


def test_a_validator_reaches_another_kinds_validator_through_admission() -> None:
    experiment = {
        "apiVersion": "kubeflow.org/v1beta1",
        "kind": "Trial",
        "metadata": {"name": "t", "namespace": "default"},
        "spec": {
            "runSpec": {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "spec": {"template": {"spec": {"containers": []}}},
            }
        },
    }
    with pytest.raises(InvalidSpec) as caught:
        Admission(CAPABILITIES).validate(Resource.from_manifest(experiment))
    assert caught.value.field == "spec.runSpec.spec.template.spec.containers"


def test_two_capabilities_cannot_validate_one_kind() -> None:
    twice = Capability(
        "copy", kinds=(), validators=lambda _a: {"InferenceService": lambda _r: None}
    )
    with pytest.raises(ValueError, match="InferenceService"):
        Admission((SERVING, twice))


def test_the_server_serves_only_the_capabilities_it_is_given(tmp_path: Path) -> None:
    gizmo = Kind("Gizmo", "example.com", ("v1",), "gizmos")
    refused: list[str] = []

    def check(resource: Resource) -> None:
        refused.append(resource.metadata.name)
        if resource.spec.get("size", 0) < 0:
            raise InvalidSpec("must not be negative", field="spec.size")

    toy = Capability("toy", kinds=(gizmo,), validators=lambda _a: {"Gizmo": check})
    app = create_app(
        (toy, PIPELINES),
        backend=backend(),
        database_url=f"sqlite:///{tmp_path / 'k.db'}",
        background=False,
    )
    with ThreadServer(app) as server, httpx.Client(base_url=server.url) as http:
        path = "/apis/example.com/v1/namespaces/default/gizmos"
        made = http.post(
            path,
            json={
                "apiVersion": "example.com/v1",
                "kind": "Gizmo",
                "metadata": {"name": "g"},
                "spec": {"size": 1},
            },
        )
        assert made.status_code == 201, made.text
        bad = {
            "apiVersion": "example.com/v1",
            "kind": "Gizmo",
            "metadata": {"name": "h"},
            "spec": {"size": -1},
        }
        assert_error(http.post(path, json=bad), 422, "spec.size")
        assert refused == ["g", "h"]
        # the kinds of capabilities it was not given are not served
        assert_error(http.get("/apis/kubeflow.org/v1/namespaces/default/pytorchjobs"), 404)
        kinds = {k["kind"] for k in http.get("/apis/ketch.dev/v1/kinds").json()["items"]}
        # ... and the core group (namespaces, events, secrets, configmaps, pods) is the server's
        assert kinds == {"Gizmo", "PipelineRun", "Pod", *(k.kind for k in CORE_KINDS)}
