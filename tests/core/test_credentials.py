"""Which token a client sends where (``ketch.core.credentials``), and the file that
keeps them: private, written whole, and named when it cannot be read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ketch.core import config, credentials
from ketch.core.credentials import Credentials, load, save, token_for
from ketch.core.errors import InvalidSpec, KetchError


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KETCH_TOKEN", raising=False)
    monkeypatch.delenv("KETCH_URL", raising=False)
    return tmp_path


def test_a_token_goes_to_its_server_only() -> None:
    stored = Credentials(
        {"http://h:1": "one", "http://h:1/ketch": "proxied", "https://other.example": "two"}
    )
    assert stored.token("http://h:1") == "one"
    assert stored.token("HTTP://H:1/") == "one"
    assert stored.token("http://h:1/apis/x?watch=1") == "one"
    assert stored.token("http://h:1/ketch/apis/x") == "proxied"
    assert stored.token("http://h:10") is None  # not a prefix of the host and port
    assert stored.token("http://h:1ketch") is None
    assert stored.token("https://other.example/api") == "two"
    assert stored.token("http://other.example") is None  # another scheme is another server


def test_the_environment_comes_first(monkeypatch: pytest.MonkeyPatch) -> None:
    save(Credentials({"http://h:1": "stored"}, "http://h:1"))
    assert token_for("http://h:1") == "stored"
    monkeypatch.setenv("KETCH_TOKEN", " from-env\n")
    assert token_for("http://h:1") == "from-env"
    assert token_for("http://elsewhere:2") == "from-env"
    monkeypatch.setenv("KETCH_TOKEN", "two words")
    with pytest.raises(InvalidSpec, match="KETCH_TOKEN"):
        token_for("http://h:1")


def test_the_current_server_is_the_default_one(monkeypatch: pytest.MonkeyPatch) -> None:
    assert config.server_url() == f"http://127.0.0.1:{config.DEFAULT_PORT}"
    save(Credentials({"https://k.example": "t"}, "https://k.example"))
    assert config.server_url() == "https://k.example"
    monkeypatch.setenv("KETCH_URL", "http://127.0.0.1:5/")
    assert config.server_url() == "http://127.0.0.1:5"


def test_the_file_is_private_and_round_trips(home: Path) -> None:
    path = save(Credentials({"http://h:1/": "t1"}, "http://h:1"))
    assert path == home / ".ketch" / "credentials"
    assert (path.stat().st_mode & 0o777) == 0o600
    assert (path.parent.stat().st_mode & 0o777) == 0o700
    assert json.loads(path.read_text()) == {
        "current": "http://h:1",
        "servers": {"http://h:1": {"token": "t1"}},
    }
    assert load() == Credentials({"http://h:1": "t1"}, "http://h:1")
    assert [p.name for p in path.parent.iterdir()] == ["credentials"]  # no temporary left


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("{", "not JSON"),
        ("[]", "not a JSON object"),
        ('{"servers": {"http://h:1": {}}}', 'no "token"'),
        ('{"servers": [], "current": 3}', '"servers" must map'),
    ],
)
def test_a_broken_file_is_named(home: Path, text: str, why: str) -> None:
    path = credentials.credentials_path()
    path.parent.mkdir()
    path.write_text(text)
    with pytest.raises(KetchError, match=why) as raised:
        token_for("http://h:1")
    assert str(path) in str(raised.value) and "ketch login" in str(raised.value)
