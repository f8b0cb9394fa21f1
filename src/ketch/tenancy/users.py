"""Users, their API tokens and browser sessions, kept in the store.

Passwords are hashed with argon2id (they are low-entropy secrets). API tokens and
session cookies are long random secrets: they are stored as an HMAC-SHA256 under a
key the store keeps (a fast keyed hash, so a check costs microseconds and a stolen
table gives nothing usable). Every lookup reads the store, so what the CLI writes
(a new user, a revoked token) holds for a running server at once.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, exists, func, insert, literal, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ketch.core.errors import AlreadyExists, InvalidSpec, NotFound, Unauthorized
from ketch.core.store.db import Database
from ketch.core.timestamps import utcnow
from ketch.tenancy.tables import AttemptRow, KeyRow, SessionRow, TokenRow, UserRow

TOKEN_PREFIX = "ketch_"
#: the user names of service accounts (``system:serviceaccount:<namespace>:<name>``):
#: no email has a colon, so no person can be one
SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"
#: how long a workload's service-account token lasts
SERVICE_TOKEN_LIFETIME = timedelta(days=30)
SESSION_HOURS = 12
#: failed password sign-ins allowed per account, and per address, in WINDOW
MAX_FAILURES = 5
WINDOW = timedelta(minutes=5)
#: the longest lifetime ``--expires`` takes (100 years)
MAX_DURATION = timedelta(days=36500)
_EMAIL = re.compile(r"^[^\s@/:]{1,64}@[^\s@/:]{1,190}$")
_HASHER = PasswordHasher()
#: the users that are people, not service accounts
_PEOPLE = UserRow.email.notlike(SERVICE_ACCOUNT_PREFIX + "%")


@dataclass(frozen=True)
class User:
    id: int
    email: str
    admin: bool
    has_password: bool
    created_at: datetime


@dataclass(frozen=True)
class Token:
    id: int
    email: str
    prefix: str
    name: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None

    @property
    def state(self) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and _aware(self.expires_at) <= utcnow():
            return "expired"
        return "active"


def _aware(value: datetime) -> datetime:
    from datetime import UTC

    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def check_email(email: str) -> str:
    email = email.strip()
    if not _EMAIL.match(email):
        raise InvalidSpec(
            f"{email!r} is not an email address", field="email", hint="give NAME@DOMAIN"
        )
    return email.lower()


def _user(row: UserRow) -> User:
    # SQLite gives back naive datetimes: every time read is made aware (UTC)
    has_password = row.password_hash is not None
    return User(row.id, row.email, row.admin, has_password, _aware(row.created_at))


class Directory:
    """The users of one store (``database``)."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self._key: bytes | None = None

    # -- keys ---------------------------------------------------------------------

    def key(self) -> bytes:
        """The HMAC key of tokens and sessions (made on first use, then kept)."""
        if self._key is None:
            with self.database.session(readonly=True) as session:
                value = session.scalar(select(KeyRow.value).where(KeyRow.name == "token-hmac"))
            if value is None:
                try:
                    with self.database.session() as session:
                        session.add(KeyRow(name="token-hmac", value=secrets.token_hex(32)))
                except IntegrityError:  # another process made it first
                    pass
                with self.database.session(readonly=True) as session:
                    value = session.scalar(select(KeyRow.value).where(KeyRow.name == "token-hmac"))
            assert value is not None
            self._key = bytes.fromhex(value)
        return self._key

    def digest(self, secret: str) -> str:
        return hmac.new(self.key(), secret.encode(), hashlib.sha256).hexdigest()

    # -- users --------------------------------------------------------------------

    def has_users(self) -> bool:
        """Whether a person is a user (service accounts do not count: they exist only
        once authentication is on)."""
        with self.database.session(readonly=True) as session:
            query = select(UserRow.id).where(_PEOPLE).limit(1)
            return session.scalar(query) is not None

    def users(self) -> list[User]:
        """The people (service accounts are left out)."""
        with self.database.session(readonly=True) as session:
            query = select(UserRow).where(_PEOPLE).order_by(UserRow.email)
            return [_user(r) for r in session.scalars(query)]

    def get(self, email: str) -> User | None:
        with self.database.session(readonly=True) as session:
            row = session.scalar(select(UserRow).where(UserRow.email == email.strip().lower()))
            return _user(row) if row is not None else None

    def add(self, email: str, *, admin: bool = False, password: str | None = None) -> User:
        email = check_email(email)
        hashed = _HASHER.hash(check_password(password)) if password is not None else None
        try:
            with self.database.session() as session:
                row = UserRow(email=email, admin=admin, password_hash=hashed, created_at=utcnow())
                session.add(row)
                session.flush()
                return _user(row)
        except IntegrityError:
            raise AlreadyExists(f'user "{email}" exists already', kind="User", name=email) from None

    def add_first(self, email: str, *, password: str | None = None) -> User | None:
        """Add ``email`` as the store's first user, an admin, only while no person is
        a user; ``None`` when someone is (another ``ketch users add`` came first).

        The check and the insert are one ``INSERT ... SELECT ... WHERE NOT EXISTS``
        in a write session, which holds the store's write lock (SQLite's ``BEGIN
        IMMEDIATE``, PostgreSQL's advisory lock): of two first adds at once, exactly
        one makes an admin."""
        email = check_email(email)
        hashed = _HASHER.hash(check_password(password)) if password is not None else None
        values = select(
            literal(email, UserRow.email.type),
            literal(True, UserRow.admin.type),
            literal(hashed, UserRow.password_hash.type),
            literal(utcnow(), UserRow.created_at.type),
        ).where(~exists(select(UserRow.id).where(_PEOPLE)))
        columns = ["email", "admin", "password_hash", "created_at"]
        with self.database.session() as session:
            query = insert(UserRow).from_select(columns, values).returning(UserRow.id)
            added = session.execute(query).scalar_one_or_none()
            if added is None:
                return None
            return _user(session.get_one(UserRow, added))

    def remove(self, email: str) -> None:
        with self.database.session() as session:
            row = self._find(session, email)
            session.execute(delete(TokenRow).where(TokenRow.user_id == row.id))
            session.execute(delete(SessionRow).where(SessionRow.user_id == row.id))
            session.delete(row)

    def set_password(self, email: str, password: str) -> None:
        hashed = _HASHER.hash(check_password(password))
        with self.database.session() as session:
            self._find(session, email).password_hash = hashed

    def set_admin(self, email: str, admin: bool) -> None:
        with self.database.session() as session:
            self._find(session, email).admin = admin

    @staticmethod
    def _find(session: Session, email: str) -> UserRow:
        row = session.scalar(select(UserRow).where(UserRow.email == email.strip().lower()))
        if row is None:
            raise NotFound(f'no user "{email}"', hint="`ketch users list` shows them")
        return row

    # -- passwords ----------------------------------------------------------------

    def sign_in(self, email: str, password: str, client: str | None = None) -> User:
        """The user whose password this is. Refused (401) for a wrong one, and for any
        once an account or address has failed :data:`MAX_FAILURES` times in
        :data:`WINDOW` (the refusal then says when to try again)."""
        email = email.strip().lower()
        keys = [f"user:{email}"] + ([f"addr:{client}"] if client else [])
        since = utcnow() - WINDOW
        with self.database.session(readonly=True) as session:
            for key in keys:
                failures = session.scalar(
                    select(func.count())
                    .select_from(AttemptRow)
                    .where(AttemptRow.key == key, AttemptRow.at > since)
                )
                if (failures or 0) >= MAX_FAILURES:
                    raise Unauthorized(
                        "too many failed sign-ins",
                        hint=f"try again in {int(WINDOW.total_seconds() // 60)} minutes",
                    )
            row = session.scalar(select(UserRow).where(UserRow.email == email))
            hashed = row.password_hash if row is not None else None
        try:
            # an unknown email costs a hash check too: the time taken tells nothing
            _HASHER.verify(hashed if hashed is not None else _dummy_hash(), password)
            if hashed is None:
                raise VerificationError("no password")
        except (VerificationError, InvalidHashError):
            with self.database.session() as session:
                now = utcnow()
                session.execute(delete(AttemptRow).where(AttemptRow.at < since))
                session.add_all([AttemptRow(key=key, at=now) for key in keys])
            raise Unauthorized("wrong email or password") from None
        assert row is not None
        return _user(row)

    # -- tokens -------------------------------------------------------------------

    def create_token(
        self, email: str, *, name: str = "", expires: timedelta | None = None
    ) -> tuple[Token, str]:
        """A new API token for ``email``: its record and the secret (shown once)."""
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        digest = self.digest(secret)  # before the write: the first use writes the key
        now = utcnow()
        with self.database.session() as session:
            user = self._find(session, email)
            row = TokenRow(
                user_id=user.id,
                digest=digest,
                prefix=secret[: len(TOKEN_PREFIX) + 6],
                name=name,
                created_at=now,
                expires_at=now + expires if expires is not None else None,
            )
            session.add(row)
            session.flush()
            return self._token(row, user.email), secret

    @staticmethod
    def _token(row: TokenRow, email: str) -> Token:
        return Token(
            row.id,
            email,
            row.prefix,
            row.name,
            _aware(row.created_at),
            _aware(row.expires_at) if row.expires_at is not None else None,
            _aware(row.revoked_at) if row.revoked_at is not None else None,
        )

    def tokens(self, email: str | None = None) -> list[Token]:
        with self.database.session(readonly=True) as session:
            query = select(TokenRow, UserRow.email).join(UserRow, UserRow.id == TokenRow.user_id)
            if email is not None:
                query = query.where(UserRow.email == email.strip().lower())
            return [
                self._token(row, mail) for row, mail in session.execute(query.order_by(TokenRow.id))
            ]

    def revoke_token(self, token_id: int, *, email: str | None = None) -> Token:
        """Revoke token ``token_id`` (of ``email`` only, when given)."""
        with self.database.session() as session:
            found = session.execute(
                select(TokenRow, UserRow.email)
                .join(UserRow, UserRow.id == TokenRow.user_id)
                .where(TokenRow.id == token_id)
            ).first()
            if found is None or (email is not None and found[1] != email.strip().lower()):
                raise NotFound(f"no token {token_id}", hint="`ketch tokens list` shows them")
            row, mail = found
            row.revoked_at = row.revoked_at or utcnow()
            return self._token(row, mail)

    def user_for_token(self, secret: str) -> User:
        """The user of API token ``secret``; :class:`Unauthorized` when it is unknown,
        expired or revoked."""
        digest = self.digest(secret)
        with self.database.session(readonly=True) as session:
            found = session.execute(
                select(TokenRow.expires_at, TokenRow.revoked_at, UserRow)
                .join(UserRow, UserRow.id == TokenRow.user_id)
                .where(TokenRow.digest == digest)
            ).first()
        if found is None:
            raise Unauthorized(
                "the token is not valid", hint="create one with `ketch tokens create`"
            )
        expires, revoked, row = found
        if revoked is not None:
            raise Unauthorized("the token was revoked")
        if expires is not None and _aware(expires) <= utcnow():
            raise Unauthorized("the token has expired", hint="create a new one")
        return _user(row)

    def service_account_token(self, namespace: str, name: str = "default-editor") -> str:
        """A new API token of service account ``name`` in ``namespace`` (its user row
        is made on first use: no password, never an admin), lasting
        :data:`SERVICE_TOKEN_LIFETIME`; the account's expired tokens are removed."""
        email = f"{SERVICE_ACCOUNT_PREFIX}{namespace}:{name}"
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        digest = self.digest(secret)  # before the write: the first use writes the key
        now = utcnow()
        for _attempt in range(2):
            try:
                with self.database.session() as session:
                    user = session.scalar(select(UserRow).where(UserRow.email == email))
                    if user is None:
                        user = UserRow(email=email, admin=False, password_hash=None, created_at=now)
                        session.add(user)
                        session.flush()
                    session.execute(
                        delete(TokenRow).where(
                            TokenRow.user_id == user.id, TokenRow.expires_at < now
                        )
                    )
                    session.add(
                        TokenRow(
                            user_id=user.id,
                            digest=digest,
                            prefix=secret[: len(TOKEN_PREFIX) + 6],
                            name="workload",
                            created_at=now,
                            expires_at=now + SERVICE_TOKEN_LIFETIME,
                        )
                    )
                return secret
            except IntegrityError:  # another process made the account first: once more
                continue
        raise AlreadyExists(f'could not make the service account "{email}"', name=email)

    # -- browser sessions ---------------------------------------------------------

    def start_session(self, user: User) -> tuple[str, str]:
        """A new browser session for ``user``: the cookie's secret and its CSRF token."""
        secret, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
        digest = self.digest(secret)  # before the write: the first use writes the key
        now = utcnow()
        with self.database.session() as session:
            session.execute(delete(SessionRow).where(SessionRow.expires_at < now))
            session.add(
                SessionRow(
                    user_id=user.id,
                    digest=digest,
                    csrf=csrf,
                    created_at=now,
                    expires_at=now + timedelta(hours=SESSION_HOURS),
                )
            )
        return secret, csrf

    def session_user(self, secret: str) -> tuple[User, str] | None:
        """The user of a session cookie and the session's CSRF token (``None`` when
        the session is unknown or over)."""
        digest = self.digest(secret)
        with self.database.session(readonly=True) as session:
            found = session.execute(
                select(SessionRow.expires_at, SessionRow.csrf, UserRow)
                .join(UserRow, UserRow.id == SessionRow.user_id)
                .where(SessionRow.digest == digest)
            ).first()
        if found is None or _aware(found[0]) <= utcnow():
            return None
        return _user(found[2]), found[1]

    def end_session(self, secret: str) -> None:
        digest = self.digest(secret)  # before the write: the first use writes the key
        with self.database.session() as session:
            session.execute(delete(SessionRow).where(SessionRow.digest == digest))


@functools.cache
def _dummy_hash() -> str:
    """A hash no password matches, checked when an email has no password."""
    return _HASHER.hash(secrets.token_urlsafe(32))


def check_password(password: str | None) -> str:
    if password is None or len(password) < 8:
        raise InvalidSpec("a password has at least 8 characters", field="password")
    if len(password) > 1024:
        raise InvalidSpec("a password has at most 1024 characters", field="password")
    return password


def parse_duration(text: str) -> timedelta:
    """``30d``, ``12h``, ``90m``, ``3600s`` (what ``--expires`` takes)."""
    match = re.fullmatch(r"\s*(\d+)\s*([smhdw])\s*", text or "")
    if not match:
        raise InvalidSpec(
            f"{text!r} is not a duration", field="--expires", hint="e.g. 30d, 12h, 90m"
        )
    unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
    try:
        duration = timedelta(**{unit[match.group(2)]: int(match.group(1))})
    except OverflowError:
        duration = MAX_DURATION * 2
    if not timedelta(0) < duration <= MAX_DURATION:
        raise InvalidSpec(
            f"{text.strip()!r} must be more than 0 and at most {MAX_DURATION.days} days",
            field="--expires",
            hint="leave --expires out for a token that does not expire",
        )
    return duration
