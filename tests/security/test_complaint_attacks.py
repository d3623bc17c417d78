"""Attacks on "report this access": nobody complains about another patient's event or reads their reports.

Against the real stack: the oversight API with forged-but-valid tokens of other callers, and the portal with
one patient's session aimed at another patient's event.
"""

from __future__ import annotations

import uuid

import httpx
import pytest

from services.adapters.keys import PlatformKeys
from services.portal.accounts import Accounts
from services.portal.config import PortalSettings
from tests.conftest import auth, wait_for
from tests.e2e.test_complaints import (
    as_patient,
    browser,
    patient_with_break_glass,
    regulator,
    sign_in,
)


@pytest.fixture(scope="module")
def portal_accounts() -> Accounts:
    ps = PortalSettings()
    return Accounts(ps.store_url, PlatformKeys(ps.state_dir).portal_key())


@pytest.fixture(scope="module")
def two(loaded, settings, token, portal_accounts):  # type: ignore[no-untyped-def]
    """Two patients, each read in an emergency; the first has reported theirs."""
    a = patient_with_break_glass(settings, token, portal_accounts)
    b = patient_with_break_glass(settings, token, portal_accounts)
    url = f"{settings.oversight_url}/complaints"

    def filed() -> bool:
        r = httpx.post(url, json={"event_id": b["event"], "reason": "B's own report"},
                       headers=as_patient(token, b["id"]), timeout=30)
        return r.status_code == 201

    wait_for(filed, 60, "oversight to know the second patient's access")
    return {"a": a, "b": b}


def test_a_patient_cannot_report_another_patients_access(two, settings, token) -> None:  # type: ignore[no-untyped-def]
    a, b = two["a"], two["b"]
    r = httpx.post(f"{settings.oversight_url}/complaints", json={"event_id": b["event"], "reason": "not mine"},
                   headers=as_patient(token, a["id"]), timeout=30)
    assert r.status_code == 403 and "not_own_audit_events" in r.text
    # An event nobody has is refused the same way: no oracle for whose events exist.
    unknown = httpx.post(f"{settings.oversight_url}/complaints", timeout=30, headers=as_patient(token, a["id"]),
                         json={"event_id": str(uuid.uuid4()), "reason": "guess"})
    assert unknown.status_code == 403 and unknown.json()["detail"] == r.json()["detail"]
    queue = httpx.get(f"{settings.oversight_url}/complaints", params={"state": "all", "per_page": 500},
                      headers=regulator(token), timeout=30).json()["complaints"]
    assert [c["reason"] for c in queue if c["event_id"] == b["event"]] == ["B's own report"]


def test_a_hospital_cannot_file_a_report_in_a_patients_name(two, settings, token) -> None:  # type: ignore[no-untyped-def]
    r = httpx.post(f"{settings.oversight_url}/complaints", json={"event_id": two["b"]["event"], "reason": "x"},
                   headers=auth(token("gy-hosp-002", "oversight")), timeout=30)
    assert r.status_code == 403 and "complaint_only_by_patient" in r.text


def test_a_patient_reads_only_their_own_reports(two, settings, token) -> None:  # type: ignore[no-untyped-def]
    a, b = two["a"], two["b"]
    mine = httpx.get(f"{settings.oversight_url}/complaints/mine", headers=as_patient(token, a["id"]), timeout=30)
    assert mine.status_code == 200 and mine.json() == {"complaints": []}
    theirs = httpx.get(f"{settings.oversight_url}/complaints/mine", headers=as_patient(token, b["id"]), timeout=30)
    assert [c["event_id"] for c in theirs.json()["complaints"]] == [b["event"]]
    # The regulator's queue is not a patient's to read.
    queue = httpx.get(f"{settings.oversight_url}/complaints", headers=as_patient(token, a["id"]), timeout=30)
    assert queue.status_code == 403
    # Nor a hospital's.
    assert httpx.get(f"{settings.oversight_url}/complaints", headers=auth(token("gy-hosp-002", "oversight")),
                     timeout=30).status_code == 403


def test_the_portal_will_not_report_another_patients_access(two, settings, token) -> None:  # type: ignore[no-untyped-def]
    a, b = two["a"], two["b"]
    with browser(settings) as client:
        sign_in(client, a["username"])
        assert client.get(f"/me/complaints/new?event={b['event']}").status_code == 404
        page = client.get(f"/me/complaints/new?event={a['event']}")
        csrf = page.text.split('name="csrf_token" value="')[1].split('"')[0]
        r = client.post("/me/complaints", data={"event": b["event"], "reason": "not mine", "csrf_token": csrf})
        assert r.status_code == 404
        assert "B's own report" not in client.get("/me/complaints").text
    theirs = httpx.get(f"{settings.oversight_url}/complaints/mine", headers=as_patient(token, b["id"]), timeout=30)
    assert len(theirs.json()["complaints"]) == 1
