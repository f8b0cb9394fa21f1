"""What every protocol front (V1 REST, V2 REST, gRPC) asks of the served models."""

from __future__ import annotations

from typing import Any

import numpy as np

from ketch.core.config import version
from ketch.core.errors import KetchError
from ketch.serving.datatypes import datatype_of
from ketch.serving.errors import InferenceError, InvalidInput
from ketch.serving.model import ArrayModel, Headers, Model, pick_prediction, v1_instances
from ketch.serving.repository import ModelEntry, ModelRepository, ModelState
from ketch.serving.runner import ModelRunner
from ketch.serving.types import InferRequest, InferResponse, Tensor

SERVER_NAME = "ketch"
EXTENSIONS = ["binary_tensor_data", "model_repository", "metrics", "parameters"]


class DataPlane:
    def __init__(self, repository: ModelRepository) -> None:
        self.repository = repository
        self.metrics = repository.metrics

    # -- server ----------------------------------------------------------------------

    def server_metadata(self) -> dict[str, Any]:
        return {
            "name": SERVER_NAME,
            "version": version(),
            "extensions": EXTENSIONS,
        }

    def ready(self) -> bool:
        return self.repository.ready()

    # -- models ----------------------------------------------------------------------

    def model_ready(self, name: str, version: str | None = None) -> ModelEntry:
        """The entry if ready; :class:`ModelNotReady` (with the load error) if not."""
        entry, _ = self.repository.ready_runner(name, version)
        return entry

    def metadata(self, name: str, version: str | None = None) -> dict[str, Any]:
        entry, runner = self.repository.ready_runner(name, version)
        meta = runner.model.metadata()
        return {
            "name": name,
            "versions": [entry.version] if entry.version else [],
            "platform": meta.platform or runner.model.platform,
            "inputs": [t.as_dict() for t in meta.inputs],
            "outputs": [t.as_dict() for t in meta.outputs],
        }

    def v1_models(self) -> list[str]:
        return [n for n, e in self.repository.entries.items() if e.state is ModelState.READY]

    def v1_status(self, name: str) -> dict[str, Any]:
        entry = self.repository.get(name)
        status: dict[str, Any] = {"name": name, "ready": entry.state is ModelState.READY}
        if entry.state is ModelState.UNAVAILABLE:
            status["error"] = entry.reason
        return status

    # -- inference ---------------------------------------------------------------------

    async def infer(
        self,
        name: str,
        version: str | None,
        request: InferRequest,
        headers: Headers | None = None,
    ) -> InferResponse:
        entry, runner = self.repository.ready_runner(name, version)
        model = runner.model
        runner.admit()
        try:
            if isinstance(model, ArrayModel):
                requested = [o.name for o in request.outputs] if request.outputs else None
                method = model.resolve_method(request.parameters, requested)
                arrays = {t.name: t.data for t in request.inputs}
                outputs = await _guard(model, runner.infer_arrays(arrays, method))
                tensors = [Tensor(n, a, datatype_of(a)) for n, a in outputs.items()]
                return InferResponse(name, tensors, request.id, entry.version)
            result = await _guard(model, self._pipeline(runner, request, headers))
            return _as_response(result, name, entry.version, request.id)
        finally:
            runner.release()

    async def predict_v1(
        self, name: str, body: dict[str, Any], headers: Headers | None = None
    ) -> tuple[Any, bool]:
        """The V1 answer: (predictions, True) for array models, (result, False) otherwise."""
        _, runner = self.repository.ready_runner(name)
        model = runner.model
        runner.admit()
        try:
            if isinstance(model, ArrayModel):
                method = model.resolve_method(body.get("parameters"))
                call = runner.infer_arrays({"input-0": v1_instances(body)}, method)
                outputs = await _guard(model, call)
                return pick_prediction(outputs, method), True
            return await _guard(model, self._pipeline(runner, body, headers)), False
        finally:
            runner.release()

    async def explain_v1(
        self, name: str, body: dict[str, Any], headers: Headers | None = None
    ) -> Any:
        _, runner = self.repository.ready_runner(name)
        runner.admit()
        try:
            model = runner.model
            payload = await runner.call("preprocess", model.preprocess, body, headers)
            return await runner.call("explain", model.explain, payload, headers)
        finally:
            runner.release()

    @staticmethod
    async def _pipeline(runner: ModelRunner, payload: Any, headers: Headers | None) -> Any:
        model = runner.model
        payload = await runner.call("preprocess", model.preprocess, payload, headers)
        result = await runner.call("predict", model.predict, payload, headers)
        return await runner.call("postprocess", model.postprocess, result, headers)


async def _guard(model: Model, call: Any) -> Any:
    """Await ``call``; turn a model's own exceptions into errors with an HTTP status."""
    try:
        return await call
    except KetchError:
        raise
    except (ValueError, TypeError, IndexError, KeyError) as exc:
        if isinstance(model, ArrayModel):
            raise InvalidInput(f"model {model.name!r} cannot predict on this input: {exc}") from exc
        raise InferenceError(f"model {model.name!r} failed: {type(exc).__name__}: {exc}") from exc
    except NotImplementedError as exc:
        raise InferenceError(f"model {model.name!r}: {exc}") from exc
    except Exception as exc:
        raise InferenceError(f"model {model.name!r} failed: {type(exc).__name__}: {exc}") from exc


def _as_response(
    result: Any, name: str, version: str | None, request_id: str | None
) -> InferResponse:
    """A custom model's V2 answer as an :class:`InferResponse`."""
    if isinstance(result, InferResponse):
        if not result.model_name:
            result.model_name = name
        if result.id is None:
            result.id = request_id
        if result.model_version is None:
            result.model_version = version
        return result
    if isinstance(result, dict):
        tensors = [
            v if isinstance(v, Tensor) else Tensor(str(k), np.asarray(v)) for k, v in result.items()
        ]
    elif isinstance(result, list) and all(isinstance(t, Tensor) for t in result):
        tensors = list(result)
    elif isinstance(result, Tensor):
        tensors = [result]
    else:
        tensors = [Tensor("output-0", np.asarray(result))]
    return InferResponse(name, tensors, request_id, version)
