"""A real ``ketch up`` for the trainer tests, with its own KETCH_HOME."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.server.fixtures import serve
from tests.server.helpers import Server

#: a short crash-loop back-off, so restarted nodes do not wait Kubernetes' 10 s and more
SHORT_BACKOFF = {"KETCH_RESTART_BACKOFF_BASE": "0.2", "KETCH_RESTART_BACKOFF_CAP": "1"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from serve(
        Server(tmp_path_factory.mktemp("ketch-trainer"), extra_env=dict(SHORT_BACKOFF))
    )


@pytest.fixture
def client(server: Server) -> Iterator[httpx.Client]:
    with server.client() as http:
        yield http
