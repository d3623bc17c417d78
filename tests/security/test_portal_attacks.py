"""Attacks on the portal in a browser's shoes: forged forms and password guessing.

SameSite cookies and the Origin check stop most cross-site posts, but not a
browser that sends no Origin, nor a same-site page; every form that changes
something must carry the session's synchroniser token. Sign-in must not let
anyone guess passwords at full speed: per account and per client address.
"""

from __future__ import annotations

import re
import uuid

import httpx
import pytest

from services.adapters.keys import PlatformKeys
from services.portal.accounts import Accounts
from services.portal.config import PortalSettings
from tests.conftest import auth

PASSWORD = "correct horse battery staple"
CSRF = re.compile(r'name="csrf_token" value="([^"]*)"')
GRANT = {"grantee": "gz-insurer-1", "purpose": "HPAYMT", "decision": "permit", "types": ["Condition"], "end": ""}


@pytest.fixture(scope="module")
def accounts(settings) -> Accounts:  # type: ignore[no-untyped-def]
    ps = PortalSettings()
    return Accounts(ps.store_url, PlatformKeys(ps.state_dir).portal_key())


def _address() -> dict[str, str]:
    """A client address of this test's own (the portal trusts X-Forwarded-For from its local proxy)."""
    host = uuid.uuid4().hex
    return {"X-Forwarded-For": f"2001:db8::{host[:4]}:{host[4:8]}:{host[8:12]}"}


def _browser(settings, **headers: str) -> httpx.Client:  # type: ignore[no-untyped-def]
    # English asked for explicitly (the portal speaks Chinese by default): the checks read its English wording.
    return httpx.Client(base_url=settings.portal_url, timeout=60, follow_redirects=True,
                        headers={"Accept-Language": "en", **headers})


def _sign_in(b: httpx.Client, username: str, password: str = PASSWORD) -> httpx.Response:
    form = CSRF.search(b.get("/").text)
    return b.post("/login", data={"username": username, "password": password,
                                  "csrf_token": form.group(1) if form else ""})


def _consents(settings, token, pid: str) -> list[dict]:  # type: ignore[no-untyped-def]
    r = httpx.get(f"{settings.records_url}/fhir/Consent", params={"patient": pid}, timeout=30,
                  headers=auth(token("healthgov-portal", role="patient", patient=pid, purpose="PATRQT")))
    assert r.status_code == 200, r.text
    return [e["resource"] for e in r.json().get("entry", [])]


def test_a_form_posted_without_the_sessions_token_changes_nothing(loaded, accounts, settings, token) -> None:  # type: ignore[no-untyped-def]
    pid = loaded["patient_ids"][6]
    username = f"csrf-{uuid.uuid4().hex[:8]}"
    accounts.create(username, PASSWORD, "patient", pid)
    before = len(_consents(settings, token, pid))
    with _browser(settings, **_address()) as b:
        page = _sign_in(b, username)
        assert page.status_code == 200 and "/me" in str(page.url)
        real = CSRF.search(page.text).group(1)  # type: ignore[union-attr]
        # Same site, no Origin header (as a same-site page's or some browsers' posts look): only the token tells.
        forged = [b.post("/me/consents", data=GRANT),
                  b.post("/me/consents", data={**GRANT, "csrf_token": "0" * 64}),
                  b.post("/me/erase", data={"confirm": "delete my records"}),
                  b.post("/logout")]
        assert [r.status_code for r in forged] == [403, 403, 403, 403]
        assert len(_consents(settings, token, pid)) == before
        assert b.get("/me").status_code == 200 and "/me" in str(b.get("/me").url)  # still signed in
        # The page's own token works: the check refuses forgeries, not the patient.
        genuine = b.post("/me/consents", data={**GRANT, "csrf_token": real})
        assert genuine.status_code == 200 and "Your choice is saved" in genuine.text


def test_a_sign_in_form_without_its_token_is_refused(accounts, settings) -> None:  # type: ignore[no-untyped-def]
    username = f"login-csrf-{uuid.uuid4().hex[:8]}"
    accounts.create(username, PASSWORD, "regulator", username)
    with _browser(settings, **_address()) as b:
        r = b.post("/login", data={"username": username, "password": PASSWORD}, follow_redirects=False)
        assert r.status_code == 403 and "healthgov_session" not in r.headers.get("set-cookie", "")
        assert _sign_in(b, username).status_code == 200


def test_password_guessing_against_one_account_is_throttled(accounts, settings) -> None:  # type: ignore[no-untyped-def]
    limit = PortalSettings().signin_account_failures
    username = f"guess-{uuid.uuid4().hex[:8]}"
    accounts.create(username, PASSWORD, "regulator", username)
    with _browser(settings, **_address()) as b:
        answers = [_sign_in(b, username, f"guess number {i}").status_code for i in range(limit)]
        assert answers == [401] * limit
        locked = _sign_in(b, username, PASSWORD)  # even the right password waits now
    assert locked.status_code == 429 and int(locked.headers["retry-after"]) > 0
    assert "Too many failed sign-ins" in locked.text
    # The lock is the account's, not only the address's: another address is refused too.
    with _browser(settings, **_address()) as other:
        assert _sign_in(other, username, PASSWORD).status_code == 429


def test_password_spraying_from_one_address_is_throttled(accounts, settings) -> None:  # type: ignore[no-untyped-def]
    limit = PortalSettings().signin_address_failures
    address = _address()
    username = f"spray-{uuid.uuid4().hex[:8]}"
    accounts.create(username, PASSWORD, "regulator", username)
    with _browser(settings, **address) as b:
        answers = [_sign_in(b, f"nobody-{i}-{uuid.uuid4().hex[:6]}", "Summer2026!").status_code for i in range(limit)]
        assert answers == [401] * limit
        r = _sign_in(b, username, PASSWORD)
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
    with _browser(settings, **_address()) as elsewhere:  # the same account from another address is fine
        assert _sign_in(elsewhere, username, PASSWORD).status_code == 200


def test_portal_pages_carry_nosniff(settings) -> None:  # type: ignore[no-untyped-def]
    with _browser(settings) as b:
        r = b.get("/")
    assert r.headers.get("x-content-type-options") == "nosniff"
    # same-origin, not the APIs' no-referrer: under no-referrer Chromium posts forms with Origin: null, which the
    # same-origin check refuses; same-origin still tells no other site where the patient came from.
    assert r.headers.get("referrer-policy") == "same-origin"
