"""A running ``ketch up`` for the registry's tests (SQLite, or PostgreSQL) and the real
``model-registry`` client against it."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest

from tests.server.fixtures import DATABASES, serve_on
from tests.server.helpers import Server

pytest.importorskip("model_registry", reason="the model-registry client is not installed")


@pytest.fixture(scope="module", params=DATABASES)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    yield from serve_on(request.param, tmp_path_factory.mktemp(f"ketch-registry-{request.param}"))


class LoopRunner:
    """Runs the client's coroutines on one event loop of its own thread, so the client
    does not patch the test process's asyncio (``nest_asyncio2``) and its HTTP session
    keeps one loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def registry_client(server: Server) -> Iterator[Callable[..., Any]]:
    """``make(author=..., token=...)``: the real ``ModelRegistry`` client of this server."""
    from model_registry import ModelRegistry

    runner = LoopRunner()

    def runs(coro: Coroutine[Any, Any, Any]) -> Any:
        return runner.run(coro)

    def make(author: str = "tester", token: str | None = None) -> Any:
        host, port = server.url.rsplit(":", 1)
        return ModelRegistry(
            host, int(port), author=author, is_secure=False, user_token=token, async_runner=runs
        )

    try:
        yield make
    finally:
        runner.close()
