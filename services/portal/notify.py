"""Notices by e-mail: the patient's address, the delivered marks, and the worker that sends.

Records keeps the notice outbox (``records/notices.py``) and gives each patient
their own notices only (``GET /notices``, the patient's token). The address to
write to is the patient's choice, made in the portal, so it lives here: sealed
with the portal's key, bound to the account, like the patient reference.

The worker asks records, on behalf of each patient who gave an address, for
their visible notices, and mails those that became visible after the address
was given (older ones are already on the portal page). Bookkeeping, per
account and notice event id, in ``portal_notice_delivery``:

- a row is created ``pending`` (unique per account and event: a notice is
  never queued twice, whichever worker sees it first);
- a worker claims the due pending rows of an account with one conditional
  UPDATE (``pending`` → ``sending`` with a lease), so two portal processes
  never both send them;
- after the relay accepted the e-mail the rows are marked ``sent`` with
  ``delivered_at``; a failure puts them back ``pending`` with a backoff, and
  after ``max_attempts`` they are ``failed`` (shown as such to the patient);
- a lease that ran out (a worker died between sending and marking) is due
  again: at most one more e-mail, with the same Message-ID. Exactly once would
  need the relay to take part in our transaction; this is as close as SMTP
  allows.

The channel is a setting: ``smtp`` (a relay; in dev and test the stack's local
sink) or ``none`` (no worker runs, nothing is queued).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import Column, DateTime, LargeBinary, UniqueConstraint, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, Session, SQLModel, select

from services.adapters import crypto
from services.portal.accounts import Account, Accounts, Principal
from services.portal.clients import Upstream
from services.portal.mail import Channel, compose

log = logging.getLogger("healthgov.portal.notify")
LEASE = timedelta(minutes=2)
STATES = ("pending", "sending", "sent", "failed")


class Contact(SQLModel, table=True):
    """Where a patient wants to be told: the address (sealed, bound to the account) and the language."""

    __tablename__ = "portal_contact"
    username: str = Field(primary_key=True)
    address_sealed: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    lang: str
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class Delivery(SQLModel, table=True):
    """One notice's e-mail to one account: the delivered mark and the retry state."""

    __tablename__ = "portal_notice_delivery"
    __table_args__ = (UniqueConstraint("username", "event_id"),)
    pk: int | None = Field(default=None, primary_key=True)
    username: str = Field(index=True)
    event_id: str
    state: str = "pending"  # pending | sending | sent | failed
    attempts: int = 0
    next_attempt_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    delivered_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    last_error: str | None = None  # the failure's class (e.g. SMTPRecipientsRefused), never its text


class InvalidAddress(ValueError):
    """What the patient typed is not an e-mail address."""


def normalise_address(text: str) -> str:
    """A syntactically valid address in its normal form; no DNS look-up (the relay finds out)."""
    try:
        return str(validate_email(text.strip(), check_deliverability=False).normalized)
    except EmailNotValidError as exc:
        raise InvalidAddress(str(exc)) from exc


