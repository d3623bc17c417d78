"""Refusals leave a trace, and a refusal says nothing about who is a patient here.

- A caller whose signature proves who they are, refused before any policy
  question (a suspended organisation, a patient claim signed by a hospital's
  key, a replayed token), is refused on the record: a denial audit event.
- An insurer asking for a person by identifier gets the same refusal whether
  or not the person is a patient, and both refusals are audited.
"""

from __future__ import annotations

import uuid

import httpx

from tests.conftest import auth
from tests.integration.ingest.support import audit_event
from tests.integration.records.support import MRN_SYSTEM

INSURER = "gz-insurer-1"


def _denial(r: httpx.Response, settings, reason: str) -> dict:  # type: ignore[no-untyped-def,type-arg]
    assert r.status_code == 403, r.text
    assert r.json()["resourceType"] == "OperationOutcome"
    event = audit_event(settings, r.headers["X-Healthgov-Event-Id"])
    assert event["kind"] == "denial" and reason in event["decision"]["reasons"], event
    return event


def test_a_suspended_organisation_is_refused_on_the_record(stack, settings, token, loaded) -> None:  # type: ignore[no-untyped-def]
    pid = loaded["patient_ids"][0]
    r = httpx.get(f"{settings.records_url}/fhir/Patient/{pid}/$everything", timeout=30,
                  headers=auth(token("gy-hosp-099", purpose="TREAT")))
    event = _denial(r, settings, "org_suspended")
    assert event["accessor"]["org"] == "gy-hosp-099"
    r = httpx.post(f"{settings.ingest_url}/fhir/Patient", json={"resourceType": "Patient"}, timeout=30,
                   headers=auth(token("gy-hosp-099", "ingest", role="integration")))
    _denial(r, settings, "org_suspended")


def test_a_patient_claim_signed_by_a_hospital_is_refused_on_the_record(stack, settings, token, loaded) -> None:  # type: ignore[no-untyped-def]
    pid = loaded["patient_ids"][0]
    forged = token("gy-hosp-002", patient=pid, role="patient", purpose="PATRQT")
    r = httpx.get(f"{settings.records_url}/fhir/Patient/{pid}/$everything", headers=auth(forged), timeout=30)
    event = _denial(r, settings, "patient_claim_not_from_portal")
    assert event["accessor"]["org"] == "gy-hosp-002"


def test_an_insurer_cannot_tell_a_patient_from_a_stranger(stack, settings, token, ten_patients, loaded) -> None:  # type: ignore[no-untyped-def]
    patient = next(r for r in ten_patients if r["id"] == loaded["patient_ids"][-1])
    ident = next(i for i in patient["identifier"] if i.get("system") == MRN_SYSTEM)
    known = f"{ident['system']}|{ident['value']}"
    stranger = f"{ident['system']}|{uuid.uuid4()}"
    answers = []
    for who in (known, stranger):
        r = httpx.get(f"{settings.records_url}/fhir/Patient", params={"identifier": who}, timeout=30,
                      headers=auth(token(INSURER, purpose="HPAYMT", role="claims")))
        event = _denial(r, settings, "no_consent")
        answers.append((r.status_code, r.json()["issue"][0]["diagnostics"], event["decision"]["reasons"]))
    assert answers[0] == answers[1]
