"""Guardians acting for a child: which signed-in account may act for which patient, and nothing else.

A guardian is a portal account (a patient in their own right) linked to a
child's record by whoever registers guardianship (``healthgov portal
link-guardian``; the demo links one). The link is the only thing that lets an
account act for another patient: the portal signs the child's ``patient``
claim for the guardian only when the signed-in account holds a link to that
child, found by the link's random id in the URL, never by a patient id a
browser sends. A link id of somebody else's, a made-up one, or the child's
own id names no link of this account and is answered like a page that does
not exist.

The child's record id and name are PHI: sealed with the portal's key, bound to
the link's id and its guardian, like the accounts' own patient references.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Column, LargeBinary
from sqlalchemy.engine import Engine
from sqlmodel import Field, Session, SQLModel, select

from services.adapters import crypto
from services.portal.accounts import Principal

GUARDIAN_ROLE = "guardian"
LINK_ID = re.compile(r"[A-Za-z0-9_-]{16,64}")  # what secrets.token_urlsafe(16) makes, with room to grow
# HL7 v3 PurposeOfUse: the recipient is the patient's legally authorised representative.
GUARDIAN_PURPOSE = "PWATRNY"


class ProxyLink(SQLModel, table=True):
    __tablename__ = "portal_proxy"
    id: str = Field(primary_key=True)  # random, the link's id in the guardian's URLs
    guardian: str = Field(index=True)  # the guardian's username
    child_sealed: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    label_sealed: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))


@dataclass(frozen=True)
class Child:
    """One child a guardian acts for: the link's id and the name the guardian reads."""

    link: str
    label: str


class Proxies:
    def __init__(self, engine: Engine, key: bytes) -> None:
        self.engine = engine
        SQLModel.metadata.create_all(self.engine, tables=[ProxyLink.__table__])  # type: ignore[attr-defined]
        self._key = crypto.DataKey(key)

    @staticmethod
    def _aad(link: str, guardian: str, what: str) -> bytes:
        return f"healthgov.portal.proxy.v1|{what}|{link}|{guardian}".encode()

    def _open(self, row: ProxyLink) -> tuple[str, str]:
        child = self._key.decrypt(row.child_sealed, self._aad(row.id, row.guardian, "child")).decode()
        label = self._key.decrypt(row.label_sealed, self._aad(row.id, row.guardian, "label")).decode()
        return child, label

    def link(self, guardian: str, child: str, label: str) -> str:
        """Let ``guardian`` act for the patient ``child``; the same pair again keeps its link (and its id)."""
        if not child or not label:
            raise ValueError("a link names the child's record id and a name for them")
        with Session(self.engine) as s:
            for row in s.exec(select(ProxyLink).where(ProxyLink.guardian == guardian)).all():
                known, _ = self._open(row)
                if known == child:
                    row.label_sealed = self._key.encrypt(label.encode(), self._aad(row.id, guardian, "label"))
                    s.add(row)
                    s.commit()
                    return row.id
            link = secrets.token_urlsafe(16)
            s.add(ProxyLink(id=link, guardian=guardian,
                            child_sealed=self._key.encrypt(child.encode(), self._aad(link, guardian, "child")),
                            label_sealed=self._key.encrypt(label.encode(), self._aad(link, guardian, "label"))))
            s.commit()
            return link

    def children(self, guardian: str) -> list[Child]:
        """The children ``guardian`` acts for, by name."""
        with Session(self.engine) as s:
            rows = s.exec(select(ProxyLink).where(ProxyLink.guardian == guardian)).all()
            return sorted((Child(link=r.id, label=self._open(r)[1]) for r in rows), key=lambda c: c.label)

    def acting_for(self, who: Principal, link: str) -> tuple[Principal, Child] | None:
        """The principal a guardian acts as for the child of ``link``, if ``link`` is one of ``who``'s own."""
        if who.role != "patient" or not LINK_ID.fullmatch(link):
            return None  # not even the shape of a link id (a NUL byte, a path): no need to ask the database
        with Session(self.engine) as s:
            row = s.get(ProxyLink, link)
            if row is None or row.guardian != who.username:
                return None
            child, label = self._open(row)
        return Principal(username=who.username, role=GUARDIAN_ROLE, subject=child), Child(link=link, label=label)
