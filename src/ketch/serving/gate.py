"""Who may call an InferenceService's endpoints: the check every router makes before
it forwards a request (KServe's V1 ``/v1/models/<m>:predict``, V2
``/v2/models/<m>/infer``, and every other path of the service's URL).

With authentication on (the store has users), a caller needs credentials (an API
token as ``Authorization: Bearer``, a browser session, a trusted proxy's user-id
header) of someone who may ``get`` the InferenceService, that is ``view`` (or more)
in its namespace: 401 without credentials, 403 without the role. A service
annotated ``serving.ketch.dev/public: "true"`` is open to anyone. With
authentication off, every request is forwarded.

The check runs with :mod:`ketch.core.access`'s Authenticator and Authorizer (the
implementation the composition root bound to the store): serving never imports
tenancy. It keeps the hot path fast by remembering, for at most :data:`TTL` seconds,
whether authentication is on, who a caller's credentials are (keyed by a digest of
the headers the authenticator reads and the caller's address) and whether that
caller may call that service: a revoked token or a removed binding stops working
within a second. What is not remembered is found in a worker thread, off the
router's event loop. The credentials are not forwarded to the model.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass
from typing import Any, TypeAlias

from ketch.core.access import Access, Attributes, Identity, Verb
from ketch.core.errors import Unauthorized

#: the annotation that opens an InferenceService's endpoints to anyone
PUBLIC_ANNOTATION = "serving.ketch.dev/public"
#: seconds a remembered answer is used
TTL = 1.0
#: headers never forwarded to the model once authentication is on
CREDENTIALS = frozenset({b"authorization", b"cookie"})
_MAX_REMEMBERED = 10_000
_GROUP, _RESOURCE = "serving.kserve.io", "inferenceservices"

Headers: TypeAlias = list[tuple[bytes, bytes]]
Answer: TypeAlias = tuple[int, Headers, bytes]


def is_public(annotations: dict[str, str]) -> bool:
    return str(annotations.get(PUBLIC_ANNOTATION, "")).strip().lower() in ("true", "1", "yes")


@dataclass(frozen=True)
class _Refused:
    message: str


class EndpointGate:
    """Decides the requests to the endpoints of every InferenceService of a controller
    (see the module)."""

    def __init__(self, access: Access, *, ttl: float = TTL) -> None:
        self.access = access
        self.ttl = ttl
        self._enabled = False
        self._enabled_until = 0.0
        self._identities: dict[bytes, tuple[float, Identity | _Refused | None]] = {}
        self._decisions: dict[tuple[Identity, str, str], tuple[float, bool]] = {}
        names = getattr(access.authenticator, "credential_headers", None)
        #: what identifies a caller; ``None``: unknown, so who they are is not remembered
        self._keyed_by: tuple[bytes, ...] | None = (
            tuple(sorted(n.encode() for n in names())) if callable(names) else None
        )

    async def enabled(self) -> bool:
        """Whether authentication is on (remembered for :attr:`ttl`)."""
        now = time.monotonic()
        if now < self._enabled_until:
            return self._enabled
        enabled = await asyncio.get_running_loop().run_in_executor(
            None, self.access.authenticator.enabled
        )
        self._enabled, self._enabled_until = enabled, time.monotonic() + self.ttl
        return enabled

    async def refuse(
        self, namespace: str, name: str, headers: Headers, client: str | None
    ) -> Answer | None:
        """The answer to a caller who may not call InferenceService ``namespace/name``
        (401 or 403), or ``None`` when they may."""
        now = time.monotonic()
        key = self._key(headers, client)
        found = self._identities.get(key) if key is not None else None
        if found is not None and found[0] > now:
            identity = found[1]
        else:
            identity = await asyncio.get_running_loop().run_in_executor(
                None, self._authenticate, headers, client
            )
            if key is not None:
                self._remember(self._identities, key, (time.monotonic() + self.ttl, identity))
        if isinstance(identity, _Refused):
            return _unauthorized(identity.message)
        if identity is None or not identity.authenticated:
            return _unauthorized(
                "sign in first: send an API token as `Authorization: Bearer <token>` "
                "(`ketch login`, `ketch tokens create`)"
            )
        decided = self._decisions.get((identity, namespace, name))
        if decided is not None and decided[0] > now:
            allowed = decided[1]
        else:
            attributes = Attributes(Verb.GET, _GROUP, _RESOURCE, namespace, name)
            decision = await asyncio.get_running_loop().run_in_executor(
                None, self.access.authorizer.authorize, identity, attributes
            )
            allowed = decision.allowed
            self._remember(
                self._decisions, (identity, namespace, name), (time.monotonic() + self.ttl, allowed)
            )
        if allowed:
            return None
        message = (
            f'User "{identity.name}" cannot call the InferenceService "{name}" in the '
            f'namespace "{namespace}": it needs view (or more) there, or the annotation '
            f'{PUBLIC_ANNOTATION}: "true" on the service'
        )
        return 403, [], _body(message)

    def _key(self, headers: Headers, client: str | None) -> bytes | None:
        names = self._keyed_by
        if names is None:
            return None
        digest = hashlib.blake2b(digest_size=20)
        digest.update((client or "").encode())
        for wanted in names:
            digest.update(b"\0" + wanted + b"\0")
            for header, value in headers:
                if header == wanted:
                    digest.update(value + b"\1")
        return digest.digest()

    def _authenticate(self, headers: Headers, client: str | None) -> Identity | _Refused | None:
        text = {k.decode("latin-1"): v.decode("latin-1") for k, v in headers}
        try:
            return self.access.authenticator.authenticate(text, client)
        except Unauthorized as exc:
            return _Refused(str(exc))

    @staticmethod
    def _remember(table: dict[Any, Any], key: object, value: object) -> None:
        if len(table) >= _MAX_REMEMBERED:
            table.clear()
        table[key] = value


def strip_credentials(headers: Headers) -> Headers:
    """``headers`` without the caller's credentials (the model never sees them)."""
    return [(k, v) for k, v in headers if k not in CREDENTIALS]


def _body(message: str) -> bytes:
    import json

    return json.dumps({"error": message}).encode()


def _unauthorized(message: str) -> Answer:
    return 401, [(b"www-authenticate", b'Bearer realm="ketch"')], _body(message)
