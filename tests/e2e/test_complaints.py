"""A patient reports an access; the regulator sees it in the oversight console, answers, and the log has both.

The patient files through the portal (as the browser form does); the regulator reads and answers through the
portal's oversight console; the oversight API, the audit log and the patient's own list are checked on the
real stack. The patient's words never reach the audit log: it keeps their SHA-256.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from typing import Any

import httpx
import pytest

from services.adapters.keys import PlatformKeys
from services.portal.accounts import Accounts
from services.portal.config import PortalSettings
from tests.conftest import auth, first_patient, wait_for
from tests.integration.records.support import HYPERTENSION, condition, encounter, fresh_patient, ingest

PASSWORD = "correct horse battery staple"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
REASON = "我那天没有去过这家医院 (I was never at this hospital that day)"


@pytest.fixture(scope="module")
def portal_accounts() -> Accounts:
    ps = PortalSettings()
    return Accounts(ps.store_url, PlatformKeys(ps.state_dir).portal_key())


def regulator(token: Any) -> dict[str, str]:
    return auth(token("gz-nhc", "oversight", role="regulator", purpose="HCOMPL"))


def as_patient(token: Any, pid: str) -> dict[str, str]:
    return auth(token("healthgov-portal", "oversight", sub="patient", role="patient", patient=pid, purpose="PATRQT"))


def browser(settings: Any) -> httpx.Client:
    host = uuid.uuid4().hex
    return httpx.Client(base_url=settings.portal_url, timeout=60, follow_redirects=True,
                        headers={"Accept-Language": "en", "X-Forwarded-For": f"2001:db8::{host[:4]}:{host[4:8]}"})


def sign_in(b: httpx.Client, username: str) -> httpx.Response:
    form = CSRF.search(b.get("/").text)
    return b.post("/login", data={"username": username, "password": PASSWORD,
                                  "csrf_token": form.group(1) if form else ""})


def patient_with_break_glass(settings: Any, token: Any, accounts: Accounts) -> dict[str, str]:
    """A patient of this test's own, read in an emergency by gy-hosp-002, with a portal account."""
    p = fresh_patient(first_patient())
    ingest(settings, token, p, encounter(p["id"], "2020-02-01T09:00:00Z"), condition(p["id"], HYPERTENSION,
                                                                                      "2019-05-01"))
    r = httpx.get(f"{settings.records_url}/fhir/Patient/{p['id']}", timeout=60,
                  headers=auth(token("gy-hosp-002", sub="dr-li", purpose="ETREAT"),
                               **{"X-Break-Glass-Reason": "unconscious in ER"}))
    assert r.status_code == 200, r.text
    username = "cmp-" + uuid.uuid4().hex[:8]
    accounts.create(username, PASSWORD, "patient", p["id"])
    return {"id": p["id"], "username": username, "event": r.headers["X-Healthgov-Event-Id"]}


def file_through_portal(settings: Any, patient: dict[str, str], reason: str = REASON) -> httpx.Response:
    with browser(settings) as b:
        sign_in(b, patient["username"])
        form = b.get(f"/me/complaints/new?event={patient['event']}")
        assert form.status_code == 200, form.text
        token = CSRF.search(form.text).group(1)  # type: ignore[union-attr]
        return b.post("/me/complaints", data={"event": patient["event"], "reason": reason, "csrf_token": token})


def test_a_report_reaches_the_regulator_who_answers_and_both_are_in_the_log(  # type: ignore[no-untyped-def]
        loaded, settings, token, portal_accounts) -> None:
    p = patient_with_break_glass(settings, token, portal_accounts)

    def filed() -> bool:  # oversight must have consumed the access from the audit topic first
        r = file_through_portal(settings, p)
        return r.status_code == 200 and "sent to the health regulator" in r.text

    wait_for(filed, 60, "the report to be accepted")
    queue = httpx.get(f"{settings.oversight_url}/complaints", headers=regulator(token), timeout=30).json()
    (mine,) = [c for c in queue["complaints"] if c["event_id"] == p["event"]]
    assert mine["state"] == "open" and mine["reason"] == REASON and mine["hospital"] == "gy-hosp-002"
    assert mine["event_kind"] == "break_glass" and p["id"] not in str(mine)  # a pseudonym, never the id

    # The regulator answers in the oversight console.
    regulator_name = f"inspector-{uuid.uuid4().hex[:6]}"
    portal_accounts.create(regulator_name, PASSWORD, "regulator", regulator_name)
    with browser(settings) as b:
        sign_in(b, regulator_name)
        console = b.get("/oversight/complaints")
        assert console.status_code == 200 and REASON in console.text and f"complaint-{mine['id']}" in console.text
        token_ = CSRF.search(console.text).group(1)  # type: ignore[union-attr]
        answered = b.post(f"/oversight/complaints/{mine['id']}",
                          data={"answer": "The hospital confirmed a mix-up; it has been corrected.",
                                "csrf_token": token_})
        assert answered.status_code == 200 and "recorded in the audit log" in answered.text
        assert "Answered" in b.get("/oversight/complaints?state=answered").text
    again = httpx.post(f"{settings.oversight_url}/complaints/{mine['id']}/answer", headers=regulator(token),
                       json={"answer": "twice"}, timeout=30)
    assert again.status_code == 409
    hospital = httpx.post(f"{settings.oversight_url}/complaints/{mine['id']}/answer", timeout=30,
                          headers=auth(token("gy-hosp-002", "oversight")), json={"answer": "nothing happened"})
    assert hospital.status_code == 403 and "complaint_answer_not_permitted" in hospital.text

    # The patient sees the answer.
    with browser(settings) as b:
        sign_in(b, p["username"])
        listed = b.get("/me/complaints").text
    assert "answered" in listed and "mix-up" in listed and REASON in listed

    # Both acts are in the audit log, with the words' digests only.
    def logged() -> list[dict[str, Any]]:
        audit = auth(token("gz-nhc", "audit", role="regulator", purpose="HCOMPL"))  # a token is used once
        r = httpx.get(f"{settings.audit_url}/events", params={"kind": "complaint", "limit": 1000}, headers=audit,
                      timeout=30)
        return [e for e in r.json()["events"] if e["details"].get("complaint") == mine["id"]]

    wait_for(lambda: len(logged()) == 2, 60, "the report and its answer in the audit log")
    events = logged()
    assert {e["details"]["state"] for e in events} == {"open", "answered"}
    filed_event = next(e for e in events if e["details"]["state"] == "open")
    assert filed_event["details"]["reason_sha256"] == hashlib.sha256(REASON.encode()).hexdigest()
    assert REASON not in str(events) and "mix-up" not in str(events)
