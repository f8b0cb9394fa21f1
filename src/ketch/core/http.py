"""The one HTTP client of Ketch's API server, used by the CLI and every Python
client (:class:`ApiClient`).

An error body (``{"message": ..., "code": ...}``, or a Kubernetes ``Status``, which
has a ``message`` too) becomes the matching ``KetchError``: 400/405/413/422
``InvalidSpec`` (422 is an invalid object), 404 ``NotFound``, 409 ``Conflict``,
401 ``Unauthorized``, 403 ``Forbidden``, anything else ``ServerError`` with the
HTTP status. When nothing answers at the URL, the client's ``unreachable`` error
(default :class:`NoServer`) says how to start a server.

Every request carries ``Authorization: Bearer TOKEN`` when a token is known for the
server (:func:`ketch.core.credentials.token_for`: ``KETCH_TOKEN``, else the server's
entry in ``~/.ketch/credentials``). An ``https://`` server's certificate is checked
against the usual roots and Ketch's own CA (:func:`ketch.core.tls.trusted_ca`:
``KETCH_CA_FILE``, else ``KETCH_HOME/tls/ca.crt``), so a server started with ``ketch up
--tls-self-signed`` on this machine is trusted as it is.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from ketch.core import config, credentials, tls
from ketch.core.errors import (
    Conflict,
    Forbidden,
    InvalidSpec,
    KetchError,
    NoServer,
    NotFound,
    Unauthorized,
)
from ketch.core.kinds import Kind, KindRegistry, collection_path, object_path

__all__ = ["ApiClient", "NoServer", "ServerError", "collection_path", "object_path"]

#: how many objects one page of a list asks for
PAGE_SIZE = 500


def api_client(url: str, *, timeout: float, field: str = "KETCH_URL") -> httpx.Client:
    """An HTTP client for the API server at ``url``; ``InvalidSpec`` (naming
    ``field``) when it is not an http:// or https:// URL."""
    verify = verification(url)
    try:
        client = httpx.Client(base_url=url, timeout=timeout, verify=verify)
    except httpx.InvalidURL as exc:
        raise InvalidSpec(f"{url!r} is not a valid server URL: {exc}", field=field) from None
    if client.base_url.scheme not in ("http", "https"):
        client.close()
        raise InvalidSpec(f"{url!r} is not an http:// or https:// URL", field=field)
    return client


def verification(url: str) -> ssl.SSLContext | bool:
    """What checks the certificate of the server at ``url``: the usual roots, with
    Ketch's CA (:func:`ketch.core.tls.trusted_ca`) added when there is one."""
    ca = tls.trusted_ca(url)
    if ca is None:
        return True
    context = httpx.create_ssl_context()
    try:
        context.load_verify_locations(cafile=str(ca))
    except (ssl.SSLError, OSError) as exc:
        raise InvalidSpec(
            f"{ca} is not a PEM CA certificate ({exc})", field=tls.CA_FILE_ENV
        ) from None
    return context


def _tls_failure(exc: BaseException) -> ssl.SSLError | None:
    """The TLS error at the root of a transport error, if that is what it was."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return None
        if isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


class ServerError(KetchError):
    exit_code = 1


def message_of(response: httpx.Response) -> str:
    """The one-line message of an error response."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip() or response.reason_phrase
    if isinstance(body, dict):
        for key in ("message", "error", "detail"):
            if isinstance(body.get(key), str) and body[key]:
                return str(body[key])
    return response.text.strip()


def error_for(status: int, message: str) -> KetchError:
    if status in (400, 405, 413, 422):
        return InvalidSpec(message)
    if status == 404:
        return NotFound(message)
    if status == 409:
        return Conflict(message)
    if status == 401:
        return Unauthorized(
            message, hint="sign in with `ketch login`, or set KETCH_TOKEN to an API token"
        )
    if status == 403:
        return Forbidden(message)
    return ServerError(f"{message} (HTTP {status})")


def error_from(response: httpx.Response) -> KetchError:
    """The ``KetchError`` an error ``response`` stands for."""
    return error_for(response.status_code, message_of(response))


