"""The API, called in process by the dashboard's pages as the page's caller.

A page reads and writes only through Ketch's own API: the same routes ``kubectl``,
``kfp.Client`` and the SDKs call, run in this process through the app itself (an
ASGI call, no socket), with the credentials the browser sent the page (its session
cookie and CSRF token, a bearer token, a trusted proxy's user header, from the same
address). So a page sees exactly what its caller may see through the API, with the
same filtering, validation and errors, and no page reads the store on its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx
from fastapi import Request

from ketch.core.errors import KetchError

#: the Table a list asks for (the kind's printer columns, formatted by the server)
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io"
#: the field manager the dashboard's writes are recorded under
AGENT = "ketch-dashboard"
# what a page's request carries that an API call must not (its body, what it accepts,
# htmx's own headers)
_DROPPED = frozenset(
    {
        "content-length",
        "content-type",
        "transfer-encoding",
        "accept",
        "accept-encoding",
        "connection",
        "user-agent",
        "if-none-match",
        "if-modified-since",
    }
)


@dataclass
class Answer:
    """An API call's answer: its status and its body (parsed JSON, or ``None``)."""

    status: int
    body: Any
    text: str = ""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def message(self) -> str:
        """What the API said went wrong (a Status's or KFP's message), else the text."""
        if isinstance(self.body, dict):
            for key in ("message", "error"):
                if isinstance(self.body.get(key), str) and self.body[key]:
                    return str(self.body[key])
        return self.text[:500] or f"HTTP {self.status}"

    @property
    def causes(self) -> list[dict[str, str]]:
        """The fields a Kubernetes Status names (``details.causes``)."""
        if not isinstance(self.body, dict):
            return []
        details = self.body.get("details") or {}
        found = details.get("causes") if isinstance(details, dict) else None
        return [c for c in found or [] if isinstance(c, dict)]

    def raise_for_status(self) -> Any:
        """The body when the call succeeded; else the API's error, as Ketch's error
        type for its status (a page shows it)."""
        if self.ok:
            return self.body
        raise ApiError(self.status, self.message)


class ApiError(KetchError):
    """What the API answered a page's call with when it did not succeed: the page
    answers with the same status and says the API's message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.http_status = status


@dataclass
class Api:
    """The API as ``request``'s caller (see the module's docstring)."""

    request: Request
    _headers: dict[str, str] = field(init=False)
    _client: httpx.AsyncClient | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self._headers = {
            key: value for key, value in self.request.headers.items() if key not in _DROPPED
        }
        self._headers["user-agent"] = f"{AGENT}/1"

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            client = self.request.client
            transport = httpx.ASGITransport(
                app=self.request.app,
                raise_app_exceptions=False,
                client=(client.host, client.port) if client else ("127.0.0.1", 0),
            )
            base = f"{self.request.url.scheme}://{self.request.headers.get('host', '127.0.0.1')}"
            self._client = httpx.AsyncClient(transport=transport, base_url=base, timeout=60)
        return self._client

    async def call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        accept: str = "application/json",
    ) -> Answer:
        headers = {**self._headers, "accept": accept}
        if json is not None:
            headers["content-type"] = "application/json"
        response = await self._http().request(
            method, path, params=params, json=json, headers=headers
        )
        body: Any = None
        if response.content:
            try:
                body = response.json()
            except ValueError:
                body = None
        return Answer(response.status_code, body, response.text if body is None else "")

    async def get(self, path: str, **params: Any) -> Any:
        """The JSON the API answers a GET of ``path`` (its error raised otherwise)."""
        answer = await self.call("GET", path, params={k: v for k, v in params.items() if v})
        return answer.raise_for_status()

    async def text(self, path: str, **params: Any) -> str:
        """The text the API answers a GET of ``path`` (a log), as sent: never parsed
        as JSON (its error raised otherwise)."""
        response = await self._http().request(
            "GET",
            path,
            params={k: v for k, v in params.items() if v not in (None, "")},
            headers={**self._headers, "accept": "text/plain, */*"},
        )
        if response.is_success:
            return response.text
        body: Any = None
        try:
            body = response.json()
        except ValueError:
            body = None
        raise ApiError(
            response.status_code, Answer(response.status_code, body, response.text).message
        )

    async def table(self, path: str, **params: Any) -> dict[str, Any]:
        """The list at ``path`` as a Kubernetes Table (its kind's printer columns)."""
        answer = await self.call(
            "GET", path, params={k: v for k, v in params.items() if v}, accept=TABLE
        )
        found: dict[str, Any] = answer.raise_for_status()
        return found

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def __aenter__(self) -> Api:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()
