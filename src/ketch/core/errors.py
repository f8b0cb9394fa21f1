"""Error types that carry a message a user can act on.

The CLI maps them to exit codes and the API to HTTP status codes:
``InvalidSpec`` -> exit 2 / 400, ``NotFound`` -> 404, ``Conflict`` -> 409, ``Expired`` -> 410.
``ObjectNotFound`` and ``AlreadyExists`` also say which object they are about.
"""

from __future__ import annotations


class KetchError(Exception):
    """Base class for every error Ketch reports to a user."""

    http_status = 500
    exit_code = 1

    def __init__(self, message: str, *, field: str | None = None, hint: str | None = None):
        self.message = message
        self.field = field
        self.hint = hint
        super().__init__(self.__str__())

    def __str__(self) -> str:
        text = self.message
        if self.field and self.field not in text:
            text = f"{self.field}: {text}"
        if self.hint:
            text = f"{text} ({self.hint})"
        return text


class InvalidSpec(KetchError):
    """The input (a spec, an IR, a parameter) is wrong; the user must fix it."""

    http_status = 400
    exit_code = 2


class NotFound(KetchError):
    http_status = 404
    exit_code = 2


class ObjectError(KetchError):
    """An error about one object: ``kind`` (its kind's name, ``PyTorchJob``),
    ``namespace`` and ``name`` say which, so the API can answer as Kubernetes does."""

    def __init__(
        self,
        message: str,
        *,
        kind: str = "",
        namespace: str = "",
        name: str = "",
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.kind = kind
        self.namespace = namespace
        self.name = name


class ObjectNotFound(ObjectError, NotFound):
    """A named object does not exist (``kind``, ``namespace``, ``name``)."""


class Conflict(KetchError):
    http_status = 409
    exit_code = 1


class AlreadyExists(ObjectError, Conflict):
    """A create named an object that exists already (``kind``, ``namespace``, ``name``)."""


class Expired(KetchError):
    """What was asked for is no longer kept: a watch resumed from a ``resourceVersion``
    older than the change journal holds, a list continued with a token from before
    it. The client lists again (Kubernetes answers 410 with the reason ``Expired``)."""

    http_status = 410
    exit_code = 1
    #: the ``reason`` of the Kubernetes ``Status`` that answers it
    status_reason = "Expired"


class BackendError(KetchError):
    """The compute backend could not start or control a process."""


class NoServer(KetchError):
    """Nothing answers at the API server's URL."""

    exit_code = 1


class Unauthorized(KetchError):
    """The request carries no credentials that hold: sign in, or send a token
    (``Authorization: Bearer``); answered 401."""

    http_status = 401
    exit_code = 1


class Forbidden(KetchError):
    """The caller is known but may not do this; answered 403."""

    http_status = 403
    exit_code = 1
