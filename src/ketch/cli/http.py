"""A small HTTP client for the CLI: talks to the server at ``KETCH_URL``.

Error bodies (``{"message": ..., "code": ...}``) become the matching ``KetchError``,
so a command prints one line and exits with that error's code. When nothing
answers at the URL, :class:`NoServer` says how to start one.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import quote

import typer

from ketch.core import config
from ketch.core.errors import InvalidSpec, KetchError
from ketch.server.kinds import Kind, KindRegistry

if TYPE_CHECKING:
    import httpx


class NoServer(KetchError):
    exit_code = 1


class Client:
    """Requests to the Ketch API server."""

    def __init__(self, url: str | None = None, *, timeout: float = 30.0) -> None:
        # httpx is imported by the commands that talk to a server, not by every start.
        from ketch.core.http import api_client

        self.url = (url or config.server_url()).rstrip("/")
        self._http = api_client(self.url, timeout=timeout)
        base = self._http.base_url
        bad_host = not base.host or any(
            c in base.host for c in "%[]"
        )  # http://[bad parses as %5Bbad
        if bad_host or (base.port is not None and not 0 < base.port < 65536):
            self._http.close()
            raise InvalidSpec(
                f"{self.url!r} is not a valid server URL (http://HOST:PORT)", field="KETCH_URL"
            )
        self._kinds: KindRegistry | None = None

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _no_server(self) -> NoServer:
        return NoServer(
            f"no Ketch server at {self.url}; start one with 'ketch up' (or set KETCH_URL)"
        )

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        import httpx

        from ketch.core.http import ServerError, error_from

        try:
            response = self._http.request(method, path, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout):
            raise self._no_server() from None
        except httpx.TransportError as exc:
            raise ServerError(f"the request to {self.url}{path} failed: {exc}") from None
        if response.status_code >= 400:
            raise error_from(response)
        return response

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.request(method, path, **kwargs).json()

    @contextmanager
    def stream(self, path: str, params: dict[str, Any] | None = None) -> Iterator[httpx.Response]:
        """A streaming GET with no read timeout (logs and watches)."""
        import httpx

        from ketch.core.http import error_from

        try:
            with self._http.stream(
                "GET", path, params=params, timeout=httpx.Timeout(30.0, read=None)
            ) as response:
                if response.status_code >= 400:
                    response.read()
                    raise error_from(response)
                yield response
        except (httpx.ConnectError, httpx.ConnectTimeout):
            raise self._no_server() from None

    # -- kinds and paths --------------------------------------------------------

    def kinds(self) -> KindRegistry:
        if self._kinds is None:
            registry = KindRegistry()
            for item in self.json("GET", "/apis/ketch.dev/v1/kinds").get("items", []):
                registry.register(Kind.from_json(item))
            self._kinds = registry
        return self._kinds

    def kind(self, name: str) -> Kind:
        return self.kinds().lookup(name)


def collection_path(kind: Kind, namespace: str | None, version: str | None = None) -> str:
    base = f"/apis/{kind.group}/{version or kind.version}"
    if namespace is None:
        return f"{base}/{kind.plural}"
    return f"{base}/namespaces/{quote(namespace, safe='')}/{kind.plural}"


def object_path(kind: Kind, namespace: str, name: str, version: str | None = None) -> str:
    return f"{collection_path(kind, namespace, version)}/{quote(name, safe='')}"


def fail(exc: KetchError) -> NoReturn:
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(exc.exit_code)


@contextmanager
def reporting() -> Iterator[None]:
    """Print a ``KetchError`` as ``error: ...`` and exit with its code."""
    try:
        yield
    except KetchError as exc:
        fail(exc)
    except KeyboardInterrupt:
        typer.echo("", err=True)
        raise typer.Exit(130) from None
    except BrokenPipeError:
        sys.stderr.close()
        raise typer.Exit(0) from None
