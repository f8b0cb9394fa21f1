"""What Ketch's Python clients share about the API server's answers.

An error body (``{"message": ..., "code": ...}``) becomes the matching
``KetchError``: 400/405/413 ``InvalidSpec``, 404 ``NotFound``, 409 ``Conflict``,
anything else ``ServerError`` with the HTTP status.
"""

from __future__ import annotations

import httpx

from ketch.core.errors import Conflict, InvalidSpec, KetchError, NotFound


def api_client(url: str, *, timeout: float, field: str = "KETCH_URL") -> httpx.Client:
    """An HTTP client for the API server at ``url``; ``InvalidSpec`` (naming
    ``field``) when it is not an http:// or https:// URL."""
    try:
        client = httpx.Client(base_url=url, timeout=timeout)
    except httpx.InvalidURL as exc:
        raise InvalidSpec(f"{url!r} is not a valid server URL: {exc}", field=field) from None
    if client.base_url.scheme not in ("http", "https"):
        client.close()
        raise InvalidSpec(f"{url!r} is not an http:// or https:// URL", field=field)
    return client


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
    if status in (400, 405, 413):
        return InvalidSpec(message)
    if status == 404:
        return NotFound(message)
    if status == 409:
        return Conflict(message)
    return ServerError(f"{message} (HTTP {status})")


def error_from(response: httpx.Response) -> KetchError:
    """The ``KetchError`` an error ``response`` stands for."""
    return error_for(response.status_code, message_of(response))
