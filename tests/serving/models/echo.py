"""A custom model that answers with its inputs: every datatype makes a round trip."""

from __future__ import annotations

from typing import Any

from ketch.serving import InferRequest, InferResponse, Model, Tensor


class Echo(Model):
    def load(self) -> bool:
        self.ready = True
        return True

    def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        if isinstance(payload, InferRequest):
            parameters = {k: v for k, v in payload.parameters.items() if not k.startswith("binary")}
            outputs = [Tensor(t.name, t.data, t.datatype) for t in payload.inputs]
            return InferResponse(self.name, outputs, parameters=parameters or None)
        return {"predictions": payload["instances"], "saw_headers": headers is not None}
