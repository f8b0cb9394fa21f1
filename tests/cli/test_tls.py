"""``ketch up`` over TLS and beyond loopback, as real subprocesses on real ports:
``--tls-self-signed`` (its CA in KETCH_HOME/tls, kept across restarts) and
``--tls-cert/--tls-key``, what trusts it (the CLI with the home's CA or
``KETCH_CA_FILE``, not without), ``ketch login``, ``ketch kubeconfig`` embedding the CA
and the token, and the machine's kubectl using them; the refusal to listen on a
non-loopback address without authentication, and its end once a user exists or
trusted proxies are configured. Every test stops the servers it starts."""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import ssl
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from cryptography import x509

from ketch.core import tls
from tests.cli.helpers import bad, ok
from tests.core.conftest import _postgres_database
from tests.server.helpers import Server, base_env, ketch_command

KUBECTL = shutil.which("kubectl")
needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
EMAIL = "ada@example.com"


def environment(tmp_path: Path, home: Path, **env: str) -> dict[str, str]:
    """``home`` as KETCH_HOME and a HOME of its own (credentials, ~/.kube) in ``tmp_path``."""
    found = base_env(home)
    for name in ("KETCH_TOKEN", tls.CA_FILE_ENV, "KUBECONFIG"):
        found.pop(name, None)
    found["HOME"] = str(tmp_path / "user-home")
    found.update(env)
    return found


def ketch(
    tmp_path: Path, home: Path, *args: str, stdin: str | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ketch_command(), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        env=environment(tmp_path, home, **env),
        cwd=tmp_path,
    )


