"""The portal in a browser's shoes: sign in, see only your own records and access trail."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
import pytest

from services.adapters.keys import PlatformKeys
from services.portal.accounts import Accounts
from services.portal.config import PortalSettings
from tests.conftest import auth, first_patient, wait_for
from tests.integration.records.support import HYPERTENSION, condition, encounter, fresh_patient, ingest, permit

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
    """A browser that asks for English: the portal speaks Chinese unless asked otherwise, and these tests read
    its English wording."""
    return httpx.Client(base_url=settings.portal_url, timeout=60, follow_redirects=True,
                        headers={"Accept-Language": "en"})


CSRF = re.compile(r'name="csrf_token" value="([^"]*)"')


def sign_in(client: httpx.Client, username: str, password: str = PASSWORD) -> httpx.Response:
    """Sign in as a browser does: the form (and its token) first; later posts carry the page's token."""
    form = CSRF.search(client.get("/").text)
    r = client.post("/login", data={"username": username, "password": password,
                                    "csrf_token": form.group(1) if form else ""})
    if page_token := CSRF.search(r.text):
        client.headers["X-CSRF-Token"] = page_token.group(1)
    return r


def test_wrong_password_and_unknown_user_are_refused_alike(people, settings) -> None:
    with browser(settings) as b:
        wrong = sign_in(b, people["alice"], "not the password at all")
        unknown = sign_in(b, "nobody-" + uuid.uuid4().hex, "not the password at all")
    assert wrong.status_code == unknown.status_code == 401
    assert "Wrong username or password" in wrong.text and "Wrong username or password" in unknown.text


def test_session_cookie_is_httponly_and_samesite_strict(people, settings) -> None:
    with httpx.Client(base_url=settings.portal_url, timeout=60, headers={"Accept-Language": "en"}) as b:
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
        assert re.search(r">referral</option>", page)  # every kind of audit event can be filtered on
        assert not re.search(r'class="allowed">disclosure<', page)
        verified = b.post("/regulator/verify").text
    assert "signed checkpoints verify." in verified
    # A patient cannot open the regulator console.
    with browser(settings) as b:
        sign_in(b, people["alice"])
        assert "Regulator console" not in b.get("/regulator").text


# --- who may use my data, and erasure --------------------------------------------------------

INSURER = "gz-insurer-1"
INSURER_NAME = "Guizhou Mutual Health Insurance"
EVIL = {"Origin": "https://evil.example"}


def as_insurer(token) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return auth(token(INSURER, role="claims", purpose="HPAYMT"))