def masked(address: str) -> str:
    """``z***@example.com``: enough for the patient to recognise their address on a shared screen."""
    local, _, domain = address.partition("@")
    return f"{local[:1]}***@{domain}"


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class Contacts:
    """The addresses patients gave, and the state of each notice's e-mail."""

    def __init__(self, accounts: Accounts, key: bytes) -> None:
        self.engine: Engine = accounts.engine
        self.accounts = accounts
        self._key = crypto.DataKey(key)
        SQLModel.metadata.create_all(self.engine, tables=[Contact.__table__, Delivery.__table__])  # type: ignore[attr-defined]

    @staticmethod
    def _aad(username: str) -> bytes:
        return f"healthgov.portal.contact.v1|{username}".encode()

    def set(self, username: str, address: str, lang: str, now: datetime | None = None) -> None:
        """Give or change the address; notices visible from now on are e-mailed to it."""
        sealed = self._key.encrypt(normalise_address(address).encode(), self._aad(username))
        with Session(self.engine) as s:
            row = s.get(Contact, username)
            if row is None:
                row = Contact(username=username, address_sealed=sealed, lang=lang,
                              created_at=now or datetime.now(UTC))
            row.address_sealed, row.lang = sealed, lang
            s.add(row)
            s.commit()

    def remove(self, username: str) -> None:
        with Session(self.engine) as s:
            row = s.get(Contact, username)
            if row is not None:
                s.delete(row)
                s.commit()

    def get(self, username: str) -> tuple[str, str] | None:
        """(address, language), or None when the patient gave none."""
        with Session(self.engine) as s:
            row = s.get(Contact, username)
        if row is None:
            return None
        return self._key.decrypt(row.address_sealed, self._aad(username)).decode(), row.lang

    def since(self, username: str) -> datetime | None:
        with Session(self.engine) as s:
            row = s.get(Contact, username)
        return _aware(row.created_at) if row else None

    def deliveries(self, username: str) -> dict[str, Delivery]:
        """The e-mail state of each notice (by event id) of one account."""
        with Session(self.engine) as s:
            rows = s.exec(select(Delivery).where(Delivery.username == username)).all()
        return {r.event_id: r for r in rows}

    def patients(self) -> list[tuple[Principal, str, str, datetime]]:
        """Each patient account with an address: who, address, language, since when."""
        with Session(self.engine) as s:
            rows = s.exec(select(Contact, Account).where(Contact.username == Account.username,
                                                         Account.role == "patient")).all()
        out = []
        for contact, account in rows:
            address = self._key.decrypt(contact.address_sealed, self._aad(contact.username)).decode()
            out.append((self.accounts._principal(account), address, contact.lang, _aware(contact.created_at)))
        return out

    def queue(self, username: str, event_ids: list[str], now: datetime) -> None:
        """A pending row for each event id not yet known for this account (another worker's race is fine)."""
        known = set(self.deliveries(username))
        for event_id in event_ids:
            if event_id in known:
                continue
            try:
                with Session(self.engine) as s:
                    s.add(Delivery(username=username, event_id=event_id, next_attempt_at=now))
                    s.commit()
            except IntegrityError:
                pass  # queued meanwhile by another worker

    def claim(self, username: str, now: datetime) -> list[str]:
        """Take the account's due rows for sending (pending, or sending with a lapsed lease); their event ids."""
        with Session(self.engine) as s:
            due = s.exec(select(Delivery).where(Delivery.username == username,
                                                Delivery.state.in_(("pending", "sending")),  # type: ignore[attr-defined]
                                                Delivery.next_attempt_at <= now)).all()
            claimed: list[str] = []
            for row in due:
                result = s.execute(update(Delivery).where(
                    Delivery.pk == row.pk, Delivery.state == row.state,  # type: ignore[arg-type]
                    Delivery.next_attempt_at == row.next_attempt_at,  # type: ignore[arg-type]
                ).values(state="sending", next_attempt_at=now + LEASE))
                if result.rowcount == 1:  # type: ignore[attr-defined]
                    claimed.append(row.event_id)
            s.commit()
        return claimed

    def settle(self, username: str, event_ids: list[str], now: datetime, error: str | None,
               max_attempts: int, backoff: Callable[[int], timedelta]) -> None:
        """Mark the claimed rows sent, or count the failure and schedule the next try (or give up)."""
        with Session(self.engine) as s:
            rows = s.exec(select(Delivery).where(Delivery.username == username,
                                                 Delivery.event_id.in_(event_ids))).all()  # type: ignore[attr-defined]
            for row in rows:
                if error is None:
                    row.state, row.delivered_at, row.last_error = "sent", now, None
                else:
                    row.attempts += 1
                    row.last_error = error
                    row.state = "failed" if row.attempts >= max_attempts else "pending"
                    row.next_attempt_at = now + backoff(row.attempts)
                s.add(row)
            s.commit()


def visible_at(notice: dict[str, Any]) -> datetime | None:
    """When the patient could first see a notice (a warrant may defer it past the act)."""
    stamps = []
    for key in ("at", "visible_from"):
        try:
            stamps.append(_aware(datetime.fromisoformat(str(notice.get(key) or "").replace("Z", "+00:00"))))
        except ValueError:
            continue
    return max(stamps) if stamps else None


class DeliveryWorker:
    """One round at a time: queue new notices, send what is due, one e-mail per account per round."""

    def __init__(self, contacts: Contacts, notices: Callable[[Principal], list[dict[str, Any]]], channel: Channel,
                 *, sender: str, portal_url: str, max_attempts: int = 6, backoff_s: float = 30.0,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.contacts, self.notices, self.channel = contacts, notices, channel
        self.sender, self.portal_url = sender, portal_url
        self.max_attempts, self.backoff_s, self.clock = max_attempts, backoff_s, clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def backoff(self, attempts: int) -> timedelta:
        """30 s, 1 min, 2 min, … capped at an hour: a relay that is down is not hammered."""
        return timedelta(seconds=min(self.backoff_s * 2 ** (attempts - 1), 3600))

    def run_once(self) -> int:
        """One round over every patient with an address; the number of e-mails the relay accepted."""
        sent = 0
        for who, address, lang, since in self.contacts.patients():
            try:
                notices = self.notices(who)
            except Upstream as exc:
                log.warning("notices of one account could not be read (%s); next round", exc.status)
                continue
            now = self.clock()
            fresh = [n["event_id"] for n in notices
                     if isinstance(n.get("event_id"), str) and (visible_at(n) or since) >= since]
            self.contacts.queue(who.username, fresh, now)
            claimed = self.contacts.claim(who.username, now)
            if not claimed:
                continue
            message = compose(to=address, sender=self.sender, lang=lang, portal_url=self.portal_url,
                              event_ids=claimed)
            error: str | None = None
            try:
                self.channel.send(message)
                sent += 1
            except Exception as exc:  # any failure of the relay: counted, tried again later
                error = type(exc).__name__
                log.warning("notice e-mail not accepted (%s); tried again later", error)
            self.contacts.settle(who.username, claimed, self.clock(), error, self.max_attempts, self.backoff)
        return sent

    def start(self, interval_s: float) -> None:
        def loop() -> None:
            while not self._stop.wait(interval_s):
                try:
                    self.run_once()
                except Exception:  # a round that fails (database away) must not end the worker
                    log.exception("notice delivery round failed")

        self._thread = threading.Thread(target=loop, name="notice-mail", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
