"""``ketch login``, ``whoami`` and ``logout`` against a server over real HTTP on
127.0.0.1, and the bearer token every client of a server sends: the CLI, the API
client of the Python SDKs (TrainerClient, TuningClient), and a trial's metrics push.

The server here is a small HTTP server that answers the sign-in contract
(``POST /auth/token`` gives ``{"token"}`` for a right email and password, ``GET
/auth/whoami`` says whose a bearer token is) and records what each request carried.
A last test drives the same login through ``ketch up`` once its server has
``/auth/token``."""

from __future__ import annotations

import fcntl
import json
import os
import select
import subprocess
import termios
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cli.helpers import bad, ok
from tests.server.helpers import Server, base_env, ketch_command

EMAIL, PASSWORD, TOKEN = "ada@example.com", "a long password", "ketch_goodtoken"


class Peer(ThreadingHTTPServer):
    """The recording server: ``requests`` holds (method, path, Authorization, body)."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.requests: list[tuple[str, str, str | None, Any]] = []
        self.url = f"http://127.0.0.1:{self.server_address[1]}"

    def authorizations(self, path: str) -> list[str | None]:
        return [auth for _m, p, auth, _b in self.requests if p.split("?")[0] == path]


class Handler(BaseHTTPRequestHandler):
    server: Peer

    def log_message(self, *_args: Any) -> None:
        pass

    def _answer(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self, method: str) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        auth = self.headers.get("authorization")
        self.server.requests.append((method, self.path, auth, body))
        path = self.path.split("?")[0]
        if path == "/auth/token" and method == "POST":
            if body == {"email": EMAIL, "password": PASSWORD}:
                self._answer(200, {"token": TOKEN})
            else:
                self._answer(401, {"message": "wrong email or password", "code": 16})
        elif path == "/auth/whoami":
            if auth == f"Bearer {TOKEN}":
                self._answer(
                    200, {"user": EMAIL, "admin": False, "groups": ["team-a"], "via": "token"}
                )
            else:
                self._answer(401, {"message": "the token is not valid", "code": 16})
        elif method == "GET":
            self._answer(200, {"items": [], "metadata": {}} if path != "/healthz" else "ok")
        else:
            self._answer(200, {})

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self._handle("GET")

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        self._handle("POST")


@pytest.fixture
def peer() -> Iterator[Peer]:
    server = Peer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def environment(tmp_path: Path, **env: str) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    result = base_env(tmp_path / "ketch-home")
    result["HOME"] = str(home)
    result.pop("KETCH_TOKEN", None)
    result.update(env)
    return result


def ketch(
    tmp_path: Path, *args: str, stdin: str | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [*ketch_command(), *args],
        input=stdin,
        stdin=subprocess.DEVNULL if stdin is None else None,
        capture_output=True,
        text=True,
        timeout=120,
        env=environment(tmp_path, **env),
        cwd=tmp_path,
    )
    assert "Traceback" not in result.stderr, result.stderr
    assert TOKEN not in result.stdout + result.stderr  # a token is never printed
    return result


def credentials_file(tmp_path: Path) -> dict[str, Any]:
    path = tmp_path / "home" / ".ketch" / "credentials"
    assert (path.stat().st_mode & 0o777) == 0o600
    return dict(json.loads(path.read_text()))


def test_login_with_a_token_checks_it_and_makes_the_server_current(
    peer: Peer, tmp_path: Path
) -> None:
    refused = ketch(tmp_path, "login", peer.url, "--token-stdin", stdin="ketch_wrong\n")
    bad(refused, 1, "refused the token", "not valid")
    assert not (tmp_path / "home" / ".ketch" / "credentials").exists()

    login = ketch(tmp_path, "login", peer.url + "/", "--token-stdin", stdin=TOKEN + "\n")
    assert f"Logged in to {peer.url} as {EMAIL}" in login.stderr and ok(login) == ""
    assert credentials_file(tmp_path) == {
        "current": peer.url,
        "servers": {peer.url: {"token": TOKEN}},
    }
    # The current server is where commands go without KETCH_URL, with its token.
    who = ok(ketch(tmp_path, "whoami"))
    assert who.splitlines() == [
        f"user:     {EMAIL}",
        "admin:    no",
        "groups:   team-a",
        "profiles: -",
        "via:      token",
        f"server:   {peer.url}",
    ]
    assert peer.authorizations("/auth/whoami")[-1] == f"Bearer {TOKEN}"
    # KETCH_TOKEN comes before the stored token.
    bad(ketch(tmp_path, "whoami", KETCH_TOKEN="ketch_other"), 1, "not valid", "ketch login")
    assert peer.authorizations("/auth/whoami")[-1] == "Bearer ketch_other"

    ok(ketch(tmp_path, "logout", peer.url))
    assert credentials_file(tmp_path) == {"current": None, "servers": {}}


def test_the_cli_sends_a_servers_token_to_that_server_only(peer: Peer, tmp_path: Path) -> None:
    # A token stored for another server is not sent here.
    ketch(tmp_path, "login", "http://127.0.0.1:9", "--token-stdin", stdin="ketch_elsewhere\n")
    ok(ketch(tmp_path, "kubeconfig", KETCH_URL=peer.url))
    ok(ketch(tmp_path, "runs", "list", KETCH_URL=peer.url))
    assert set(auth for _m, _p, auth, _b in peer.requests) == {None}

    ok(ketch(tmp_path, "login", peer.url, "--token-stdin", stdin=TOKEN + "\n"))
    peer.requests.clear()
    # the current server, now the peer; the kubeconfig (written to a file, so never
    # shown) holds its token
    ok(ketch(tmp_path, "kubeconfig", "--output", str(tmp_path / "kubeconfig")))
    assert f"token: {TOKEN}" in (tmp_path / "kubeconfig").read_text()
    ok(ketch(tmp_path, "runs", "list", KETCH_URL=peer.url + "/"))
    assert peer.requests and {auth for _m, _p, auth, _b in peer.requests} == {f"Bearer {TOKEN}"}
    peer.requests.clear()
    ok(
        ketch(
            tmp_path, "kubeconfig", "-o", str(tmp_path / "kubeconfig"), KETCH_TOKEN="ketch_fromenv"
        )
    )
    assert {auth for _m, _p, auth, _b in peer.requests} == {"Bearer ketch_fromenv"}


def test_the_python_clients_send_the_token(
    peer: Peer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ketch.core.http import ApiClient
    from ketch.trainer.client import TrainerClient
    from ketch.tuning.client import TuningClient
    from ketch.tuning.metrics import report_metrics

    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("KETCH_TOKEN", raising=False)
    monkeypatch.delenv("KETCH_URL", raising=False)
    ok(ketch(tmp_path, "login", peer.url, "--token-stdin", stdin=TOKEN + "\n"))
    peer.requests.clear()

    with ApiClient() as api:  # the current server of ~/.ketch/credentials
        assert api.url == peer.url
        api.request("GET", "/healthz")
    with TrainerClient(peer.url) as trainer:
        assert trainer.list_jobs() == []
    with TuningClient(peer.url) as tuning:
        assert tuning.list_experiments() == []
    monkeypatch.setenv("KATIB_TRIAL_NAME", "trial-1")
    monkeypatch.delenv("KETCH_TRIAL_METRICS_FILE", raising=False)
    push = f"{peer.url}/apis/kubeflow.org/v1beta1/namespaces/default/trials/trial-1/metrics"
    monkeypatch.setenv("KETCH_TUNING_PUSH_URL", push)
    report_metrics({"loss": 0.5}, step=1)

    paths = [p.split("?")[0] for _m, p, _a, _b in peer.requests]
    assert "/healthz" in paths and any("trainjobs" in p for p in paths)
    assert any("experiments" in p for p in paths) and push.removeprefix(peer.url) in paths
    assert {auth for _m, _p, auth, _b in peer.requests} == {f"Bearer {TOKEN}"}

    # No token known: no header. An explicit empty token sends none either.
    peer.requests.clear()
    with ApiClient(peer.url, token="") as api:
        api.request("GET", "/healthz")
    monkeypatch.setenv("HOME", str(tmp_path))
    with ApiClient(peer.url) as api:
        api.request("GET", "/healthz")
    assert [auth for _m, _p, auth, _b in peer.requests] == [None, None]


def run_in_terminal(
    tmp_path: Path, args: list[str], answers: list[tuple[str, str]], **env: str
) -> tuple[int, str]:
    """``ketch ARGS`` with a pseudo-terminal as its controlling terminal and stdio,
    answering each prompt of ``answers`` (text to wait for, line to type); the exit
    code and everything the terminal showed."""
    primary, secondary = os.openpty()

    def take_terminal() -> None:  # in the child, after setsid: the pty becomes its tty
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    process = subprocess.Popen(
        [*ketch_command(), *args],
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
        env=environment(tmp_path, **env),
        cwd=tmp_path,
        start_new_session=True,
        preexec_fn=take_terminal,  # noqa: PLW1509 - only an ioctl, no locks taken
    )
    os.close(secondary)
    shown = b""
    pending = list(answers)
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([primary], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(primary, 4096)
                except OSError:  # the child closed the terminal
                    break
                if not chunk:
                    break
                shown += chunk
            if pending and pending[0][0].encode() in shown:
                os.write(primary, pending.pop(0)[1].encode() + b"\n")
                shown += b"<answered>"
            if process.poll() is not None and not ready:
                break
        code = process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(primary)
    return code, shown.decode(errors="replace")


def test_login_asks_for_a_password_in_a_terminal(peer: Peer, tmp_path: Path) -> None:
    code, shown = run_in_terminal(
        tmp_path, ["login", peer.url], [("Email", EMAIL), ("Password", "a wrong password")]
    )
    assert code == 1 and "wrong email or password" in shown, shown
    code, shown = run_in_terminal(
        tmp_path, ["login", peer.url], [("Email", EMAIL), ("Password", PASSWORD)]
    )
    assert code == 0 and f"Logged in to {peer.url} as {EMAIL}" in shown, shown
    assert PASSWORD not in shown and TOKEN not in shown  # the password is not echoed
    sign_ins = [body for method, path, _a, body in peer.requests if path == "/auth/token"]
    assert sign_ins == [
        {"email": EMAIL, "password": "a wrong password"},
        {"email": EMAIL, "password": PASSWORD},
    ]
    assert credentials_file(tmp_path)["servers"] == {peer.url: {"token": TOKEN}}


def test_login_to_ketch_up_with_a_password(tmp_path: Path) -> None:
    """The same sign-in through ``ketch up``: a user added to its store signs in with
    their password, and whoami answers who they are."""
    server = Server(tmp_path / "server-home").start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            if http.post("/auth/token", json={}).status_code == 404:
                pytest.skip("this ketch up has no sign-in endpoint (/auth/token) yet")
        store = {"KETCH_HOME": str(server.home), "KETCH_URL": server.url}
        added = ketch(
            tmp_path, "users", "add", EMAIL, "--password-stdin", stdin=PASSWORD + "\n", **store
        )
        assert added.returncode == 0, added.stderr
        code, shown = run_in_terminal(
            tmp_path, ["login"], [("Email", EMAIL), ("Password", PASSWORD)], **store
        )
        assert code == 0 and f"as {EMAIL}" in shown, shown
        assert PASSWORD not in shown
        who = ok(ketch(tmp_path, "whoami", "-o", "json", **store))
        assert json.loads(who)["user"] == EMAIL and json.loads(who)["server"] == server.url
    finally:
        server.stop()
