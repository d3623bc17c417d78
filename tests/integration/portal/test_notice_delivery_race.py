"""Two portal processes mailing notices from one PostgreSQL never send the same notice twice.

Each worker claims an account's due notices with a conditional UPDATE (pending -> sending); under
PostgreSQL's row locks the loser of a race re-reads the row, sees it taken and skips it. Here two
workers, each with its own engine as two processes would have, run their rounds at the same moments
over the same accounts; every notice must be claimed, and so mailed, exactly once.
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

import pytest

from services.adapters.config import PlatformSettings
from services.portal.accounts import Accounts, Principal
from services.portal.notify import Contacts, DeliveryWorker
from tests.integration.databases import owner_url_of, scratch_database

ACCOUNTS = 12
NOTICES = 4
ROUNDS = 6
T0 = datetime.now(UTC)


class Relay:
    def __init__(self) -> None:
        self.sent: list[EmailMessage] = []

    def send(self, message: EmailMessage) -> None:
        self.sent.append(message)


@pytest.fixture
def portal_db() -> Iterator[str]:
    with scratch_database(owner_url_of(PlatformSettings()), "hg_portal_t") as url:
        yield url


def test_two_workers_racing_mail_each_notice_once(portal_db: str) -> None:
    account_key, contact_key = os.urandom(32), os.urandom(32)
    setup = Accounts(portal_db, account_key)
    first = Contacts(setup, contact_key)
    for i in range(ACCOUNTS):
        setup.create(f"p{i}", "long enough password", "patient", f"patient-{i}")
        first.set(f"p{i}", f"p{i}@example.org", "zh_CN", now=T0 - timedelta(minutes=1))
    inbox = {f"patient-{i}": [{"kind": "break_glass", "org": "gy-hosp-002", "event_id": f"e{i}-{n}",
                               "at": T0.isoformat(), "visible_from": T0.isoformat()} for n in range(NOTICES)]
             for i in range(ACCOUNTS)}

    def notices(who: Principal) -> list[dict[str, Any]]:
        return inbox[who.subject]

    claimed: list[tuple[str, str]] = []
    lock = threading.Lock()
    workers, relays = [], []
    for _ in range(2):  # two processes: their own engines over the one database
        contacts = Contacts(Accounts(portal_db, account_key), contact_key)
        claim = contacts.claim

        def recording(username: str, now: datetime, claim: Any = claim) -> list[str]:
            got = claim(username, now)
            with lock:
                claimed.extend((username, e) for e in got)
            return got

        contacts.claim = recording  # type: ignore[method-assign]
        relay = Relay()
        relays.append(relay)
        workers.append(DeliveryWorker(contacts, notices, relay, sender="healthgov <noreply@healthgov.example>",
                                      portal_url="https://portal.example", clock=lambda: T0 + timedelta(seconds=1)))
    start = threading.Barrier(2)

    def rounds(w: DeliveryWorker) -> None:
        for _ in range(ROUNDS):
            start.wait(timeout=60)
            w.run_once()

    threads = [threading.Thread(target=rounds, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    twice = [k for k, n in Counter(claimed).items() if n > 1]
    assert not twice, f"notices mailed twice: {twice[:5]}"
    assert len(claimed) == ACCOUNTS * NOTICES  # and none left out
    assert all(d.state == "sent" for i in range(ACCOUNTS) for d in first.deliveries(f"p{i}").values())
    assert sum(len(r.sent) for r in relays) >= ACCOUNTS  # at least one e-mail per account, more only if split
