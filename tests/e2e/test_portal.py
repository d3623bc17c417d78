"""The portal in a browser's shoes: sign in, see only your own records and access trail."""

from __future__ import annotations

import re
import uuid

import httpx
import pytest

from services.adapters.keys import PlatformKeys
from services.portal.accounts import Accounts
from services.portal.config import PortalSettings
from tests.conftest import auth, first_patient, wait_for

PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def accounts(settings) -> Accounts:
    ps = PortalSettings()
    return Accounts(ps.store_url, PlatformKeys(ps.state_dir).portal_key())


@pytest.fixture(scope="module")
def people(loaded, accounts: Accounts) -> dict[str, str]:
    tag = uuid.uuid4().hex[:6]
    alice, bob = loaded["patient_ids"][3], loaded["patient_ids"][4]
    accounts.create(f"alice-{tag}", PASSWORD, "patient", alice)
    accounts.create(f"bob-{tag}", PASSWORD, "patient", bob)
    accounts.create(f"inspector-{tag}", PASSWORD, "regulator", f"inspector-{tag}")
    return {"alice": f"alice-{tag}", "bob": f"bob-{tag}", "inspector": f"inspector-{tag}",
            "alice_id": alice, "bob_id": bob}


def browser(settings) -> httpx.Client:
    return httpx.Client(base_url=settings.portal_url, timeout=60, follow_redirects=True)


def sign_in(client: httpx.Client, username: str, password: str = PASSWORD) -> httpx.Response:
    return client.post("/login", data={"username": username, "password": password})


def test_wrong_password_and_unknown_user_are_refused_alike(people, settings) -> None:
    with browser(settings) as b:
        wrong = sign_in(b, people["alice"], "not the password at all")
        unknown = sign_in(b, "nobody-" + uuid.uuid4().hex, "not the password at all")
    assert wrong.status_code == unknown.status_code == 401
    assert "Wrong username or password" in wrong.text and "Wrong username or password" in unknown.text


def test_session_cookie_is_httponly_and_samesite_strict(people, settings) -> None:
    with httpx.Client(base_url=settings.portal_url, timeout=60) as b:
        r = sign_in(b, people["alice"])
    assert r.status_code == 303
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie


def test_cross_site_login_post_is_refused(people, settings) -> None:
    with browser(settings) as b:
        r = b.post("/login", data={"username": people["alice"], "password": PASSWORD},
                   headers={"Origin": "https://evil.example"})
    assert r.status_code == 403


def test_patient_sees_own_records_and_who_read_them_never_another_patients(
        people, token, settings, ten_patients) -> None:
    # A clinician reads Alice's record; the read must show up in Alice's trail.
    r = httpx.get(f"{settings.records_url}/fhir/Patient/{people['alice_id']}/$everything",
                  headers=auth(token("gy-hosp-001", sub="dr-zhang", purpose="TREAT")), timeout=60)
    assert r.status_code == 200
    event_id = r.headers["X-Healthgov-Event-Id"]

    def conditions_of(pid: str) -> set[str]:
        return {c["code"]["coding"][0]["display"] for c in ten_patients
                if c["resourceType"] == "Condition" and c["subject"]["reference"] == f"Patient/{pid}"}

    only_bob = conditions_of(people["bob_id"]) - conditions_of(people["alice_id"])
    with browser(settings) as b:
        assert sign_in(b, people["alice"]).status_code == 200

        def trail_shows_read() -> bool:
            return event_id in b.get("/me").text

        wait_for(trail_shows_read, 60, "the clinician's read in the patient's trail")
        page = b.get("/me").text
        assert "Guiyang First People" in page  # the reader, by name
        for display in conditions_of(people["alice_id"]):
            assert display.replace("'", "&#39;") in page
        for display in only_bob:
            assert display not in page
        # Verified once a signed checkpoint covers the read (checkpoints come every few seconds).
        wait_for(lambda: "Verified" in b.get(f"/receipts/{event_id}").text, 60, "a verifiable receipt")
        # The JSON views answer for the signed-in patient only.
        mine = b.get("/me/records.json").json()
        refs = {e["resource"].get("subject", {}).get("reference") for e in mine["entry"]}
        assert f"Patient/{people['bob_id']}" not in refs
        events = b.get("/me/access.json").json()["events"]
        assert events and all(e["patient"] == events[0]["patient"] for e in events)
    with browser(settings) as anonymous:
        assert anonymous.get("/me/records.json", follow_redirects=False).status_code == 401


def test_untrusted_record_text_is_escaped_in_the_page(accounts, token, settings) -> None:
    # A patient of our own (not from the fixtures, whose counts other tests compare).
    patient = {**first_patient(), "id": str(uuid.uuid4())}
    payload = "<script>alert('x')</script>"
    condition = {"resourceType": "Condition", "id": str(uuid.uuid4()),
                 "subject": {"reference": f"Patient/{patient['id']}"},
                 "code": {"text": payload}}
    for rtype, doc in (("Patient", patient), ("Condition", condition)):
        r = httpx.post(f"{settings.ingest_url}/fhir/{rtype}", json=doc, timeout=60,
                       headers=auth(token("gy-hosp-001", "ingest", role="integration")))
        assert r.status_code in (200, 201), r.text
    username = "carol-" + uuid.uuid4().hex[:6]
    accounts.create(username, PASSWORD, "patient", patient["id"])
    with browser(settings) as b:
        sign_in(b, username)
        wait_for(lambda: "alert(" in b.get("/me").text, 60, "the new condition")
        page = b.get("/me").text
    assert payload not in page
    assert "&lt;script&gt;" in page


def test_regulator_queries_the_trail_and_verifies_the_log(people, settings, token, loaded) -> None:
    denied = httpx.get(f"{settings.records_url}/fhir/Patient/{loaded['patient_ids'][0]}/$everything",
                       headers=auth(token("gy-hosp-003", purpose="TREAT")), timeout=60)
    assert denied.status_code == 403
    with browser(settings) as b:
        assert sign_in(b, people["inspector"]).status_code == 200
        wait_for(lambda: denied.headers["X-Healthgov-Event-Id"] in b.get("/regulator?kind=denial").text,
                 60, "the denial in the regulator's view")
        page = b.get("/regulator?kind=denial").text
        assert "no_care_relationship" in page
        assert not re.search(r'class="allowed">disclosure<', page)
        verified = b.post("/regulator/verify").text
    assert "signed checkpoints verify." in verified
    # A patient cannot open the regulator console.
    with browser(settings) as b:
        sign_in(b, people["alice"])
        assert "Regulator console" not in b.get("/regulator").text
