"""The users store (``ketch.tenancy.users.Directory``) on a real SQLite and
PostgreSQL database: passwords and their rate limit, tokens that expire or are
revoked, and what removing a user takes with it."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from ketch.core.errors import AlreadyExists, InvalidSpec, NotFound, Unauthorized
from ketch.core.store.db import Database
from ketch.tenancy.tables import MIGRATIONS, SessionRow, TokenRow
from ketch.tenancy.users import MAX_FAILURES, Directory, User, parse_duration

PASSWORD = "correct horse battery"


@pytest.fixture
def directory(database: Database) -> Directory:
    database.migrate([MIGRATIONS])
    return Directory(database)


def test_a_token_made_by_a_fresh_directory_resolves_to_its_user(directory: Directory) -> None:
    # The first token of a store also makes the store's HMAC key.
    user = directory.add("Ada@Example.com", admin=True)
    token, secret = directory.create_token("ada@example.com", name="ci")
    assert user.email == "ada@example.com" and user.admin and not user.has_password
    assert secret.startswith("ketch_") and secret.startswith(token.prefix)
    assert secret not in repr(token)
    assert (token.email, token.name, token.state) == ("ada@example.com", "ci", "active")
    # Another Directory over the same store (another process) reads the same key.
    other = Directory(Database(directory.database.url))
    try:
        assert other.user_for_token(secret) == user
    finally:
        other.database.dispose()
    with pytest.raises(Unauthorized, match="not valid"):
        directory.user_for_token(secret + "x")


def test_bad_emails_and_duplicates_are_refused(directory: Directory) -> None:
    directory.add("ada@example.com")
    with pytest.raises(AlreadyExists, match="exists already"):
        directory.add("ADA@example.com")
    for bad in ("ada", "ada@", "@example.com", "a da@example.com", "a@b@c"):
        with pytest.raises(InvalidSpec, match="not an email address"):
            directory.add(bad)
    with pytest.raises(InvalidSpec, match="at least 8"):
        directory.add("bob@example.com", password="short")
    assert [u.email for u in directory.users()] == ["ada@example.com"]


def test_sign_in_checks_the_password(directory: Directory) -> None:
    directory.add("ada@example.com", password=PASSWORD)
    assert directory.sign_in("ADA@example.com", PASSWORD).email == "ada@example.com"
    with pytest.raises(Unauthorized, match="wrong email or password"):
        directory.sign_in("ada@example.com", PASSWORD + "!")
    with pytest.raises(Unauthorized, match="wrong email or password"):
        directory.sign_in("nobody@example.com", PASSWORD)
    directory.set_password("ada@example.com", "another password")
    with pytest.raises(Unauthorized):
        directory.sign_in("ada@example.com", PASSWORD)
    assert directory.sign_in("ada@example.com", "another password").has_password


def test_sign_in_is_refused_after_too_many_failures(directory: Directory) -> None:
    directory.add("ada@example.com", password=PASSWORD)
    directory.add("bob@example.com", password=PASSWORD)
    for _ in range(MAX_FAILURES):
        with pytest.raises(Unauthorized, match="wrong email or password"):
            directory.sign_in("ada@example.com", "guess-guess", client="10.0.0.1")
    # The account is locked for a while, even for its right password and from elsewhere ...
    with pytest.raises(Unauthorized, match="too many failed sign-ins") as refused:
        directory.sign_in("ada@example.com", PASSWORD, client="10.0.0.2")
    assert "try again in" in str(refused.value)
    # ... and so is the address the guesses came from, for any account.
    with pytest.raises(Unauthorized, match="too many failed sign-ins"):
        directory.sign_in("bob@example.com", PASSWORD, client="10.0.0.1")
    # Another account from another address is not affected.
    assert directory.sign_in("bob@example.com", PASSWORD, client="10.0.0.2").email == (
        "bob@example.com"
    )


def test_fewer_failures_than_the_limit_do_not_lock(directory: Directory) -> None:
    directory.add("ada@example.com", password=PASSWORD)
    for _ in range(MAX_FAILURES - 1):
        with pytest.raises(Unauthorized):
            directory.sign_in("ada@example.com", "guess-guess")
    assert directory.sign_in("ada@example.com", PASSWORD).email == "ada@example.com"


def test_expired_and_revoked_tokens_are_refused(directory: Directory) -> None:
    directory.add("ada@example.com")
    expired, expired_secret = directory.create_token("ada@example.com", expires=timedelta(-1))
    later, later_secret = directory.create_token("ada@example.com", expires=timedelta(days=30))
    assert expired.state == "expired" and later.state == "active"
    with pytest.raises(Unauthorized, match="expired"):
        directory.user_for_token(expired_secret)
    assert directory.user_for_token(later_secret).email == "ada@example.com"
    revoked = directory.revoke_token(later.id)
    assert revoked.state == "revoked" and revoked.revoked_at is not None
    with pytest.raises(Unauthorized, match="revoked"):
        directory.user_for_token(later_secret)
    states = {t.id: t.state for t in directory.tokens("ada@example.com")}
    assert states == {expired.id: "expired", later.id: "revoked"}


def test_revoking_a_token_of_another_user_is_not_found(directory: Directory) -> None:
    directory.add("ada@example.com")
    directory.add("bob@example.com")
    token, secret = directory.create_token("ada@example.com")
    with pytest.raises(NotFound, match=f"no token {token.id}"):
        directory.revoke_token(token.id, email="bob@example.com")
    with pytest.raises(NotFound):
        directory.revoke_token(token.id + 100)
    assert directory.user_for_token(secret).email == "ada@example.com"
    assert directory.revoke_token(token.id, email=" ADA@example.com ").state == "revoked"


def test_removing_a_user_removes_their_tokens_and_sessions(directory: Directory) -> None:
    ada = directory.add("ada@example.com", password=PASSWORD)
    directory.add("bob@example.com")
    _, ada_secret = directory.create_token("ada@example.com")
    directory.create_token("ada@example.com", name="second")
    _, bob_secret = directory.create_token("bob@example.com")
    cookie, _csrf = directory.start_session(ada)
    assert directory.session_user(cookie) is not None
    directory.remove("ada@example.com")
    assert directory.get("ada@example.com") is None
    assert [t.email for t in directory.tokens()] == ["bob@example.com"]
    with directory.database.session(readonly=True) as session:
        assert session.scalar(select(func.count()).select_from(TokenRow)) == 1
        assert session.scalar(select(func.count()).select_from(SessionRow)) == 0
    with pytest.raises(Unauthorized):
        directory.user_for_token(ada_secret)
    assert directory.session_user(cookie) is None
    assert directory.user_for_token(bob_secret).email == "bob@example.com"
    with pytest.raises(NotFound, match="no user"):
        directory.remove("ada@example.com")


def test_a_session_can_be_ended_by_a_fresh_directory(directory: Directory) -> None:
    # Ending a session is the first use of the key for this Directory object.
    user = directory.add("ada@example.com")
    cookie, _ = directory.start_session(user)
    fresh = Directory(directory.database)
    fresh.end_session(cookie)
    assert directory.session_user(cookie) is None


def test_of_first_users_added_at_once_exactly_one_is_the_admin(directory: Directory) -> None:
    # Each racer has its own Database (its own connections), as separate `ketch users
    # add` processes have, and all start their add at the same moment.
    racers = 6
    barrier = threading.Barrier(racers)

    def add_first(index: int) -> User | None:
        with Database(directory.database.url) as database:
            own = Directory(database)
            barrier.wait(timeout=60)
            return own.add_first(f"user{index}@example.com")

    with ThreadPoolExecutor(racers) as pool:
        added = [u for u in pool.map(add_first, range(racers)) if u is not None]
    assert len(added) == 1 and added[0].admin
    assert [(u.email, u.admin) for u in directory.users()] == [(added[0].email, True)]
    # once a user exists, a first add adds nobody
    assert directory.add_first("late@example.com") is None
    assert directory.get("late@example.com") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30d", timedelta(days=30)),
        ("12h", timedelta(hours=12)),
        (" 90m ", timedelta(minutes=90)),
        ("3600s", timedelta(hours=1)),
        ("2w", timedelta(days=14)),
    ],
)
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "30", "d", "1.5h", "-1d", "0d", "36501d", "9" * 20 + "d"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(InvalidSpec, match="--expires"):
        parse_duration(text)