class ApiClient:
    """Requests to the Ketch API server at ``url`` (default ``KETCH_URL``).

    ``field`` names where the URL came from in the error a bad URL gets;
    ``unreachable`` is the error type raised when the server cannot be reached;
    ``token`` is the API token to send (default :func:`credentials.token_for` the URL;
    ``""`` sends none).
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        timeout: float = 30.0,
        field: str = "KETCH_URL",
        unreachable: type[KetchError] = NoServer,
        token: str | None = None,
    ) -> None:
        self.url = (url or config.server_url()).rstrip("/")
        self._unreachable = unreachable
        self._http = api_client(self.url, timeout=timeout, field=field)
        base = self._http.base_url
        bad_host = not base.host or any(c in base.host for c in "%[]")  # http://[bad
        if bad_host or (base.port is not None and not 0 < base.port < 65536):
            self._http.close()
            raise InvalidSpec(
                f"{self.url!r} is not a valid server URL (http://HOST:PORT)", field=field
            )
        try:
            if token is None:
                token = credentials.token_for(self.url)
            elif token:
                token = credentials.check_token(token, "token")
        except KetchError:
            self._http.close()
            raise
        if token:
            self._http.headers["Authorization"] = f"Bearer {token}"
        self._kinds: KindRegistry | None = None

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def unreachable(self, exc: Exception | None = None, path: str = "") -> KetchError:
        """The error for a request that got no answer (``exc``, at ``path``)."""
        failure = _tls_failure(exc) if exc is not None else None
        if isinstance(failure, ssl.SSLCertVerificationError):
            return self._unreachable(
                f"the server at {self.url} presented a certificate this machine does not "
                f"trust ({failure.verify_message or failure.reason}); for a server started "
                f"with 'ketch up --tls-self-signed', set {tls.CA_FILE_ENV} to the ca.crt in "
                "its KETCH_HOME/tls"
            )
        if failure is not None:
            return self._unreachable(
                f"TLS with {self.url} failed ({failure.reason or failure}); "
                "is it served over https? use http:// otherwise"
            )
        if exc is None or isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
            return self._unreachable(
                f"no Ketch server at {self.url}; start one with 'ketch up' (or set KETCH_URL)"
            )
        hint = ""
        if isinstance(exc, httpx.RemoteProtocolError) and self.url.startswith("http://"):
            hint = "; if the server serves https (ketch up --tls-...), use an https:// URL"
        detail = str(exc).rstrip(".") or type(exc).__name__
        return self._unreachable(f"the request to {self.url}{path} failed: {detail}{hint}")

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """The answer to ``method path``; an error answer raises its ``KetchError``."""
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise self.unreachable(exc, path) from None
        if response.status_code >= 400:
            raise error_from(response)
        return response

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.request(method, path, **kwargs).json()

    @contextmanager
    def stream(self, path: str, params: dict[str, Any] | None = None) -> Iterator[httpx.Response]:
        """A streaming GET with no read timeout (logs and watches)."""
        try:
            with self._http.stream(
                "GET", path, params=params, timeout=httpx.Timeout(30.0, read=None)
            ) as response:
                if response.status_code >= 400:
                    response.read()
                    raise error_from(response)
                yield response
        except httpx.TransportError as exc:
            raise self.unreachable(exc, path) from None

    def items(self, path: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Every item of the list at ``path``, following its ``continue`` tokens."""
        found: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            query = {**(params or {}), "limit": PAGE_SIZE, **({"continue": token} if token else {})}
            page = self.json("GET", path, params=query)
            found += page.get("items") or []
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return found

    # -- kinds and paths --------------------------------------------------------

    def kinds(self) -> KindRegistry:
        """The kinds the server serves (asked once)."""
        if self._kinds is None:
            registry = KindRegistry()
            for item in self.json("GET", "/apis/ketch.dev/v1/kinds").get("items", []):
                registry.register(Kind.from_json(item))
            self._kinds = registry
        return self._kinds

    def kind(self, name: str) -> Kind:
        return self.kinds().lookup(name)
