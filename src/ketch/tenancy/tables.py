"""The tenancy capability's tables: users, their API tokens, browser sessions, the
sign-in attempts that rate-limit guessing, the audit log, and the server's keys.

Profiles and RoleBindings are resources (in core's ``resources`` table). Any change
here needs an Alembic migration in :data:`MIGRATIONS` (branch ``tenancy``).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from sqlalchemy import Boolean, DateTime, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ketch.core.store.models import Base

MIGRATIONS = Path(__file__).resolve().parent / "migrations" / "versions"


class UserRow(Base):
    __tablename__ = "tenancy_users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    #: argon2id, or None for a user who signs in with tokens, a proxy or OIDC only
    password_hash: Mapped[str | None] = mapped_column(String(256), nullable=True)
    admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class TokenRow(Base):
    __tablename__ = "tenancy_tokens"
    __table_args__ = (Index("ix_tenancy_tokens_user", "user_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("tenancy_users.id", ondelete="CASCADE"))
    #: HMAC-SHA256 of the token under the server's key (hex)
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    #: the token's first characters, to tell tokens apart in a list
    prefix: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(128), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class SessionRow(Base):
    """A browser session: the cookie carries a secret whose HMAC is ``digest``."""

    __tablename__ = "tenancy_sessions"
    __table_args__ = (Index("ix_tenancy_sessions_user", "user_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("tenancy_users.id", ondelete="CASCADE"))
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    csrf: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class AttemptRow(Base):
    """A failed sign-in, by the account and the address it came from."""

    __tablename__ = "tenancy_attempts"
    __table_args__ = (Index("ix_tenancy_attempts_key", "key", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(300))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class AuditRow(Base):
    """A state-changing request: who, what, and how it ended."""

    __tablename__ = "tenancy_audit"
    __table_args__ = (Index("ix_tenancy_audit_at", "at"), Index("ix_tenancy_audit_user", "user"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    user: Mapped[str] = mapped_column(String(254))
    method: Mapped[str] = mapped_column(String(8))
    path: Mapped[str] = mapped_column(Text)
    verb: Mapped[str] = mapped_column(String(32), default="")
    resource: Mapped[str] = mapped_column(String(256), default="")
    namespace: Mapped[str] = mapped_column(String(63), default="")
    name: Mapped[str] = mapped_column(String(253), default="")
    code: Mapped[int] = mapped_column(Integer)


class KeyRow(Base):
    """The server's secrets (the HMAC key of tokens and sessions), made once."""

    __tablename__ = "tenancy_keys"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(128))
