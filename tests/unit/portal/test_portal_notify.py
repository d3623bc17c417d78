"""Notice e-mail bookkeeping: queued once, sent once, retried with backoff, given up after the limit.

The relay here is a list (the pure logic of the worker); the real SMTP path, through the stack's aiosmtpd sink,
is tested end to end in tests/e2e/test_notice_mail.py.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from services.portal.accounts import Accounts, Principal
from services.portal.mail import compose
from services.portal.notify import Contacts, DeliveryWorker, InvalidAddress, masked, normalise_address

T0 = datetime(2026, 12, 6, 8, 0, tzinfo=UTC)


class Relay:
    """Accepts, or refuses the next ``refuse`` messages."""

    def __init__(self, refuse: int = 0) -> None:
        self.sent: list[EmailMessage] = []
        self.refuse = refuse

    def send(self, message: EmailMessage) -> None:
        if self.refuse:
            self.refuse -= 1
            raise ConnectionRefusedError("relay down")
        self.sent.append(message)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture()
def contacts(tmp_path: Path) -> Contacts:
    accounts = Accounts(f"sqlite:///{tmp_path / 'portal.db'}", os.urandom(32))
    accounts.create("li", "long enough password", "patient", "patient-li")
    accounts.create("reg", "long enough password", "regulator", "reg-1")
    return Contacts(accounts, os.urandom(32))


def notice(event_id: str, at: datetime, visible_from: datetime | None = None) -> dict[str, Any]:
    return {"kind": "break_glass", "org": "gy-hosp-002", "event_id": event_id, "at": at.isoformat(),
            "visible_from": (visible_from or at).isoformat()}


def worker(contacts: Contacts, inbox: dict[str, list[dict[str, Any]]], relay: Relay, clock: Clock) -> DeliveryWorker:
    def notices(who: Principal) -> list[dict[str, Any]]:
        return inbox.get(who.subject, [])

    return DeliveryWorker(contacts, notices, relay, sender="healthgov <noreply@healthgov.example>",
                          portal_url="https://portal.example", max_attempts=3, backoff_s=30, clock=clock)


def test_only_notices_visible_after_the_address_was_given_are_mailed_and_each_once(contacts: Contacts) -> None:
    clock, relay = Clock(), Relay()
    contacts.set("li", "Li.Wei@Example.COM", "zh_CN", now=T0)
    inbox = {"patient-li": [notice("old", T0 - timedelta(days=1)),
                            notice("sealed", T0 - timedelta(days=9), visible_from=T0 + timedelta(minutes=1)),
                            notice("new", T0 + timedelta(minutes=1))]}
    w = worker(contacts, inbox, relay, clock)
    clock.now = T0 + timedelta(minutes=2)
    assert w.run_once() == 1
    assert w.run_once() == 0  # the delivered mark holds: nothing is sent twice
    assert relay.sent[0]["To"] == "Li.Wei@example.com"
    states = {e: d.state for e, d in contacts.deliveries("li").items()}
    assert states == {"sealed": "sent", "new": "sent"}  # the state access whose seal ended now is news too


def test_a_refusing_relay_is_tried_again_after_a_backoff_then_given_up(contacts: Contacts) -> None:
    clock, relay = Clock(), Relay(refuse=10)
    contacts.set("li", "li@example.com", "en", now=T0)
    w = worker(contacts, {"patient-li": [notice("e1", T0 + timedelta(seconds=1))]}, relay, clock)
    clock.now = T0 + timedelta(seconds=5)
    assert w.run_once() == 0
    row = contacts.deliveries("li")["e1"]
    assert (row.state, row.attempts, row.last_error) == ("pending", 1, "ConnectionRefusedError")
    assert w.run_once() == 0 and relay.refuse == 9  # not due yet: the relay is not hammered
    clock.now += timedelta(seconds=31)
    w.run_once()
    clock.now += timedelta(seconds=61)
    w.run_once()
    assert contacts.deliveries("li")["e1"].state == "failed"
    clock.now += timedelta(days=1)
    w.run_once()
    assert relay.refuse == 7  # three attempts, then no more


def test_a_relay_that_recovers_gets_the_message_and_the_mark_says_sent(contacts: Contacts) -> None:
    clock, relay = Clock(), Relay(refuse=1)
    contacts.set("li", "li@example.com", "zh_CN", now=T0)
    w = worker(contacts, {"patient-li": [notice("e1", T0 + timedelta(seconds=1))]}, relay, clock)
    clock.now = T0 + timedelta(seconds=5)
    w.run_once()
    clock.now += timedelta(seconds=30)
    assert w.run_once() == 1
    row = contacts.deliveries("li")["e1"]
    assert row.state == "sent" and row.delivered_at is not None and row.attempts == 1


def test_a_claimed_row_is_not_claimed_again_until_its_lease_ends(contacts: Contacts) -> None:
    contacts.set("li", "li@example.com", "zh_CN", now=T0)
    contacts.queue("li", ["e1"], T0)
    assert contacts.claim("li", T0) == ["e1"]
    assert contacts.claim("li", T0 + timedelta(seconds=30)) == []  # another worker finds nothing to send
    assert contacts.claim("li", T0 + timedelta(minutes=3)) == ["e1"]  # the sender died: due again


def test_the_email_names_nobody_and_links_to_the_portal_in_chinese_by_default() -> None:
    msg = compose(to="li@example.com", sender="healthgov <noreply@healthgov.example>", lang="zh_CN",
                  portal_url="https://portal.example/", event_ids=["b", "a"])
    body = msg.get_content()
    assert "健康" in str(msg["Subject"]) and "https://portal.example/me#notices" in body
    assert msg["Message-ID"] == compose(to="x@example.com", sender="s@example.com", lang="en",
                                        portal_url="https://p", event_ids=["a", "b"])["Message-ID"]
    assert "gy-hosp" not in body and "break" not in body


def test_an_address_is_checked_normalised_and_sealed(contacts: Contacts) -> None:
    with pytest.raises(InvalidAddress):
        normalise_address("not an address")
    assert masked("li.wei@example.com") == "l***@example.com"
    contacts.set("li", "li@example.com", "en")
    with contacts.engine.connect() as c:
        raw = c.exec_driver_sql("select address_sealed from portal_contact").scalar_one()
    assert b"li@example.com" not in bytes(raw)
    assert contacts.get("li") == ("li@example.com", "en")
    contacts.remove("li")
    assert contacts.get("li") is None


def test_regulators_get_no_mail(contacts: Contacts) -> None:
    contacts.set("reg", "reg@example.com", "en")
    assert [who.username for who, *_ in contacts.patients()] == []
