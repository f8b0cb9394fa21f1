"""``ketch users`` and ``ketch tokens`` as real subprocesses on a store of their own
(SQLite, and PostgreSQL when configured), checked through the store's own
``Directory``: the first user becomes an admin, later changes take an admin's
token, tokens are listed without their secrets, and nothing is ever prompted for
when stdin is not a terminal."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from ketch.core.errors import Unauthorized
from ketch.core.store.db import Database
from ketch.tenancy.users import Directory
from tests.cli.helpers import bad, ok
from tests.server.helpers import base_env, ketch_command
from tests.waiting import wait_for

Run = Callable[..., subprocess.CompletedProcess[str]]
ADMIN, BOB, CARL = "admin@example.com", "bob@example.com", "carl@example.com"
PROMPTS = ("Email:", "Password:", "[y/N]", "Aborted")


@pytest.fixture
def ketch(db_url: str, tmp_path: Path) -> Run:
    """``ketch ARGS`` on the store at ``db_url``, with HOME and KETCH_HOME in
    ``tmp_path``; stdin is /dev/null unless ``stdin`` is given, and ``token`` becomes
    KETCH_TOKEN."""
    home = tmp_path / "home"
    home.mkdir()

    def run(
        *args: str, stdin: str | None = None, token: str | None = None, **env: str
    ) -> subprocess.CompletedProcess[str]:
        environment = base_env(tmp_path / "ketch-home", db_url)
        environment["HOME"] = str(home)
        environment.pop("KETCH_TOKEN", None)
        # a port nothing listens on: no server of the machine answers these commands
        environment["KETCH_URL"] = "http://127.0.0.1:9"
        if token is not None:
            environment["KETCH_TOKEN"] = token
        environment.update(env)
        result = subprocess.run(
            [*ketch_command(), *args],
            input=stdin,
            stdin=subprocess.DEVNULL if stdin is None else None,
            capture_output=True,
            text=True,
            timeout=120,
            env=environment,
            cwd=tmp_path,
        )
        for prompt in PROMPTS:
            assert prompt not in result.stdout + result.stderr, (args, result)
        assert "Traceback" not in result.stderr, result.stderr
        return result

    return run


def token_of(result: subprocess.CompletedProcess[str]) -> str:
    """The token a command printed: its last line of stdout, and the only one."""
    out = ok(result)
    assert out.endswith("\n") and out.count("\n") == 1, out
    token = out.strip()
    assert token.startswith("ketch_") and len(token) > 30
    return token


@pytest.fixture
def directory(database: Database) -> Directory:
    return Directory(database)


def test_the_first_user_is_an_admin_and_later_ones_take_an_admins_token(
    ketch: Run, directory: Directory
) -> None:
    first = ketch("users", "add", "Admin@Example.com")
    admin = token_of(first)
    assert "first user" in first.stderr and "admin" in first.stderr
    assert admin not in first.stderr
    assert directory.user_for_token(admin).email == ADMIN
    assert directory.user_for_token(admin).admin

    # Without a token: refused, saying what to do.
    bad(ketch("users", "add", BOB), 1, "needs one's API token", "KETCH_TOKEN")
    assert directory.get(BOB) is None

    bob = token_of(ketch("users", "add", BOB, token=admin))
    assert directory.user_for_token(bob).email == BOB
    assert not directory.user_for_token(bob).admin

    # A user who is not an admin cannot add users.
    bad(ketch("users", "add", CARL, token=bob), 1, "takes an admin", f"{BOB} is not one")
    # A token that is not one of this store's.
    bad(ketch("users", "add", CARL, token="ketch_nonsense"), 1, "not valid", "KETCH_TOKEN")
    bad(ketch("users", "add", "not-an-email", token=admin), 2, "not an email address")
    bad(ketch("users", "add", BOB.upper(), token=admin), 1, "exists already")

    carl = token_of(ketch("users", "add", CARL, "--admin", token=admin))
    assert directory.user_for_token(carl).admin
    assert [u.email for u in directory.users()] == [ADMIN, BOB, CARL]


def test_two_first_users_added_at_once_make_one_admin(ketch: Run, directory: Directory) -> None:
    # two `ketch users add` processes on a store without users, started together
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda email: ketch("users", "add", email), (ADMIN, BOB)))
    added = [r for r in results if r.returncode == 0]
    refused = [r for r in results if r.returncode != 0]
    assert len(added) == 1 and len(refused) == 1, results
    bad(refused[0], 1, "needs one's API token", "KETCH_TOKEN")
    admin = directory.user_for_token(token_of(added[0]))
    assert admin.admin and [u.email for u in directory.users()] == [admin.email]


def test_users_list_shows_the_users_to_an_admin(ketch: Run, directory: Directory) -> None:
    assert "single-user" in ok(ketch("users", "list")) + ketch("users", "list").stderr
    admin = token_of(ketch("users", "add", ADMIN))
    bob = token_of(
        ketch("users", "add", BOB, "--password-stdin", stdin="a long password\n", token=admin)
    )
    ketch("tokens", "create", "--user", BOB, token=admin)
    table = ok(ketch("users", "list", token=admin))
    header, *rows = table.strip().splitlines()
    assert header.split() == ["EMAIL", "ADMIN", "PASSWORD", "TOKENS", "CREATED"]
    cells = {row.split()[0]: row.split()[1:4] for row in rows}
    assert cells == {ADMIN: ["yes", "no", "1"], BOB: ["no", "yes", "2"]}
    listed = json.loads(ok(ketch("users", "list", "-o", "json", token=admin)))
    assert [(u["email"], u["admin"], u["activeTokens"]) for u in listed] == [
        (ADMIN, True, 1),
        (BOB, False, 2),
    ]
    bad(ketch("users", "list", token=bob), 1, "listing users takes an admin")


def test_tokens_create_list_and_revoke(ketch: Run, directory: Directory) -> None:
    admin = token_of(ketch("users", "add", ADMIN))
    bob = token_of(ketch("users", "add", BOB, token=admin))
    created = ketch("tokens", "create", "--name", "ci", "--expires", "30d", token=bob)
    ci = token_of(created)
    assert "expires" in created.stderr and ci not in created.stderr
    short = token_of(ketch("tokens", "create", "--expires", "1s", token=bob))
    secrets = [admin, bob, ci, short]

    def listing(*args: str) -> list[dict[str, str]]:
        out = ok(ketch("tokens", "list", "-o", "json", *args, token=bob))
        assert not any(secret in out for secret in secrets)
        return list(json.loads(out))

    tokens = wait_for(
        lambda: [t for t in listing() if t["state"] == "expired"] and listing(),
        timeout=30,
        what="the 1s token to expire",
    )
    assert [(t["user"], t["name"], t["state"]) for t in tokens] == [
        (BOB, "first token", "active"),
        (BOB, "ci", "active"),
        (BOB, "", "expired"),
    ]
    assert tokens[1]["expires"] is not None and tokens[0]["expires"] is None
    assert all(ci.startswith(t["prefix"]) for t in tokens[1:2])
    with pytest.raises(Unauthorized, match="expired"):
        directory.user_for_token(short)

    # Bob revokes his ci token: it stops working at once.
    ci_id = tokens[1]["id"]
    assert f"Revoked token {ci_id}" in ok(ketch("tokens", "revoke", str(ci_id), token=bob))
    with pytest.raises(Unauthorized, match="revoked"):
        directory.user_for_token(ci)
    bad(ketch("tokens", "list", token=ci), 1, "revoked")

    table = ok(ketch("tokens", "list", token=bob))
    assert table.splitlines()[0].split() == [
        "ID",
        "PREFIX",
        "NAME",
        "USER",
        "CREATED",
        "EXPIRES",
        "STATE",
    ]
    assert [line.split()[-1] for line in table.strip().splitlines()[1:]] == [
        "active",
        "revoked",
        "expired",
    ]
    assert not any(secret in table for secret in secrets)

    # Other users' tokens are an admin's business.
    admin_id = [t for t in directory.tokens(ADMIN)][0].id
    bad(ketch("tokens", "revoke", str(admin_id), token=bob), 2, f"no token {admin_id}")
    bad(ketch("tokens", "create", "--user", ADMIN, token=bob), 1, "takes an admin")
    bad(ketch("tokens", "list", "--user", ADMIN, token=bob), 1, "takes an admin")
    bad(ketch("tokens", "list", "--all", token=bob), 1, "takes an admin")
    everyone = json.loads(ok(ketch("tokens", "list", "--all", "-o", "json", token=admin)))
    assert {t["user"] for t in everyone} == {ADMIN, BOB}
    for_bob = token_of(ketch("tokens", "create", "--user", BOB, token=admin))
    assert directory.user_for_token(for_bob).email == BOB
    bob_first = tokens[0]["id"]
    ok(ketch("tokens", "revoke", str(bob_first), "--user", BOB, token=admin))
    with pytest.raises(Unauthorized, match="revoked"):
        directory.user_for_token(bob)

    bad(ketch("tokens", "create", "--expires", "soon", token=admin), 2, "--expires")
    bad(ketch("tokens", "create", "--expires", "0d", token=admin), 2, "--expires")


def test_passwords_come_from_stdin(ketch: Run, directory: Directory) -> None:
    admin = token_of(ketch("users", "add", ADMIN, "--password-stdin", stdin="first password\n"))
    assert directory.sign_in(ADMIN, "first password").email == ADMIN
    bob = token_of(ketch("users", "add", BOB, token=admin))
    assert not directory.get(BOB).has_password  # type: ignore[union-attr]

    # Bob sets his own password; only an admin sets another's.
    ok(ketch("users", "passwd", BOB, "--password-stdin", stdin="bob's password\r\n", token=bob))
    assert directory.sign_in(BOB, "bob's password").email == BOB
    bad(
        ketch("users", "passwd", ADMIN, "--password-stdin", stdin="xxxxxxxxxx\n", token=bob),
        1,
        "takes an admin",
    )
    ok(ketch("users", "passwd", BOB, "--password-stdin", stdin="set by admin\n", token=admin))
    assert directory.sign_in(BOB, "set by admin").email == BOB

    # Never a prompt: without --password-stdin, or with nothing on stdin, a clear error.
    bad(ketch("users", "passwd", BOB, token=admin), 2, "--password-stdin", "never prompted")
    bad(ketch("users", "passwd", BOB, "--password-stdin", token=admin), 2, "stdin gave nothing")
    bad(
        ketch("users", "add", CARL, "--password-stdin", stdin="short\n", token=admin),
        2,
        "at least 8",
    )
    assert directory.get(CARL) is None


def test_users_remove(ketch: Run, directory: Directory) -> None:
    admin = token_of(ketch("users", "add", ADMIN))
    bob = token_of(ketch("users", "add", BOB, token=admin))
    bad(ketch("users", "remove", BOB, token=admin), 2, "--yes", "not a terminal")
    bad(ketch("users", "remove", ADMIN, "--yes", token=bob), 1, "takes an admin")
    bad(ketch("users", "remove", ADMIN, "--yes", token=admin), 1, "last admin")
    bad(ketch("users", "remove", CARL, "--yes", token=admin), 2, "no user")
    ok(ketch("users", "remove", BOB, "--yes", token=admin))
    assert directory.get(BOB) is None and directory.tokens(BOB) == []
    with pytest.raises(Unauthorized):
        directory.user_for_token(bob)
    # The last user of all may go: the store is single-user again.
    removed = ketch("users", "remove", ADMIN, "--yes", token=admin)
    assert "single-user" in removed.stderr and ok(removed)
    assert directory.users() == []


def test_stored_credentials_are_private_and_used(
    ketch: Run, directory: Directory, tmp_path: Path
) -> None:
    admin = token_of(ketch("users", "add", ADMIN))
    login = ketch("login", "--token-stdin", stdin=admin + "\n")
    ok(login)
    assert admin not in login.stdout + login.stderr
    assert "not checked" in login.stderr  # no server answers at KETCH_URL
    path = tmp_path / "home" / ".ketch" / "credentials"
    assert (path.stat().st_mode & 0o777) == 0o600
    assert (path.parent.stat().st_mode & 0o777) == 0o700
    stored = json.loads(path.read_text())
    assert stored["current"] == "http://127.0.0.1:9"
    assert stored["servers"] == {"http://127.0.0.1:9": {"token": admin}}

    # Without KETCH_TOKEN the stored token is the caller's.
    bob = token_of(ketch("users", "add", BOB))
    who = ketch("whoami")
    assert ok(who).splitlines()[:2] == [f"user:     {ADMIN}", "admin:    yes"]
    assert "no Ketch server answers" in who.stderr
    # KETCH_TOKEN comes first.
    assert json.loads(ok(ketch("whoami", "-o", "json", token=bob)))["user"] == BOB
    # Written again, the file stays private.
    os.chmod(path, 0o644)
    ok(ketch("login", "http://127.0.0.1:9/", "--token-stdin", stdin=bob + "\n"))
    assert (path.stat().st_mode & 0o777) == 0o600
    assert json.loads(ok(ketch("whoami", "-o", "json")))["user"] == BOB

    logout = ketch("logout")
    assert "removed" in ok(logout) and admin not in logout.stdout + logout.stderr
    assert json.loads(path.read_text()) == {"current": None, "servers": {}}
    nobody = ketch("whoami")
    assert nobody.returncode == 1 and "error: " in nobody.stderr
    assert "needs one's API token" in nobody.stderr.splitlines()[-1]
    bad(ketch("users", "add", CARL), 1, "needs one's API token")
    assert directory.get(CARL) is None


def test_nothing_is_prompted_without_a_terminal(ketch: Run) -> None:
    bad(ketch("login"), 2, "not a terminal", "--token-stdin")
    bad(ketch("login", "--token-stdin"), 2, "stdin gave nothing")
    bad(ketch("login", "--token-stdin", stdin="two words\n"), 2, "one word")
    bad(ketch("login", "ftp://example.com", "--token-stdin", stdin="x\n"), 2, "http://")


def test_a_broken_credentials_file_is_named(ketch: Run, tmp_path: Path) -> None:
    path = tmp_path / "home" / ".ketch" / "credentials"
    path.parent.mkdir()
    path.write_text("{not json")
    ok(ketch("users", "add", ADMIN))  # the first user needs no credentials
    bad(ketch("users", "list"), 1, str(path), "not JSON", "ketch login")
