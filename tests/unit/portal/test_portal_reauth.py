"""Re-authentication before erasure: the password again, counted for a short window of one session only."""

from __future__ import annotations

import os
import time
from pathlib import Path

from services.portal.accounts import Accounts
from services.portal.reauth import Reauthentication

PASSWORD = "long enough password"


def _accounts(tmp_path: Path) -> Accounts:
    accounts = Accounts(f"sqlite:///{tmp_path / 'portal.db'}", os.urandom(32))
    accounts.create("li", PASSWORD, "patient", "patient-li")
    accounts.create("wang", "another long password", "patient", "patient-wang")
    return accounts


def test_the_right_password_marks_this_session_only(tmp_path: Path) -> None:
    reauth = Reauthentication(_accounts(tmp_path), window_s=60)
    assert not reauth.recent("session-a")
    assert not reauth.confirm("session-a", "li", "wrong password")
    assert not reauth.confirm("session-a", "li", "another long password")  # another account's password
    assert not reauth.recent("session-a")
    assert reauth.confirm("session-a", "li", PASSWORD)
    assert reauth.recent("session-a") and not reauth.recent("session-b") and not reauth.recent(None)
    reauth.forget("session-a")
    assert not reauth.recent("session-a")


def test_the_mark_ends_with_its_window(tmp_path: Path) -> None:
    reauth = Reauthentication(_accounts(tmp_path), window_s=0.2)
    assert reauth.confirm("session-a", "li", PASSWORD)
    time.sleep(0.3)
    assert not reauth.recent("session-a")
