"""The V1 (KServe / TensorFlow Serving style) REST codec."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from ketch.serving.errors import InvalidInput

_DUMPS = orjson.OPT_SERIALIZE_NUMPY


def decode(body: bytes) -> dict[str, Any]:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise InvalidInput('a V1 request must be a JSON object with "instances"')
    return doc


def encode_predictions(predictions: Any) -> bytes:
    if isinstance(predictions, np.ndarray) and not predictions.flags.c_contiguous:
        predictions = np.ascontiguousarray(predictions)
    return orjson.dumps({"predictions": predictions}, option=_DUMPS)


def encode(result: Any) -> bytes:
    """A custom model's V1 answer: a dict as is, anything else as ``predictions``."""
    if isinstance(result, dict):
        return orjson.dumps(result, option=_DUMPS, default=_default)
    return orjson.dumps({"predictions": result}, option=_DUMPS, default=_default)


def _default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return np.ascontiguousarray(value).tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
