"""Attacks on the trust model, end to end, by organisations holding real credentials.

- A write grants no read: a hospital that knows a patient's platform id cannot
  attach records to them, and records (even an Encounter) grant it nothing.
- Care comes from evidence: a hospital that identifies the patient by a
  national identifier and has a visit under way is in care, and the patient is
  told (a notice, and an audit event about them).
- Records are owned: nobody but the author updates a resource, and nobody moves
  it to another patient. Every refusal is a 403 OperationOutcome with its audit
  event.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import httpx

from services.cli import visits
from tests.conftest import auth, wait_for
from tests.integration.ingest.support import audit_event, condition, ingest, new_patient, read, wait_readable

A, B = "gy-hosp-001", "gy-hosp-002"
SSN = "http://hl7.org/fhir/sid/us-ssn"


def _ssn(patient: dict[str, Any]) -> str:
    return next(i["value"] for i in patient["identifier"] if i.get("system") == SSN)


def _registered(settings, token) -> tuple[dict[str, Any], dict[str, Any]]:  # type: ignore[no-untyped-def]
    """A patient of hospital A, in care there today, with one Condition A wrote."""
    patient, cond = new_patient(), None
    cond = condition(patient["id"])
    for resource in (patient, visits.visit(A, patient["id"]), cond):
        r = ingest(settings, token, f"/fhir/{resource['resourceType']}", json=resource)
        assert r.status_code == 201, r.text
    wait_readable(settings, token, "Condition", cond["id"], purpose="TREAT")
    return patient, cond


def _refusal(r: httpx.Response, settings, reason_text: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """A 403 OperationOutcome naming the reason, whose audit event is a denial of a write."""
    assert r.status_code == 403, r.text
    body = r.json()
    assert body["resourceType"] == "OperationOutcome"
    assert any(i["code"] == "forbidden" and reason_text in i["diagnostics"] for i in body["issue"]), body
    event = audit_event(settings, r.headers["X-Healthgov-Event-Id"])
    assert event["kind"] == "denial" and event["decision"]["allow"] is False
    assert event["details"]["action"] == "write"
    return event


def test_knowing_a_platform_id_attaches_nothing_and_grants_no_read(stack, settings, token) -> None:  # type: ignore[no-untyped-def]
    patient, cond = _registered(settings, token)
    pid = patient["id"]
    # B knows the platform id and pushes an Observation, then an Encounter under way, about the patient.
    obs = {"resourceType": "Observation", "id": str(uuid.uuid4()), "status": "final",
           "code": {"coding": [{"system": "http://loinc.org", "code": "8302-2"}]},
           "subject": {"reference": f"Patient/{pid}"}, "valueQuantity": {"value": 170, "unit": "cm"}}
    event = _refusal(ingest(settings, token, "/fhir/Observation", org=B, json=obs), settings, "has not registered")
    assert event["accessor"]["org"] == B and event["details"]["refused"] == {"patient_not_registered_by_hospital": 1}
    _refusal(ingest(settings, token, "/fhir/Encounter", org=B, json=visits.visit(B, pid)), settings,
             "has not registered")
    # ... and in NDJSON, line by line: the refused line is named, nothing of it is stored.
    r = ingest(settings, token, "/fhir/$import", org=B, content=httpx.Request("POST", "/", json=obs).content,
               headers={"Content-Type": "application/fhir+ndjson"})
    assert r.status_code == 403 and "line 1" in r.text, r.text
    # B reads nothing: no care relationship, whatever it wrote.
    r = read(settings, token, "Condition", cond["id"], org=B, purpose="TREAT")
    assert r.status_code == 403 and "no_care_relationship" in r.text, r.text
    r = httpx.get(f"{settings.records_url}/fhir/Patient/{pid}/$everything",
                  headers=auth(token(B, purpose="TREAT")), timeout=30)
    assert r.status_code == 403, r.text
    assert read(settings, token, "Observation", obs["id"]).status_code == 404  # A sees no trace of it either


def test_a_national_identifier_and_a_visit_today_put_a_second_hospital_in_care_and_the_patient_is_told(  # type: ignore[no-untyped-def]
        stack, settings, token) -> None:
    patient, cond = _registered(settings, token)
    pid = patient["id"]
    # A wrong SSN is no identification.
    wrong = {**visits.visit(B, pid), "subject": {"reference": f"Patient/{pid}",
                                                 "identifier": {"system": SSN, "value": "999-00-0000"}}}
    _refusal(ingest(settings, token, "/fhir/Encounter", org=B, json=wrong), settings, "has not registered")
    # The patient in front of B shows their national identifier: B may attach a visit, which is evidence of care.
    visit = {**visits.visit(B, pid), "subject": {"reference": f"Patient/{pid}",
                                                 "identifier": {"system": SSN, "value": _ssn(patient)}}}
    r = ingest(settings, token, "/fhir/Encounter", org=B, json=visit)
    assert r.status_code == 201, r.text
    got = wait_readable(settings, token, "Condition", cond["id"], org=B, purpose="TREAT")
    assert got["id"] == cond["id"]
    # The patient is told: a first-access notice naming B, and an audit event about them.
    pt = token("healthgov-portal", role="patient", patient=pid, purpose="PATRQT", sub="me")
    notices: list[dict[str, Any]] = []

    def told() -> bool:
        r = httpx.get(f"{settings.records_url}/notices", headers=auth(pt), timeout=30)
        assert r.status_code == 200, r.text
        notices[:] = [n for n in r.json()["notices"] if n["kind"] == "first_access"]
        return {n["org"] for n in notices} == {A, B}

    wait_for(told, 60, "first-access notices for both hospitals")
    mine = next(n for n in notices if n["org"] == B)
    event = audit_event(settings, mine["event_id"])
    assert event["kind"] == "care_relationship" and event["accessor"]["org"] == B
    assert datetime.fromisoformat(mine["at"]).astimezone(UTC).date() == datetime.now(UTC).date()
    # Nobody else reads the patient's notices.
    r = httpx.get(f"{settings.records_url}/notices", headers=auth(token(B, purpose="TREAT")), timeout=30)
    assert r.status_code == 403


def test_only_the_author_updates_a_resource_and_nobody_moves_it_to_another_patient(  # type: ignore[no-untyped-def]
        stack, settings, token) -> None:
    patient, cond = _registered(settings, token)
    # B registers a patient of its own, then PUTs A's Condition id, as its own record about its own patient.
    mine = new_patient()
    assert ingest(settings, token, "/fhir/Patient", org=B, json=mine).status_code == 201
    hijack = {**condition(mine["id"]), "id": cond["id"]}
    r = httpx.put(f"{settings.ingest_url}/fhir/Condition/{cond['id']}", json=hijack, timeout=30,
                  headers=auth(token(B, "ingest", role="integration")))
    _refusal(r, settings, "only its author may update it")
    # Inside a transaction Bundle the whole Bundle is refused, naming the entry.
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": condition(mine["id"]), "request": {"method": "POST", "url": "Condition"}},
        {"resource": hijack, "request": {"method": "PUT", "url": f"Condition/{cond['id']}"}}]}
    r = ingest(settings, token, "/fhir", org=B, json=bundle)
    event = _refusal(r, settings, "only its author may update it")
    assert "Bundle.entry[1]" in r.text and event["details"]["refused"] == {"not_resource_owner": 1}
    # The author itself cannot move its resource to another patient either.
    other = new_patient()
    assert ingest(settings, token, "/fhir/Patient", json=other).status_code == 201
    moved = {**cond, "subject": {"reference": f"Patient/{other['id']}"}}
    r = httpx.put(f"{settings.ingest_url}/fhir/Condition/{cond['id']}", json=moved, timeout=30,
                  headers=auth(token(A, "ingest", role="integration")))
    _refusal(r, settings, "cannot move a resource to another patient")
    # The resource is as A wrote it: version 1, A's, about A's patient.
    got = read(settings, token, "Condition", cond["id"]).json()
    assert got["meta"]["versionId"] == "1" and got["meta"]["source"] == A
    assert got["subject"]["reference"] == f"Patient/{patient['id']}"
    # The author may still update it.
    update = {**cond, "note": [{"text": "reviewed"}]}
    r = httpx.put(f"{settings.ingest_url}/fhir/Condition/{cond['id']}", json=update, timeout=30,
                  headers=auth(token(A, "ingest", role="integration")))
    assert r.status_code == 200, r.text


def test_a_permit_a_hospital_records_for_the_patient_waits_for_the_patient(stack, settings, token) -> None:  # type: ignore[no-untyped-def]
    """A hospital in care cannot sell the record: its permit to a data buyer is not in force until confirmed."""
    patient, cond = _registered(settings, token)
    pid = patient["id"]
    permit = {"resourceType": "Consent", "patient": {"reference": f"Patient/{pid}"}, "provision": {
        "type": "permit", "period": {"end": "2030-01-01"}, "purpose": [{"code": "HMARKT"}],
        "actor": [{"reference": {"reference": "Organization/gy-datamart"}}]}}
    r = httpx.post(f"{settings.records_url}/fhir/Consent", json=permit, timeout=30,
                   headers=auth(token(A, purpose="TREAT")))
    assert r.status_code in (201, 202), r.text
    consent = r.json()
    assert consent["status"] == "proposed"
    def buyer_reads() -> httpx.Response:
        return httpx.get(f"{settings.records_url}/fhir/Condition/{cond['id']}", timeout=30,
                         headers=auth(token("gy-datamart", purpose="HMARKT", role="analyst")))

    r = buyer_reads()
    assert r.status_code == 403 and "consent_awaiting_patient" in r.text, r.text
    # Only the patient confirms: the hospital cannot, and its attempt is an audited denial.
    r = httpx.post(f"{settings.records_url}/fhir/Consent/{consent['id']}/$confirm", timeout=30,
                   headers=auth(token(A, purpose="TREAT")))
    assert r.status_code == 403 and "confirm_only_by_patient" in r.text, r.text
    assert audit_event(settings, r.headers["X-Healthgov-Event-Id"])["kind"] == "denial"
    def patient() -> dict[str, str]:
        return auth(token("healthgov-portal", role="patient", patient=pid, purpose="PATRQT", sub="me"))

    r = httpx.post(f"{settings.records_url}/fhir/Consent/{consent['id']}/$confirm", headers=patient(), timeout=30)
    assert r.status_code == 200 and r.json()["status"] == "active", r.text
    r = httpx.post(f"{settings.records_url}/fhir/Consent/{consent['id']}/$confirm", headers=patient(), timeout=30)
    assert r.status_code == 409, r.text  # confirmed once; nothing is pending any more
    wait_for(lambda: buyer_reads().status_code == 200, 30, "the confirmed permit to come into force")
    # An opt-out the hospital records for the patient takes effect at once.
    opt_out = {"resourceType": "Consent", "patient": {"reference": f"Patient/{pid}"},
               "provision": {"type": "deny", "purpose": [{"code": "HMARKT"}]}}
    r = httpx.post(f"{settings.records_url}/fhir/Consent", json=opt_out, timeout=30,
                   headers=auth(token(A, purpose="TREAT")))
    assert r.status_code == 201 and r.json()["status"] == "active", r.text
    assert buyer_reads().status_code == 403
