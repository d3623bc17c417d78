"""Re-authentication before an act that cannot be undone (erasure): the password again, recently.

A session cookie proves someone signed in, up to half an hour ago, on a
device that may since have been left unlocked. Erasing every record is not
to be done on that proof alone: the patient types the password again, and
the proof counts for ``window_s`` (5 minutes) of that session only, so a
mistyped confirmation phrase does not ask for the password twice. Wrong
passwords count against the sign-in throttle (``throttle.py``) like a failed
sign-in, so the erase form is no second door for guessing.

The mark is the SHA-256 of the session id (as ``portal_session`` keeps it)
and a time; it ends with the session.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from sqlalchemy import Column, DateTime
from sqlmodel import Field, Session, SQLModel

from services.portal.accounts import Accounts

WINDOW_S = 5 * 60


class Reauth(SQLModel, table=True):
    __tablename__ = "portal_reauth"
    id_hash: str = Field(primary_key=True)  # SHA-256 of the session id
    at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class Reauthentication:
    def __init__(self, accounts: Accounts, window_s: float = WINDOW_S) -> None:
        self.accounts = accounts
        self.window = timedelta(seconds=window_s)
        SQLModel.metadata.create_all(accounts.engine, tables=[Reauth.__table__])  # type: ignore[attr-defined]

    @staticmethod
    def _key(sid: str) -> str:
        return hashlib.sha256(sid.encode()).hexdigest()

    def confirm(self, sid: str, username: str, password: str) -> bool:
        """Check the password of the signed-in account; on success the session is recently authenticated."""
        who = self.accounts.authenticate(username, password)
        if who is None or who.username != username:
            return False
        with Session(self.accounts.engine) as s:
            row = s.get(Reauth, self._key(sid)) or Reauth(id_hash=self._key(sid), at=datetime.now(UTC))
            row.at = datetime.now(UTC)
            s.add(row)
            s.commit()
        return True

    def recent(self, sid: str | None) -> bool:
        """The password was confirmed in this session within the window."""
        if not sid:
            return False
        with Session(self.accounts.engine) as s:
            row = s.get(Reauth, self._key(sid))
        if row is None:
            return False
        at = row.at if row.at.tzinfo else row.at.replace(tzinfo=UTC)
        return datetime.now(UTC) - at <= self.window

    def forget(self, sid: str | None) -> None:
        """After the act (or at sign-out) the proof is spent."""
        if not sid:
            return
        with Session(self.accounts.engine) as s:
            row = s.get(Reauth, self._key(sid))
            if row is not None:
                s.delete(row)
                s.commit()
