"""The secret between a router and its replicas.

Each replica of an InferenceService (a ``ketch serve`` process) listens on a port of
its own on 127.0.0.1, where any local user could call it and skip the access check
its router makes (:mod:`ketch.serving.gate`). So each replica gets a random secret
when it starts (:func:`new_secret`), through its environment (:data:`ENV`, in the
process spec's ``secret_env``: never in its command line, a log, a pod or the
status), and its data plane answers 403 to every request that does not carry it in
the :data:`HEADER` header: only its router, which adds the header as it forwards a
request (and drops one a caller sent), gets through. The model never sees the header.

Replicas serve no gRPC port (they start with ``--grpc-port -1``); a model server
started with a secret and a gRPC port asks for the same secret in each call's
metadata (``PERMISSION_DENIED`` without it).

A model server started without :data:`ENV` (``ketch serve`` run by hand) has no
secret and answers everyone, as before.
"""

from __future__ import annotations

import hmac
import os
import secrets

#: the environment variable a replica's secret comes in (removed once read)
ENV = "KETCH_REPLICA_SECRET"
#: the header (gRPC: the metadata key) the router sends the secret in
HEADER = "ketch-replica-secret"
HEADER_BYTES = HEADER.encode()
#: what a caller without the secret is told
REFUSED = (
    "this is a replica of an InferenceService, which answers only its router: call the "
    "service's URL (status.url), where access is checked"
)


def new_secret() -> str:
    """A fresh secret for one replica."""
    return secrets.token_urlsafe(32)


def from_environment() -> str | None:
    """The secret this process was started with (``None``: none), taken out of the
    environment so that the model's code and the processes it starts do not inherit it."""
    return os.environ.pop(ENV, None) or None


def holds(given: bytes | str | None, expected: bytes) -> bool:
    """Whether ``given`` is the secret ``expected`` (compared in constant time)."""
    if given is None:
        return False
    if isinstance(given, str):
        given = given.encode("latin-1", "replace")
    return hmac.compare_digest(given, expected)