def ketch_to_a_terminal(tmp_path: Path, home: Path, *args: str, **env: str) -> tuple[int, str, str]:
    """``ketch ARGS`` with its stdout on a pseudo-terminal: the exit code, what the
    terminal showed and stderr."""
    primary, secondary = os.openpty()
    process = subprocess.Popen(
        [*ketch_command(), *args],
        stdin=subprocess.DEVNULL,
        stdout=secondary,
        stderr=subprocess.PIPE,
        env=environment(tmp_path, home, **env),
        cwd=tmp_path,
    )
    os.close(secondary)
    shown = b""
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([primary], [], [], 0.2)
            if not ready:
                if process.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(primary, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            shown += chunk
        code = process.wait(timeout=30)
        assert process.stderr is not None
        errors = process.stderr.read().decode()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(primary)
    return code, shown.decode(errors="replace"), errors


def kubectl(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert KUBECTL is not None
    return subprocess.run(
        [KUBECTL, "--kubeconfig", str(config), *args],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        env={"PATH": "/usr/bin:/bin", "HOME": str(config.parent)},
    )


def trusting(ca: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca))


def add_user(tmp_path: Path, home: Path, email: str = EMAIL) -> str:
    """A new user of the store at ``home`` (its first is an admin); their token."""
    token = ok(ketch(tmp_path, home, "users", "add", email, "--admin")).splitlines()[-1]
    assert token.strip() == token and len(token) > 20
    return token


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[Server]:
    server = Server(tmp_path / "server-home", args=("--tls-self-signed",)).start()
    try:
        yield server
    finally:
        assert server.stop() == 0, server.output()[-4000:]


def test_a_self_signed_server_is_trusted_through_its_ca_only(
    tls_server: Server, tmp_path: Path
) -> None:
    home = tls_server.home
    ca = tls.ca_path(home)
    assert tls_server.url.startswith("https://127.0.0.1:")
    assert f"Ketch's CA {ca}" in tls_server.output()
    assert f"API docs at {tls_server.url}/docs" in tls_server.output()
    folder = home / "tls"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for key in ("ca.key", "server.key"):
        assert stat.S_IMODE((folder / key).stat().st_mode) == 0o600

    with httpx.Client(verify=trusting(ca), timeout=30) as trusted:
        assert trusted.get(f"{tls_server.url}/healthz").status_code == 200
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{tls_server.url}/healthz", timeout=30)
    with pytest.raises(httpx.TransportError):
        httpx.get(tls_server.url.replace("https://", "http://") + "/healthz", timeout=30)

    # the CLI trusts the CA of its KETCH_HOME, or of KETCH_CA_FILE; nothing else
    url = {"KETCH_URL": tls_server.url}
    assert "default" in ok(ketch(tmp_path, home, "get", "namespaces", **url))
    elsewhere = tmp_path / "elsewhere"
    refused = bad(
        ketch(tmp_path, elsewhere, "get", "namespaces", **url),
        1,
        "does not trust",
        "KETCH_CA_FILE",
    )
    assert tls_server.url in refused
    with_ca = ketch(tmp_path, elsewhere, "get", "namespaces", **url, KETCH_CA_FILE=str(ca))
    assert "default" in ok(with_ca)

    # a restart keeps the CA and the server's certificate
    kept = {name: (folder / name).read_bytes() for name in ("ca.crt", "server.crt")}
    assert tls_server.stop() == 0
    tls_server.start()
    assert tls_server.url.startswith("https://")
    assert {name: (folder / name).read_bytes() for name in kept} == kept
    with httpx.Client(verify=trusting(ca), timeout=30) as trusted:
        assert trusted.get(f"{tls_server.url}/healthz").status_code == 200


@needs_kubectl
def test_login_and_kubectl_with_the_kubeconfig_over_tls(tls_server: Server, tmp_path: Path) -> None:
    home = tls_server.home
    ca = tls.ca_path(home)
    url = {"KETCH_URL": tls_server.url}
    token = add_user(tmp_path, home)

    signed_in = ketch(tmp_path, home, "login", tls_server.url, "--token-stdin", stdin=token + "\n")
    assert f"Logged in to {tls_server.url} as {EMAIL}" in signed_in.stderr, signed_in.stderr
    assert token not in signed_in.stdout + signed_in.stderr
    who = json.loads(ok(ketch(tmp_path, home, "whoami", "-o", "json")))
    assert who["user"] == EMAIL and who["server"] == tls_server.url

    config = tmp_path / "kube" / "config"
    written = ketch(tmp_path, home, "kubeconfig", "--output", str(config), **url)
    assert "with your API token" in ok(written)
    assert token not in written.stdout + written.stderr
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    document = yaml.safe_load(config.read_text())
    cluster = document["clusters"][0]["cluster"]
    assert cluster["server"] == tls_server.url
    assert base64.b64decode(cluster["certificate-authority-data"]) == ca.read_bytes()
    assert document["users"][0]["user"] == {"token": token}

    # to a pipe, by choice: the kubeconfig with the token; from another machine's view
    # (no CA in its home, no stored token): --ca-file and --token-stdin
    printed = yaml.safe_load(ok(ketch(tmp_path, home, "kubeconfig", **url)))
    assert printed["users"][0]["user"] == {"token": token}
    # to a terminal: the kubeconfig without it, and a note saying how to keep it
    code, shown, errors = ketch_to_a_terminal(tmp_path, home, "kubeconfig", **url)
    assert code == 0, errors
    assert token not in shown + errors and "token is left out" in errors
    assert yaml.safe_load(shown.replace("\r\n", "\n"))["users"][0]["user"] == {}
    elsewhere = tmp_path / "elsewhere"
    (tmp_path / "other").mkdir()
    given = ketch(
        tmp_path / "other",
        elsewhere,
        "kubeconfig",
        "--ca-file",
        str(ca),
        "--token-stdin",
        stdin=token + "\n",
        **url,
        KETCH_CA_FILE=str(ca),
    )
    other = yaml.safe_load(ok(given))
    assert other["clusters"][0]["cluster"] == cluster
    assert other["users"][0]["user"] == {"token": token}
    foreign = tls.self_signed(["localhost"], tmp_path / "foreign")
    assert foreign.certfile.exists()
    bad(
        ketch(
            tmp_path,
            home,
            "kubeconfig",
            "--ca-file",
            str(tls.ca_path(tmp_path / "foreign")),
            **url,
        ),
        2,
        "--ca-file",
        "not signed by the CA",
    )

    version = kubectl(config, "get", "--raw", "/version")
    assert version.returncode == 0, version.stderr
    assert json.loads(version.stdout)["gitVersion"].startswith("v1.")
    namespaces = kubectl(config, "get", "namespaces", "-o", "name")
    assert namespaces.returncode == 0, namespaces.stderr
    assert "namespace/default" in namespaces.stdout.split()

    # the kubernetes client reads the same kubeconfig: the CA, and the token it sends
    kubernetes = pytest.importorskip("kubernetes", reason="the kubernetes client is not here")
    api = kubernetes.config.new_client_from_config(config_file=str(config))
    try:
        listed = kubernetes.client.CoreV1Api(api).list_namespace()
        assert "default" in [n.metadata.name for n in listed.items]
    finally:
        api.close()

    # without a token, or with a wrong one, the server refuses
    with httpx.Client(verify=trusting(ca), timeout=30) as anonymous:
        assert anonymous.get(f"{tls_server.url}/api/v1/namespaces").status_code == 401
    document["users"][0]["user"] = {"token": "ketch_not_a_token"}
    wrong = tmp_path / "kube" / "wrong"
    wrong.write_text(yaml.safe_dump(document))
    refused = kubectl(wrong, "get", "namespaces", "-o", "name")
    assert refused.returncode != 0, refused.stderr
    assert "You must be logged in to the server" in refused.stderr, refused.stderr


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """The environment naming a new store: SQLite in KETCH_HOME, or a PostgreSQL database."""
    if request.param == "sqlite":
        yield {}
        return
    for url in _postgres_database():
        yield {"KETCH_DATABASE_URL": url}


def test_a_non_loopback_host_needs_authentication(tmp_path: Path, store: dict[str, str]) -> None:
    home = tmp_path / "server-home"
    up = ("up", "--host", "0.0.0.0", "--port", "0", "--home", str(home))
    refused = ketch(tmp_path, home, *up, **store)
    line = bad(refused, 1, "--host 0.0.0.0 is not a loopback address", "has no users")
    assert "`ketch users add EMAIL --admin`" in line and "--trusted-proxy" in line
    assert "listening" not in refused.stdout
    assert not (home / "tls").exists()

    token = ok(ketch(tmp_path, home, "users", "add", EMAIL, "--admin", **store))
    assert token.splitlines()[-1]
    database = store.get("KETCH_DATABASE_URL")
    server = Server(home, database_url=database, args=("--host", "0.0.0.0")).start()
    try:
        assert server.url.startswith("http://0.0.0.0:")
        assert "WARNING: --host 0.0.0.0 serves plain HTTP" in server.output()
        assert "--tls-self-signed" in server.output()
        answer = httpx.get(f"http://127.0.0.1:{server.port}/healthz", timeout=30)
        assert answer.status_code == 200
    finally:
        assert server.stop() == 0, server.output()[-4000:]


def test_trusted_proxies_turn_authentication_on_beyond_loopback(tmp_path: Path) -> None:
    home = tmp_path / "server-home"
    server = Server(
        home,
        args=("--host", "0.0.0.0", "--tls-self-signed", "--tls-name", "ketch.test"),
        extra_env={"KETCH_TRUSTED_PROXIES": "127.0.0.1/32 10.0.0.0/8"},
    ).start()
    try:
        assert server.url.startswith("https://0.0.0.0:")
        assert "plain HTTP" not in server.output() and "error" not in server.output()
        cert = x509.load_pem_x509_certificate((home / "tls" / "server.crt").read_bytes())
        assert {"ketch.test", "localhost", "127.0.0.1"} <= tls.certificate_names(cert)
        with httpx.Client(verify=trusting(tls.ca_path(home)), timeout=30) as http:
            base = f"https://127.0.0.1:{server.port}"
            assert http.get(f"{base}/healthz").status_code == 200
            who = http.get(f"{base}/auth/whoami", headers={"kubeflow-userid": "bo@example.com"})
            assert who.status_code == 200, who.text
            assert who.json()["user"] == "bo@example.com" and who.json()["via"] == "proxy"
    finally:
        assert server.stop() == 0, server.output()[-4000:]


def test_a_given_certificate_and_key_are_served(tmp_path: Path) -> None:
    pair = tls.self_signed(["localhost", "127.0.0.1"], tmp_path / "pki")
    ca = tls.ca_path(tmp_path / "pki")
    home = tmp_path / "server-home"
    server = Server(
        home, args=("--tls-cert", str(pair.certfile), "--tls-key", str(pair.keyfile))
    ).start()
    try:
        assert server.url.startswith("https://127.0.0.1:")
        assert not (home / "tls").exists()
        answer = ketch(
            tmp_path, home, "get", "namespaces", KETCH_URL=server.url, KETCH_CA_FILE=str(ca)
        )
        assert "default" in ok(answer)
    finally:
        assert server.stop() == 0, server.output()[-4000:]


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--tls-cert", "server.crt"], ["--tls-key", "go together"]),
        (["--tls-key", "server.key"], ["--tls-cert", "go together"]),
        (
            ["--tls-self-signed", "--tls-cert", "a.crt", "--tls-key", "a.key"],
            ["--tls-cert", "not both"],
        ),
        (["--tls-name", "ketch.example"], ["--tls-name", "give --tls-self-signed"]),
        (["--tls-self-signed", "--tls-name", "bad name"], ["--tls-name", "'bad name'"]),
        (["--trusted-proxy", "10.0.0.0/8,nonsense"], ["--trusted-proxy", "'nonsense'"]),
        (
            ["--trusted-proxy", "10.0.0.0/8", "--userid-header", "user id"],
            ["--userid-header", "not an HTTP header name"],
        ),
        (["--tls-cert", "missing.crt", "--tls-key", "missing.key"], ["--tls-cert", "not a file"]),
    ],
    ids=lambda value: (
        " ".join(value) if isinstance(value, list) and value[0].startswith("-") else ""
    ),
)
def test_bad_options_are_refused_before_anything_starts(
    tmp_path: Path, args: list[str], fragments: list[str]
) -> None:
    home = tmp_path / "server-home"
    result = ketch(tmp_path, home, "up", "--port", "0", "--home", str(home), *args)
    bad(result, 2, *fragments)
    assert not (home / "tls").exists()


def test_a_key_of_another_certificate_is_refused(tmp_path: Path) -> None:
    one = tls.self_signed(["localhost"], tmp_path / "one")
    two = tls.self_signed(["localhost"], tmp_path / "two")
    home = tmp_path / "server-home"
    result = ketch(
        tmp_path,
        home,
        "up",
        "--port",
        "0",
        "--home",
        str(home),
        "--tls-cert",
        str(one.certfile),
        "--tls-key",
        str(two.keyfile),
    )
    bad(result, 2, "--tls-key", "is not the key of the certificate")