def as_patient(token, pid: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return auth(token("healthgov-portal", role="patient", patient=pid, purpose="PATRQT"))


def new_patient(accounts: Accounts, settings, token) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """A patient of this test's own (never a shared demo patient), with an encounter, a condition and an account."""
    p = fresh_patient(first_patient())
    pid = p["id"]
    cond, enc = condition(pid, HYPERTENSION, "2019-05-01"), encounter(pid, "2020-02-01T09:00:00Z")
    ingest(settings, token, p, enc, cond)
    username = "pat-" + uuid.uuid4().hex[:8]
    accounts.create(username, PASSWORD, "patient", pid)
    return {"id": pid, "username": username, "condition": cond["id"], "encounter": enc["id"]}


def consents_of(settings, token, pid: str) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    r = httpx.get(f"{settings.records_url}/fhir/Consent", params={"patient": pid},
                  headers=as_patient(token, pid), timeout=60)
    assert r.status_code == 200, r.text
    return [e["resource"] for e in r.json().get("entry", [])]


def grant_form(**changes: Any) -> dict[str, Any]:
    form: dict[str, Any] = {"grantee": INSURER, "purpose": "HPAYMT", "decision": "permit", "types": ["Condition"],
                            "end": ""}
    form.update(changes)
    return {k: v for k, v in form.items() if v is not None}


def revoke_ids(page: str) -> list[str]:
    return re.findall(r'action="/me/consents/([^"/]+)/revoke"', page)


@pytest.fixture(scope="module")
def dana(accounts: Accounts, stack, settings, token) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """A patient with one consent to the insurer, made through records (not the portal)."""
    p = new_patient(accounts, settings, token)
    r = httpx.post(f"{settings.records_url}/fhir/Consent", json=permit(p["id"], INSURER, "HPAYMT", ["Encounter"]),
                   headers=as_patient(token, p["id"]), timeout=60)
    assert r.status_code == 201, r.text
    return {**p, "consent": r.json()["id"]}


def test_a_patient_allows_the_insurer_in_the_portal_then_withdraws_it(accounts, stack, settings, token) -> None:  # type: ignore[no-untyped-def]
    p = new_patient(accounts, settings, token)
    with httpx.Client(base_url=settings.records_url, timeout=60) as records, browser(settings) as b:
        before = records.get("/fhir/Condition", params={"patient": p["id"]}, headers=as_insurer(token))
        assert before.status_code == 403 and "no_consent" in before.text

        assert sign_in(b, p["username"]).status_code == 200
        granted = b.post("/me/consents", data=grant_form(types=["Condition"]))
        assert granted.status_code == 200 and "Your choice is saved" in granted.text
        assert INSURER_NAME in granted.text and "in force" in granted.text and "insurance claims" in granted.text
        (consent_id,) = revoke_ids(granted.text)
        (stored,) = consents_of(settings, token, p["id"])
        assert stored["id"] == consent_id and stored["provision"]["type"] == "permit"
        assert [c["code"] for c in stored["provision"]["class"]] == ["Condition"]
        assert stored["provision"]["period"]["end"] > "2026"  # a permission always has an end

        during = records.get("/fhir/Condition", params={"patient": p["id"]}, headers=as_insurer(token))
        assert during.status_code == 200, during.text
        assert [e["resource"]["id"] for e in during.json()["entry"]] == [p["condition"]]
        outside = records.get(f"/fhir/Encounter/{p['encounter']}", headers=as_insurer(token))
        assert outside.status_code == 403 and "consent_type_not_covered" in outside.text

        revoked = b.post(f"/me/consents/{consent_id}/revoke")
        assert revoked.status_code == 200 and "The permission is withdrawn" in revoked.text
        assert INSURER_NAME in revoked.text and "revoked" in revoked.text
        assert revoke_ids(revoked.text) == []  # nothing left to withdraw
        assert [c["status"] for c in consents_of(settings, token, p["id"])] == ["inactive"]

        after = records.get("/fhir/Condition", params={"patient": p["id"]}, headers=as_insurer(token))
        assert after.status_code == 403 and "consent_revoked" in after.text and "entry" not in after.json()


def test_a_refusal_made_in_the_portal_stops_research(accounts, stack, settings, token, documents) -> None:  # type: ignore[no-untyped-def]
    p = new_patient(accounts, settings, token)
    ethics = documents.ethics_approval()

    def research() -> httpx.Response:
        return httpx.get(f"{settings.records_url}/fhir/Condition", params={"patient": p["id"]}, timeout=60,
                         headers=auth(token("gz-uni-research", role="researcher", purpose="HRESCH"),
                                      **{"X-Ethics-Approval": ethics}))

    assert research().status_code == 200
    with browser(settings) as b:
        sign_in(b, p["username"])
        r = b.post("/me/consents", data=grant_form(grantee="gz-uni-research", purpose="HRESCH", decision="deny",
                                                   types=None))
        assert r.status_code == 200 and "Refused" in r.text and "until you withdraw it" in r.text
    (stored,) = consents_of(settings, token, p["id"])
    assert stored["provision"]["type"] == "deny" and "class" not in stored["provision"]
    denied = research()
    assert denied.status_code == 403 and "patient_opted_out" in denied.text


def test_a_patient_cannot_withdraw_another_patients_consent(accounts, dana, stack, settings, token) -> None:  # type: ignore[no-untyped-def]
    other = new_patient(accounts, settings, token)
    with browser(settings) as b:
        sign_in(b, other["username"])
        assert dana["consent"] not in b.get("/me").text
        r = b.post(f"/me/consents/{dana['consent']}/revoke")
        assert r.status_code == 404 and "not one of yours" in r.text and "nothing was changed" in r.text
        assert revoke_ids(r.text) == []
    (kept,) = consents_of(settings, token, dana["id"])
    assert kept["id"] == dana["consent"] and kept["status"] == "active" and kept["meta"]["versionId"] == "1"
    assert consents_of(settings, token, other["id"]) == []


def test_the_page_lists_a_consent_made_elsewhere_by_the_grantees_name(dana, settings) -> None:  # type: ignore[no-untyped-def]
    with browser(settings) as b:
        sign_in(b, dana["username"])
        page = b.get("/me").text
    assert INSURER_NAME in page and "insurance company" in page and "visits and hospital stays" in page
    assert revoke_ids(page) == [dana["consent"]]


def test_cross_site_posts_change_nothing(dana, settings, token) -> None:  # type: ignore[no-untyped-def]
    with browser(settings) as b:
        sign_in(b, dana["username"])
        attempts = [b.post("/me/consents", data=grant_form(), headers=EVIL),
                    b.post(f"/me/consents/{dana['consent']}/revoke", headers=EVIL),
                    b.post("/me/erase", data={"confirm": "delete my records"}, headers=EVIL)]
    assert [r.status_code for r in attempts] == [403, 403, 403]
    (kept,) = consents_of(settings, token, dana["id"])
    assert kept["status"] == "active" and kept["meta"]["versionId"] == "1"
    r = httpx.get(f"{settings.records_url}/fhir/Patient/{dana['id']}/$everything",
                  headers=as_patient(token, dana["id"]), timeout=60)
    assert r.status_code == 200
    # Without a session nothing happens either.
    with browser(settings) as anonymous:
        for path, form in (("/me/consents", grant_form()), (f"/me/consents/{dana['consent']}/revoke", {}),
                           ("/me/erase", {"confirm": "delete my records"})):
            r = anonymous.post(path, data=form, follow_redirects=False)
            assert r.status_code == 303 and r.headers["location"] == "/"
    assert len(consents_of(settings, token, dana["id"])) == 1


@pytest.mark.parametrize(("changes", "message"), [
    ({"grantee": None}, "Choose the organisation"),
    ({"grantee": "gy-hosp-001"}, "not one you can allow or refuse"),
    ({"grantee": "no-such-org"}, "not one you can allow or refuse"),
    ({"end": "2020-01-01"}, "The end date must be after today"),
    ({"end": "next week"}, "The end date is not a date"),
    ({"types": None}, "Tick at least one kind of record"),
    ({"types": ["Secret"]}, "Only the kinds of record in the list"),
    ({"purpose": "TREAT"}, "Choose what the organisation may use"),
    ({"decision": "maybe"}, "Choose whether you allow or refuse"),
])
def test_a_bad_form_says_what_to_fix_and_creates_nothing(dana, settings, token, changes, message) -> None:  # type: ignore[no-untyped-def]
    with browser(settings) as b:
        sign_in(b, dana["username"])
        r = b.post("/me/consents", data=grant_form(**changes))
    assert r.status_code == 400 and message in r.text
    assert [c["id"] for c in consents_of(settings, token, dana["id"])] == [dana["consent"]]


def test_erasure_needs_the_password_again_and_the_phrase_then_records_are_gone(  # type: ignore[no-untyped-def]
        accounts, stack, settings, token) -> None:
    p = new_patient(accounts, settings, token)
    everything = f"{settings.records_url}/fhir/Patient/{p['id']}/$everything"
    with browser(settings) as b:
        sign_in(b, p["username"])
        form = b.get("/me/erase").text
        assert 'type <strong>delete my records</strong>' in form and 'name="password"' in form
        # A session alone is not enough: without the password again, or with a wrong one, nothing goes.
        for password in ("", "not my password"):
            r = b.post("/me/erase", data={"confirm": "delete my records", "password": password})
            assert r.status_code == 401 and "Nothing was deleted" in r.text
        for wrong in ("", "delete", "keep my records"):
            r = b.post("/me/erase", data={"confirm": wrong, "password": PASSWORD})
            assert r.status_code == 400 and "Nothing was deleted" in r.text
        # The password confirmed a moment ago counts within the window: it is not asked for again.
        assert 'name="password"' not in b.get("/me/erase").text
        assert httpx.get(everything, headers=as_patient(token, p["id"]), timeout=60).status_code == 200

        erased = b.post("/me/erase", data={"confirm": "  Delete my records "})
        assert erased.status_code == 200 and "Your records are erased" in erased.text
        assert "Allow or refuse an organisation" not in erased.text
        assert b.get("/me/records.json").status_code == 410
    gone = httpx.get(everything, headers=as_patient(token, p["id"]), timeout=60)
    assert gone.status_code == 410 and p["condition"] not in gone.text
    doctor = httpx.get(f"{settings.records_url}/fhir/Condition/{p['condition']}",
                       headers=auth(token("gy-hosp-001", purpose="TREAT")), timeout=60)
    assert doctor.status_code == 410


def test_a_patient_is_told_who_gained_access_and_confirms_what_the_hospital_recorded(  # type: ignore[no-untyped-def]
        people, token, settings) -> None:
    """The notices section names the hospital that began treating the patient; a permit the hospital
    recorded for them waits, in words, until the patient confirms it in the page."""
    pid = people["alice_id"]
    r = httpx.post(f"{settings.records_url}/fhir/Consent", json=permit(pid, "gz-insurer-1", "HPAYMT"), timeout=30,
                   headers=auth(token("gy-hosp-001", purpose="TREAT")))
    assert r.status_code in (201, 202) and r.json()["status"] == "proposed", r.text
    cid = r.json()["id"]
    with browser(settings) as b:
        assert sign_in(b, people["alice"]).status_code == 200
        page = b.get("/me").text
        notices = page[page.index('id="notices"'):page.index('id="consents"')]
        assert "Guiyang First People" in notices and "began treating you" in notices  # today's visit
        assert "not in force until you confirm" in page and f"/me/consents/{cid}/confirm" in page
        forged = b.post(f"/me/consents/{cid}/confirm", data={"csrf_token": "forged"},
                        headers={"X-CSRF-Token": "forged"})
        assert forged.status_code == 403  # a cross-site page cannot confirm for the patient
        done = b.post(f"/me/consents/{cid}/confirm", data={"csrf_token": b.headers["X-CSRF-Token"]})
        assert done.status_code == 200 and "You confirmed the permission" in done.text, done.text
    got = httpx.get(f"{settings.records_url}/fhir/Consent/{cid}", timeout=30,
                    headers=auth(token("healthgov-portal", role="patient", patient=pid, purpose="PATRQT")))
    assert got.json()["status"] == "active"


def test_a_patient_lets_a_hospital_treat_them(people, token, settings) -> None:  # type: ignore[no-untyped-def]
    pid = people["bob_id"]

    def hospital_reads() -> int:
        return httpx.get(f"{settings.records_url}/fhir/Patient/{pid}", timeout=30,
                         headers=auth(token("gy-hosp-003", purpose="TREAT"))).status_code

    assert hospital_reads() == 403
    with browser(settings) as b:
        assert sign_in(b, people["bob"]).status_code == 200
        bad = b.post("/me/care", data={"hospital": "gy-police", "csrf_token": b.headers["X-CSRF-Token"]})
        assert bad.status_code == 400 and "Choose a hospital" in bad.text
        ok = b.post("/me/care", data={"hospital": "gy-hosp-003", "csrf_token": b.headers["X-CSRF-Token"]})
        assert ok.status_code == 200 and "may now treat you" in ok.text, ok.text
    assert hospital_reads() == 200
