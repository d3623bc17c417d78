"""The consent registry on the running platform: grant, use, revoke; on behalf; opt-out.

Each test works on a patient of its own (ingested here by gy-hosp-001), so the
shared 10-patient set stays as the other tests expect it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import first_patient
from tests.integration.records.support import (
    DEPRESSION,
    HYPERTENSION,
    bearer,
    condition,
    encounter,
    fresh_patient,
    ingest,
    logged_event,
    permit,
)


@pytest.fixture
def patient(stack, token, settings) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """A new patient with an encounter, a plain condition and a PSY-labelled one."""
    p = fresh_patient(first_patient())
    pid = p["id"]
    plain, sensitive = condition(pid, HYPERTENSION, "2019-05-01"), condition(pid, DEPRESSION, "2020-02-01")
    ingest(settings, token, p, encounter(pid, "2020-02-01T09:00:00Z"), plain, sensitive)
    return {"id": pid, "plain": plain["id"], "sensitive": sensitive["id"]}


def as_patient(token, pid: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return bearer(token("healthgov-portal", role="patient", patient=pid, purpose="PATRQT"))


def as_insurer(token) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return bearer(token("gz-insurer-1", role="claims", purpose="HPAYMT"))


def test_an_insurer_is_denied_then_allowed_by_consent_then_denied_after_revocation(patient, token, settings) -> None:  # type: ignore[no-untyped-def]
    pid = patient["id"]
    with httpx.Client(base_url=settings.records_url, timeout=30) as c:
        before = c.get(f"/fhir/Condition?patient={pid}", headers=as_insurer(token))
        assert before.status_code == 403 and "no_consent" in before.text and "entry" not in before.json()

        granted = c.post("/fhir/Consent", json=permit(pid, "gz-insurer-1", "HPAYMT", ["Condition", "Encounter"]),
                         headers=as_patient(token, pid))
        assert granted.status_code == 201, granted.text
        consent = granted.json()
        assert consent["status"] == "active" and consent["meta"]["versionId"] == "1"
        assert granted.headers["Location"] == f"Consent/{consent['id']}/_history/1"

        during = c.get(f"/fhir/Condition?patient={pid}", headers=as_insurer(token))
        assert during.status_code == 200, during.text
        assert [e["resource"]["id"] for e in during.json()["entry"]] == [patient["plain"]]
        assert during.headers["X-Healthgov-Withheld"] == "1"  # the PSY condition: no label was consented
        assert patient["sensitive"] not in during.text
        assert c.get(f"/fhir/Encounter?patient={pid}", headers=as_insurer(token)).json()["total"] == 1
        not_covered = c.get(f"/fhir/Patient/{pid}", headers=as_insurer(token))
        assert not_covered.status_code == 403 and "consent_type_not_covered" in not_covered.text

        revoked = c.delete(f"/fhir/Consent/{consent['id']}", headers=as_patient(token, pid))
        assert revoked.status_code == 200, revoked.text
        assert revoked.json()["status"] == "inactive" and revoked.json()["meta"]["versionId"] == "2"

        after = c.get(f"/fhir/Condition?patient={pid}", headers=as_insurer(token))
        assert after.status_code == 403 and "consent_revoked" in after.text and "entry" not in after.json()

        history = c.get(f"/fhir/Consent/{consent['id']}/_history", headers=as_patient(token, pid)).json()
        assert [e["resource"]["status"] for e in history["entry"]] == ["inactive", "active"]

    for response, change in ((granted, "created"), (revoked, "revoked")):
        event = logged_event(settings, token, response.headers["X-Healthgov-Event-Id"])
        assert event["kind"] == "consent" and event["details"]["change"] == change
        assert event["details"]["grantees"] == ["gz-insurer-1"] and event["details"]["purposes"] == ["HPAYMT"]
        assert event["accessor"]["org"] == "healthgov-portal" and event["decision"]["allow"] is True
        assert pid not in json.dumps(event)  # the patient is a pseudonym in the log


def test_labels_are_released_only_as_consented(patient, token, settings) -> None:  # type: ignore[no-untyped-def]
    pid = patient["id"]
    with httpx.Client(base_url=settings.records_url, timeout=30) as c:
        r = c.post("/fhir/Consent", json=permit(pid, "gz-insurer-1", "HPAYMT", ["Condition"], labels=["PSY"]),
                   headers=as_patient(token, pid))
        assert r.status_code == 201, r.text
        got = c.get(f"/fhir/Condition?patient={pid}", headers=as_insurer(token))
        assert sorted(e["resource"]["id"] for e in got.json()["entry"]) == sorted(
            [patient["plain"], patient["sensitive"]])


def test_a_treating_hospital_records_a_consent_for_the_patient_and_the_patient_is_told(  # type: ignore[no-untyped-def]
        patient, token, settings) -> None:
    pid = patient["id"]
    with httpx.Client(base_url=settings.records_url, timeout=30) as c:
        stranger = c.post("/fhir/Consent", json=permit(pid, "gy-datamart", "HMARKT", ["Encounter"]),
                          headers=bearer(token("gy-hosp-002", purpose="TREAT")))
        assert stranger.status_code == 403 and "no_care_relationship" in stranger.text
        r = c.post("/fhir/Consent", json=permit(pid, "gy-datamart", "HMARKT", ["Encounter"]),
                   headers=bearer(token("gy-hosp-001", purpose="TREAT")))
        assert r.status_code == 201 and r.json()["status"] == "proposed", r.text
        pending = c.get(f"/fhir/Encounter?patient={pid}", headers=bearer(token("gy-datamart", role="analyst",
                                                                                 purpose="HMARKT")))
        assert pending.status_code == 403 and "consent_awaiting_patient" in pending.text  # until the patient says so
        confirmed = c.post(f"/fhir/Consent/{r.json()['id']}/$confirm", headers=as_patient(token, pid))
        assert confirmed.status_code == 200 and confirmed.json()["status"] == "active", confirmed.text
        got = c.get(f"/fhir/Encounter?patient={pid}", headers=bearer(token("gy-datamart", role="analyst",
                                                                             purpose="HMARKT")))
        assert got.status_code == 200, got.text
        (enc,) = [e["resource"] for e in got.json()["entry"]]
        assert enc["period"] == {"start": "2020", "end": "2020"}  # Safe Harbor: years only
        assert pid not in got.text and enc["subject"]["reference"].startswith("Patient/rp-")
    event = logged_event(settings, token, r.headers["X-Healthgov-Event-Id"])
    assert event["accessor"]["org"] == "gy-hosp-001"
    assert event["decision"]["obligations"]["notify_patient"] is True


def test_one_patient_cannot_grant_or_revoke_for_another(patient, token, settings) -> None:  # type: ignore[no-untyped-def]
    pid, other = patient["id"], "129c6ac7-8d06-89de-ad63-0204a93e76c3"
    with httpx.Client(base_url=settings.records_url, timeout=30) as c:
        mine = c.post("/fhir/Consent", json=permit(pid, "gz-insurer-1", "HPAYMT"), headers=as_patient(token, pid))
        assert mine.status_code == 201
        forged = c.post("/fhir/Consent", json=permit(pid, "gz-insurer-1", "HPAYMT"), headers=as_patient(token, other))
        assert forged.status_code == 403 and "not_own_records" in forged.text
        steal = c.delete(f"/fhir/Consent/{mine.json()['id']}", headers=as_patient(token, other))
        assert steal.status_code == 403
        peek = c.get(f"/fhir/Consent/{mine.json()['id']}", headers=as_patient(token, other))
        assert peek.status_code == 403 and "entry" not in peek.json() and "gz-insurer-1" not in peek.text
        still = c.get(f"/fhir/Consent/{mine.json()['id']}", headers=as_patient(token, pid)).json()
        assert still["status"] == "active" and still["meta"]["versionId"] == "1"


def test_a_bad_consent_is_refused_with_the_element_and_nothing_is_kept(patient, token, settings) -> None:  # type: ignore[no-untyped-def]
    pid = patient["id"]
    bad = permit(pid, "gz-insurer-1", "SHOPPING")
    with httpx.Client(base_url=settings.records_url, timeout=30) as c:
        r = c.post("/fhir/Consent", json=bad, headers=as_patient(token, pid))
        assert r.status_code == 400
        assert r.json()["issue"][0]["expression"] == ["Consent.provision.purpose[0]"]
        junk = c.post("/fhir/Consent", content=b"{not json", headers=as_patient(token, pid))
        assert junk.status_code == 400 and junk.json()["resourceType"] == "OperationOutcome"
        listed = c.get(f"/fhir/Consent?patient={pid}", headers=as_patient(token, pid))
        assert listed.status_code == 200 and listed.json()["total"] == 0


def test_an_opt_out_stops_research_but_not_the_treating_team(patient, token, settings, documents) -> None:  # type: ignore[no-untyped-def]
    pid = patient["id"]
    ethics = documents.ethics_approval(jti="irb-2026-17")
    research = bearer(token("gz-uni-research", role="researcher", purpose="HRESCH"), **{"X-Ethics-Approval": ethics})
    with httpx.Client(base_url=settings.records_url, timeout=30) as c:
        assert c.get(f"/fhir/Condition?patient={pid}", headers=research).status_code == 200
        opt_out = {"resourceType": "Consent", "patient": {"reference": f"Patient/{pid}"},
                   "provision": {"type": "deny", "purpose": [{"code": "HRESCH"}]}}
        assert c.post("/fhir/Consent", json=opt_out, headers=as_patient(token, pid)).status_code == 201
        research = bearer(token("gz-uni-research", role="researcher", purpose="HRESCH"),
                          **{"X-Ethics-Approval": ethics})
        denied = c.get(f"/fhir/Condition?patient={pid}", headers=research)
        assert denied.status_code == 403 and "patient_opted_out" in denied.text
        assert c.get(f"/fhir/Condition?patient={pid}", headers=bearer(token("gy-hosp-001", purpose="TREAT"))
                     ).status_code == 200


def test_consent_changes_on_the_broker_are_sealed(patient, token, settings) -> None:  # type: ignore[no-untyped-def]
    pid = patient["id"]
    r = httpx.post(f"{settings.records_url}/fhir/Consent", json=permit(pid, "gz-insurer-1", "HPAYMT"),
                   headers=as_patient(token, pid), timeout=30)
    assert r.status_code == 201
    segments = list(Path(settings.state_dir, "kafka", "data").glob("consent.changes.v1-*/*.log"))
    broker = b"".join(p.read_bytes() for p in segments)
    assert b"healthgov.consent.change.v1" in broker  # the changes really went through Kafka
    for secret in (pid.encode(), b"gz-insurer-1", b"HPAYMT", r.json()["id"].encode()):
        assert secret not in broker


def test_a_treating_hospital_lists_and_revokes_a_consent_it_recorded(patient, token, settings) -> None:  # type: ignore[no-untyped-def]
    pid = patient["id"]

    def hospital(org: str = "gy-hosp-001") -> dict[str, str]:
        return bearer(token(org, purpose="TREAT"))

    with httpx.Client(base_url=settings.records_url, timeout=30) as c:
        assert c.get(f"/fhir/Encounter?patient={pid}", headers=as_insurer(token)).status_code == 403
        r = c.post("/fhir/Consent", json=permit(pid, "gz-insurer-1", "HPAYMT", ["Encounter"]), headers=hospital())
        assert r.status_code == 201, r.text
        cid = r.json()["id"]
        assert c.get(f"/fhir/Encounter?patient={pid}", headers=as_insurer(token)).status_code == 403  # proposed
        assert c.post(f"/fhir/Consent/{cid}/$confirm", headers=as_patient(token, pid)).status_code == 200
        allowed = c.get(f"/fhir/Encounter?patient={pid}", headers=as_insurer(token))
        assert allowed.status_code == 200 and allowed.json()["total"] == 1, allowed.text

        listed = c.get(f"/fhir/Consent?patient={pid}", headers=hospital())
        assert listed.status_code == 200, listed.text
        assert [(e["resource"]["id"], e["resource"]["status"]) for e in listed.json()["entry"]] == [(cid, "active")]
        stranger = c.get(f"/fhir/Consent?patient={pid}", headers=hospital("gy-hosp-002"))
        assert stranger.status_code == 403 and cid not in stranger.text
        assert c.delete(f"/fhir/Consent/{cid}", headers=hospital("gy-hosp-002")).status_code == 403
        assert c.get(f"/fhir/Encounter?patient={pid}", headers=as_insurer(token)).status_code == 200  # still there

        revoked = c.delete(f"/fhir/Consent/{cid}", headers=hospital())
        assert revoked.status_code == 200, revoked.text
        # versions: 1 proposed by the hospital, 2 confirmed by the patient, 3 withdrawn
        assert revoked.json()["status"] == "inactive" and revoked.json()["meta"]["versionId"] == "3"
        after = c.get(f"/fhir/Encounter?patient={pid}", headers=as_insurer(token))
        assert after.status_code == 403 and "consent_revoked" in after.text and "entry" not in after.json()
        relisted = c.get(f"/fhir/Consent?patient={pid}", headers=hospital())
        assert [(e["resource"]["id"], e["resource"]["status"]) for e in relisted.json()["entry"]] == [(cid, "inactive")]
        mine = c.get(f"/fhir/Consent?patient={pid}", headers=as_patient(token, pid))  # the patient sees it too
        assert [e["resource"]["status"] for e in mine.json()["entry"]] == ["inactive"]
    event = logged_event(settings, token, revoked.headers["X-Healthgov-Event-Id"])
    assert event["kind"] == "consent" and event["details"]["change"] == "revoked"
    assert event["accessor"]["org"] == "gy-hosp-001" and event["decision"]["obligations"]["notify_patient"] is True
