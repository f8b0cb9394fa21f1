"""A model server started with a replica's secret (what an InferenceService's router
sends, :mod:`ketch.serving.secret`) answers only requests that carry it: REST with
the ``ketch-replica-secret`` header, gRPC with that metadata, in every worker of
``ketch serve --workers``; the model never sees the header, and the secret is in no
command line or output."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from ketch.serving import Model
from ketch.serving.repository import ServeOptions
from ketch.serving.secret import ENV, HEADER, new_secret
from ketch.serving.server import ModelServer, ServerOptions, ServerThread
from tests.serving.conftest import Iris, ketch_serve

V2_BODY = {
    "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [5.1, 3.5, 1.4, 0.2]}]
}


class HeaderPeek(Model):
    """Answers V1 with the names of the headers it was given."""

    def load(self) -> bool:
        self.ready = True
        return True

    def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        return {"predictions": sorted(k.lower() for k in (headers or {}))}


@contextmanager
def guarded(
    source: Path | None, secret: str, models: list[Model] | None = None
) -> Iterator[ModelServer]:
    options = ServerOptions(
        http_port=0, grpc_port=0, model=ServeOptions(), threads=2, secret=secret
    )
    server = ModelServer(str(source) if source else None, options, models=models)
    with ServerThread(server):
        yield server


def test_rest_needs_the_secret_and_the_model_never_sees_it(iris: Iris) -> None:
    secret = new_secret()
    with guarded(iris.folder, secret, [HeaderPeek("peek")]) as server:
        url = f"{server.url}/v2/models/iris/infer"
        for headers in ({}, {HEADER: "wrong"}, {HEADER: secret + "x"}):
            refused = httpx.post(url, json=V2_BODY, headers=headers)
            assert refused.status_code == 403, refused.text
            assert "status.url" in refused.json()["error"]
        # every path, not only inference
        for path in ("/v2/health/ready", "/v1/models", "/metrics", "/v2/models/iris/ready"):
            assert httpx.get(f"{server.url}{path}").status_code == 403, path
        allowed = httpx.post(url, json=V2_BODY, headers={HEADER: secret})
        assert allowed.status_code == 200, allowed.text
        assert allowed.json()["outputs"][0]["data"] == [0]
        ready = httpx.get(f"{server.url}/v2/models/iris/ready", headers={HEADER: secret})
        assert ready.status_code == 200
        peek = httpx.post(
            f"{server.url}/v1/models/peek:predict",
            json={"instances": [1]},
            headers={HEADER: secret, "x-request-id": "r1"},
        )
        assert peek.status_code == 200, peek.text
        seen = peek.json()["predictions"]
        assert "x-request-id" in seen and HEADER not in seen


def test_grpc_needs_the_secret_in_the_metadata(iris: Iris) -> None:
    secret = new_secret()
    with guarded(iris.folder, secret) as server:
        assert server.grpc_address is not None
        client = grpcclient.InferenceServerClient(server.grpc_address)
        try:
            tensor = grpcclient.InferInput("x", [1, 4], "FP64")
            tensor.set_data_from_numpy(np.array([[5.1, 3.5, 1.4, 0.2]]))
            for headers in (None, {HEADER: "wrong"}):
                with pytest.raises(InferenceServerException) as refused:
                    client.infer("iris", [tensor], headers=headers)
                assert "PERMISSION_DENIED" in str(refused.value.status())
                assert "status.url" in refused.value.message()
            result = client.infer("iris", [tensor], headers={HEADER: secret})
            assert result.as_numpy("predict").tolist() == [0]
            assert client.is_model_ready("iris", headers={HEADER: secret})
        finally:
            client.close()


def test_every_worker_of_ketch_serve_needs_the_secret(
    iris: Iris, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = new_secret()
    monkeypatch.setenv(ENV, secret)
    with ketch_serve(str(iris.folder), "--grpc-port", "-1", "--workers", "2") as served:
        url = f"{served.url}/v2/models/iris/infer"
        # new connections spread over both workers: each one refuses and admits
        for _ in range(8):
            assert httpx.post(url, json=V2_BODY).status_code == 403
            answer = httpx.post(url, json=V2_BODY, headers={HEADER: secret})
            assert answer.status_code == 200, answer.text
        # the workers got the secret in their environment, never on a command line
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                assert secret not in cmdline.read_bytes().decode(errors="replace")
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                continue
    assert secret not in "".join(served.output)


def test_a_server_without_a_secret_answers_everyone(iris: Iris) -> None:
    options = ServerOptions(http_port=0, grpc_port=None, threads=2)
    server = ModelServer(str(iris.folder), options)
    with ServerThread(server):
        assert httpx.post(f"{server.url}/v2/models/iris/infer", json=V2_BODY).status_code == 200
