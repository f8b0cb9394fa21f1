"""Notebooks with users: Alice's notebook is opened through the proxy by Alice and by
Carol, who views her profile (reads only), never by Bob (another profile's owner) nor
by anyone signed out, over HTTP and websockets alike; Bob cannot use the notebook's port
without its token either. Alice's browser session writes through the proxy as
JupyterLab's own scripts do: with the page's Origin and without Ketch's CSRF token."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from ketch.tenancy.users import Directory
from tests.notebooks.helpers import (
    SUBPROTOCOL,
    example_notebook,
    execute,
    path,
    requires_jupyterlab,
    server_port,
    start_kernel,
    wait_ready,
)
from tests.server.fixtures import SERVER_ENV
from tests.server.helpers import Server
from tests.tenancy.helpers import (
    ALICE,
    BOB,
    CAROL,
    as_user,
    directory_of,
    two_owners_and_a_viewer,
)

pytestmark = [requires_jupyterlab, pytest.mark.timeout(300)]

ALICE_NS, BOB_NS, NAME = "nb-alice", "nb-bob", "lab"
PREFIX = f"/notebook/{ALICE_NS}/{NAME}/"
PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home: Path = tmp_path_factory.mktemp("ketch-notebook-users")
    started = Server(home, extra_env=SERVER_ENV).start()
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="module")
def directory(server: Server) -> Iterator[Directory]:
    yield from directory_of(server)


@pytest.fixture(scope="module")
def tokens(server: Server, directory: Directory) -> dict[str, str]:
    def reads(http: httpx.Client, namespace: str) -> bool:
        return http.get(path(namespace)).status_code == 200

    made = two_owners_and_a_viewer(server, directory, (ALICE_NS, BOB_NS), reads)
    directory.set_password(ALICE, PASSWORD)
    with as_user(server, made[ALICE]) as http:
        assert http.post(path(ALICE_NS), json=example_notebook(NAME, ALICE_NS)).status_code == 201
        wait_ready(http, ALICE_NS, NAME)
    return made


def _socket_status(server: Server, headers: dict[str, str], kernel: str) -> int:
    url = server.url.replace("http://", "ws://") + f"{PREFIX}api/kernels/{kernel}/channels"
    try:
        with connect(url, subprotocols=[SUBPROTOCOL], additional_headers=headers):  # type: ignore[list-item]
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


def test_roles_decide_who_opens_and_changes_the_notebook(
    server: Server, tokens: dict[str, str]
) -> None:
    with as_user(server, tokens[ALICE]) as alice:
        assert alice.get(f"{PREFIX}api/status").status_code == 200
        kernel = start_kernel(alice, PREFIX)
    bearer = {name: {"Authorization": f"Bearer {tokens[name]}"} for name in (ALICE, BOB, CAROL)}
    assert execute(server.url, PREFIX, kernel, "1+1", bearer[ALICE]) == "2"

    with as_user(server, tokens[BOB]) as bob:
        refused = bob.get(f"{PREFIX}api/status")
        assert refused.status_code == 403 and "notebooks/proxy" in refused.json()["message"]
        assert bob.post(f"{PREFIX}api/kernels", json={"name": "python3"}).status_code == 403
        assert bob.get(f"/notebook/{ALICE_NS}/{NAME}").status_code == 403
    with as_user(server, tokens[CAROL]) as carol:  # views Alice's profile
        assert carol.get(f"{PREFIX}api/status").status_code == 200
        assert carol.post(f"{PREFIX}api/kernels", json={"name": "python3"}).status_code == 403
        assert carol.delete(f"{PREFIX}api/kernels/{kernel}").status_code == 403
    with as_user(server, None) as nobody:
        assert nobody.get(f"{PREFIX}api/status").status_code == 401

    assert _socket_status(server, bearer[ALICE], kernel) == 101
    assert _socket_status(server, bearer[BOB], kernel) == 403
    assert _socket_status(server, bearer[CAROL], kernel) == 403  # a kernel runs code
    assert _socket_status(server, {}, kernel) == 401


def test_the_port_needs_the_notebooks_token(server: Server, tokens: dict[str, str]) -> None:
    with as_user(server, tokens[ALICE]) as alice:
        port = server_port(alice, ALICE_NS, NAME)
    direct = f"http://127.0.0.1:{port}{PREFIX}api/status"
    assert httpx.get(direct).status_code == 403
    for token in tokens.values():  # Ketch's tokens are not the notebook's
        assert httpx.get(direct, headers={"Authorization": f"token {token}"}).status_code == 403
        assert httpx.get(direct, headers={"Authorization": f"Bearer {token}"}).status_code == 403


def test_a_browser_session_writes_with_the_pages_origin(
    server: Server, tokens: dict[str, str]
) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as browser:
        signed = browser.post(
            "/auth/login",
            data={"email": ALICE, "password": PASSWORD, "next": PREFIX},
            headers={"Origin": server.url},
        )
        assert signed.status_code == 303, signed.text
        assert browser.get(f"{PREFIX}api/status").status_code == 200
        page = {"Origin": server.url}
        made = browser.post(f"{PREFIX}api/kernels", json={"name": "python3"}, headers=page)
        assert made.status_code == 201, made.text
        kernel = made.json()["id"]
        # a write without the page's Origin needs the session's CSRF token
        assert browser.post(f"{PREFIX}api/kernels", json={"name": "python3"}).status_code == 403
        # JupyterLab's scripts send their JSON as text/plain: taken from the page only
        typed = {"Content-Type": "text/plain;charset=UTF-8"}
        body = '{"type": "file", "ext": ".txt"}'
        plain = browser.post(f"{PREFIX}api/contents", content=body, headers=page | typed)
        assert plain.status_code == 201, plain.text
        unasked = browser.post(f"{PREFIX}api/contents", content=body, headers=typed)
        assert unasked.status_code == 415
        elsewhere = {"Origin": "https://evil.example"} | typed
        assert (
            browser.post(f"{PREFIX}api/contents", content=body, headers=elsewhere).status_code
            == 403
        )
        foreign = {"Origin": "https://evil.example"}
        assert browser.delete(f"{PREFIX}api/kernels/{kernel}", headers=foreign).status_code == 403
        assert browser.delete(f"{PREFIX}api/kernels/{kernel}", headers=page).status_code == 204
        # Ketch's session cookie is not Jupyter's: the server never sees it
        cookies = browser.cookies.jar
        assert any(c.name == "ketch_session" for c in cookies)
