"""The model lifecycle every served model follows, as KServe's ``Model`` defines it.

A custom model subclasses :class:`Model` and overrides any of ``load``,
``preprocess``, ``predict``, ``postprocess`` (each may be ``async``)::

    from ketch.serving import Model

    class Doubler(Model):
        def load(self) -> bool:
            self.ready = True
            return True

        def predict(self, payload, headers=None):
            return {"predictions": [2 * x for x in payload["instances"]]}

``payload`` is the V1 body (a dict) for ``/v1/...:predict`` and an
:class:`~ketch.serving.types.InferRequest` for V2 (REST or gRPC). A V2
``predict`` returns an :class:`~ketch.serving.types.InferResponse`, a list of
:class:`~ketch.serving.types.Tensor`, a dict of name to array, or one array.

Set ``predictor_url`` (``ketch serve --predictor-url``) and the default
``predict`` forwards the (preprocessed) payload to that server: the model is then
a transformer in front of another model.

Built-in runtimes subclass :class:`ArrayModel`: arrays in, arrays out. The
server runs those without the payload round trip and can batch them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ketch.serving.datatypes import datatype_of
from ketch.serving.errors import ExplainerNotAvailable, InvalidInput
from ketch.serving.types import InferRequest, InferResponse, ModelMetadata, Tensor, TensorSpec

Headers = dict[str, str]


class Model:
    """A served model: ``load`` once, then ``preprocess`` → ``predict`` → ``postprocess``."""

    platform: str = "python"

    def __init__(self, name: str, predictor_url: str | None = None) -> None:
        self.name = name
        self.ready = False
        self.predictor_url = predictor_url.rstrip("/") if predictor_url else None
        self.predictor_name: str = name
        self.model_dir: Path | None = None
        self.settings: dict[str, Any] = {}
        self.version: str | None = None
        self._client: Any = None

    # -- lifecycle -----------------------------------------------------------------

    def load(self) -> bool | None:
        """Load weights (from ``self.model_dir``); set ``self.ready``. Default: ready."""
        self.ready = True
        return True

    def unload(self) -> None:
        """Release what ``load`` took. Called when the model is unloaded."""
        self.ready = False

    def metadata(self) -> ModelMetadata:
        """Inputs and outputs for ``GET /v2/models/{name}``; empty when unknown."""
        return ModelMetadata(platform=self.platform)

    # -- inference -------------------------------------------------------------------

    def preprocess(self, payload: Any, headers: Headers | None = None) -> Any:
        return payload

    def predict(self, payload: Any, headers: Headers | None = None) -> Any:
        if self.predictor_url:
            return self._forward(payload, headers)
        raise NotImplementedError(f"model {self.name!r} does not implement predict")

    def postprocess(self, result: Any, headers: Headers | None = None) -> Any:
        return result

    def explain(self, payload: Any, headers: Headers | None = None) -> Any:
        raise ExplainerNotAvailable(f"model {self.name!r} has no explainer")

    # -- transformer -------------------------------------------------------------------

    async def _forward(self, payload: Any, headers: Headers | None) -> Any:
        """Send ``payload`` to the predictor (V1 dict or V2 request) and return its answer."""
        import httpx
        import orjson

        from ketch.serving.protocol import v2

        if self._client is None:
            # the predictor's router checks callers once authentication is on: a
            # transformer Ketch started has its namespace's service-account token,
            # sent to a router on this machine only
            token = os.environ.get("KETCH_TOKEN", "")
            local = str(self.predictor_url).startswith(("http://127.0.0.1:", "http://localhost:"))
            auth = {"authorization": f"Bearer {token}"} if token and local else {}
            self._client = httpx.AsyncClient(timeout=60.0, headers=auth)
        base = f"{self.predictor_url}"
        if isinstance(payload, InferRequest):
            body, extra = v2.encode_request(payload)
            response = await self._client.post(
                f"{base}/v2/models/{self.predictor_name}/infer", content=body, headers=extra
            )
            _raise_for_predictor(response)
            return v2.decode_response(response.content, response.headers)
        response = await self._client.post(
            f"{base}/v1/models/{self.predictor_name}:predict", content=orjson.dumps(payload)
        )
        _raise_for_predictor(response)
        return orjson.loads(response.content)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def _raise_for_predictor(response: Any) -> None:
    from ketch.serving.errors import InferenceError

    if response.status_code < 400:
        return
    try:
        message = response.json().get("error") or response.text
    except ValueError:
        message = response.text
    error_type = InvalidInput if response.status_code == 400 else InferenceError
    raise error_type(f"predictor answered {response.status_code}: {message}")


class ArrayModel(Model):
    """A model over named numpy arrays: the server's fast path, and batchable.

    ``infer_arrays`` gets the inputs by name (a V1 request has the single input
    ``input-0``) and returns the outputs by name. ``method`` picks one of
    ``methods`` (``predict``, ``predict_proba``, ...): a request selects it with
    the ``method`` parameter or by asking for an output of that name; the model
    setting ``method`` changes the default.
    """

    methods: tuple[str, ...] = ("predict",)
    # Rows of a batch must be independent: the server concatenates requests
    # along axis 0 when batching is on.
    batchable: bool = True

    def infer_arrays(self, inputs: dict[str, np.ndarray], method: str) -> dict[str, np.ndarray]:
        raise NotImplementedError

    @property
    def default_method(self) -> str:
        method = self.settings.get("method") or self.methods[0]
        return str(method)

    def resolve_method(
        self, parameters: dict[str, Any] | None, requested: list[str] | None = None
    ) -> str:
        method = parameters.get("method") if parameters else None
        if method is None and requested:
            for name in requested:
                if name in self.methods:
                    method = name
                    break
        if method is None:
            return self.default_method
        if method not in self.methods:
            raise InvalidInput(
                f"model {self.name!r} has no method {method!r}; use one of {', '.join(self.methods)}"
            )
        return str(method)

    def metadata(self) -> ModelMetadata:
        return ModelMetadata(platform=self.platform, inputs=self.input_specs(), outputs=[])

    def input_specs(self) -> list[TensorSpec]:
        return []

    # The generic payload path, for callers that go through predict().
    def predict(self, payload: Any, headers: Headers | None = None) -> Any:
        if isinstance(payload, InferRequest):
            requested = [o.name for o in payload.outputs] if payload.outputs else None
            method = self.resolve_method(payload.parameters, requested)
            outputs = self.infer_arrays({t.name: t.data for t in payload.inputs}, method)
            return InferResponse(
                model_name=self.name,
                id=payload.id,
                outputs=[Tensor(n, a, datatype_of(a)) for n, a in outputs.items()],
            )
        if isinstance(payload, dict):
            method = self.resolve_method(payload.get("parameters"))
            outputs = self.infer_arrays({"input-0": v1_instances(payload)}, method)
            return {"predictions": pick_prediction(outputs, method)}
        raise InvalidInput(f"model {self.name!r} cannot predict on {type(payload).__name__}")


def v1_instances(body: dict[str, Any]) -> np.ndarray:
    """The ``instances`` (or ``inputs``) of a V1 body as an array."""
    instances = body.get("instances")
    if instances is None:
        instances = body.get("inputs")
    if not isinstance(instances, list):
        raise InvalidInput('a V1 request needs "instances" (or "inputs"): a list')
    try:
        array = np.asarray(instances)
    except ValueError as exc:
        raise InvalidInput(f"instances do not form an array: {exc}") from None
    if array.dtype == object:
        raise InvalidInput("instances must be lists of numbers of the same length")
    return array


def pick_prediction(outputs: dict[str, np.ndarray], method: str) -> np.ndarray:
    if method in outputs:
        return outputs[method]
    if not outputs:
        raise InvalidInput("the model returned no outputs")
    return next(iter(outputs.values()))
