"""Portal accounts and sessions.

Passwords are hashed with argon2id; an unknown user costs the same as a wrong
password (a dummy hash is checked), so login timing does not reveal who has an
account. The patient an account belongs to is PHI: it is stored sealed with the
portal's key, bound to the username. Sessions are random ids; only their
SHA-256 is stored.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Column, LargeBinary
from sqlalchemy.engine import Engine
from sqlmodel import Field, Session, SQLModel, select

from services.adapters import crypto
from services.adapters.sql import engine_for

_HASHER = PasswordHasher()  # argon2id with the library's current recommended parameters
_DUMMY = _HASHER.hash("not a real password")
ROLES = ("patient", "regulator")


class Account(SQLModel, table=True):
    __tablename__ = "portal_account"
    username: str = Field(primary_key=True)
    password_hash: str
    role: str
    subject_sealed: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))


class PortalSession(SQLModel, table=True):
    __tablename__ = "portal_session"
    id_hash: str = Field(primary_key=True)
    username: str
    expires_at: datetime


@dataclass(frozen=True)
class Principal:
    """Who is signed in: a patient (subject = FHIR patient id) or a regulator (subject = user id)."""

    username: str
    role: str
    subject: str


class Accounts:
    def __init__(self, url: str, key: bytes) -> None:
        self.engine: Engine = engine_for(url, wal=False)
        SQLModel.metadata.create_all(self.engine, tables=[Account.__table__, PortalSession.__table__])  # type: ignore[attr-defined]
        self._key = crypto.DataKey(key)

    def _aad(self, username: str) -> bytes:
        return f"healthgov.portal.account.v1|{username}".encode()

    def create(self, username: str, password: str, role: str, subject: str) -> None:
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}")
        if len(password) < 12:
            raise ValueError("password must have at least 12 characters")
        with Session(self.engine) as s:
            row = s.get(Account, username) or Account(username=username, password_hash="", role=role,
                                                       subject_sealed=b"")
            row.password_hash = _HASHER.hash(password)
            row.role = role
            row.subject_sealed = self._key.encrypt(subject.encode(), self._aad(username))
            s.add(row)
            s.commit()

    def authenticate(self, username: str, password: str) -> Principal | None:
        with Session(self.engine) as s:
            row = s.get(Account, username)
        try:
            _HASHER.verify(row.password_hash if row else _DUMMY, password)
        except (VerificationError, InvalidHashError):
            return None
        if row is None:
            return None
        return self._principal(row)

    def _principal(self, row: Account) -> Principal:
        subject = self._key.decrypt(row.subject_sealed, self._aad(row.username)).decode()
        return Principal(username=row.username, role=row.role, subject=subject)

    def open_session(self, principal: Principal, ttl_s: int) -> str:
        sid = secrets.token_urlsafe(32)
        with Session(self.engine) as s:
            s.add(PortalSession(id_hash=_digest(sid), username=principal.username,
                                expires_at=datetime.now(UTC) + timedelta(seconds=ttl_s)))
            s.commit()
        return sid

    def session(self, sid: str | None) -> Principal | None:
        if not sid:
            return None
        with Session(self.engine) as s:
            row = s.get(PortalSession, _digest(sid))
            if row is None:
                return None
            expires = row.expires_at if row.expires_at.tzinfo else row.expires_at.replace(tzinfo=UTC)
            if expires < datetime.now(UTC):
                s.delete(row)
                s.commit()
                return None
            account = s.get(Account, row.username)
        return self._principal(account) if account else None

    def close_session(self, sid: str | None) -> None:
        if not sid:
            return
        with Session(self.engine) as s:
            for row in s.exec(select(PortalSession).where(PortalSession.id_hash == _digest(sid))).all():
                s.delete(row)
            s.commit()


def _digest(sid: str) -> str:
    return hashlib.sha256(sid.encode()).hexdigest()
