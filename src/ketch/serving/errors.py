"""Errors of the model server, each with the HTTP status the V1/V2 protocols use."""

from __future__ import annotations

from ketch.core.errors import InvalidSpec, KetchError, NotFound

__all__ = [
    "ExplainerNotAvailable",
    "InferenceError",
    "InvalidInput",
    "InvalidSpec",
    "ModelNotFound",
    "ModelNotReady",
    "NotFound",
    "ServerOverloaded",
]


class InvalidInput(InvalidSpec):
    """The request is malformed or does not fit the model (400)."""


class ModelNotFound(NotFound):
    """No model of that name (or version) is served (404)."""

    def __init__(self, name: str, version: str | None = None) -> None:
        what = f"{name!r} version {version!r}" if version else repr(name)
        super().__init__(f"model {what} is not served here")


class ModelNotReady(KetchError):
    """The model exists but cannot serve: loading, unloaded or failed to load (503)."""

    http_status = 503


class ServerOverloaded(KetchError):
    """The model's queue is full; the client should retry after ``retry_after`` s (503)."""

    http_status = 503

    def __init__(self, message: str, *, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class InferenceError(KetchError):
    """The model raised while predicting (500)."""

    http_status = 500


class ExplainerNotAvailable(KetchError):
    """``:explain`` on a model without an explainer (501)."""

    http_status = 501
