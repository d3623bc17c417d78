"""Failure paths on the real stack: OPA down, Kafka down, a full restart.

These tests stop and start real components, so they run last (file order) and
always bring the component back, even when an assertion fails.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter

import httpx

from services.cli import visits
from tests.conftest import auth, clinician_counts, first_patient, wait_for
from tests.security.test_smart_backend import assertion, grant


def _audit_size(settings) -> int:
    return httpx.get(f"{settings.audit_url}/healthz", timeout=10).json()["size"]


def test_with_opa_stopped_a_read_is_denied(loaded, stack, token, settings) -> None:
    pid = loaded["patient_ids"][0]
    stack.stop("opa")
    try:
        r = httpx.get(f"{settings.records_url}/fhir/Patient/{pid}/$everything",
                      headers=auth(token("gy-hosp-001", purpose="TREAT")), timeout=30)
        assert r.status_code == 403
        assert "policy_engine_unavailable" in r.text
        assert "entry" not in r.json()
        event_id = r.headers["X-Healthgov-Event-Id"]
    finally:
        stack.start("opa")
    # The denial itself is on the audit log.
    wait_for(lambda: httpx.get(f"{settings.audit_url}/proofs/inclusion",
                               params={"event_id": event_id, "size": _audit_size(settings)},
                               timeout=10).status_code == 200, 60, "the denial event in the log")


def test_with_kafka_stopped_a_read_discloses_nothing(loaded, stack, token, settings, keys) -> None:
    pid = loaded["patient_ids"][0]
    stack.stop("kafka")
    try:
        r = httpx.get(f"{settings.records_url}/fhir/Patient/{pid}/$everything",
                      headers=auth(token("gy-hosp-001", purpose="TREAT")), timeout=60)
        assert r.status_code == 503
        assert r.headers["Retry-After"]
        assert "entry" not in r.json() and pid not in r.text
        # Ingest does not acknowledge what it could not make durable.
        patient = first_patient()
        w = httpx.post(f"{settings.ingest_url}/fhir/Patient", json=patient, timeout=60,
                       headers=auth(token("gy-hosp-001", "ingest", role="integration")))
        assert w.status_code == 503
        assert w.headers["Retry-After"]
        # Nor is a research client given an access token whose issue could not be audited.
        t = grant(settings, assertion(keys, settings=settings))
        assert t.status_code == 503 and t.headers["Retry-After"], t.text
        assert "access_token" not in t.json()
    finally:
        stack.start("kafka")


def test_restart_loses_nothing_that_was_acknowledged(loaded, stack, token, settings) -> None:
    # A new patient with a condition, acknowledged just before a full restart.
    patient = first_patient()
    pid = patient["id"] = str(uuid.uuid4())
    condition = {
        "resourceType": "Condition", "id": str(uuid.uuid4()),
        "subject": {"reference": f"Patient/{pid}"},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "38341003",
                             "display": "Hypertension"}]},
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                       "code": "active"}]},
    }
    visit = visits.visit("gy-hosp-001", pid)
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": f"urn:uuid:{pid}", "resource": patient,
         "request": {"method": "PUT", "url": f"Patient/{pid}"}},
        {"resource": condition, "request": {"method": "PUT", "url": f"Condition/{condition['id']}"}},
        {"resource": visit, "request": {"method": "PUT", "url": f"Encounter/{visit['id']}"}},  # care, today
    ]}
    r = httpx.post(f"{settings.ingest_url}/fhir", json=bundle, timeout=60,
                   headers=auth(token("gy-hosp-001", "ingest", role="integration")))
    assert r.status_code == 200, r.text
    audit_before = _audit_size(settings)
    stack.down()
    started = time.monotonic()
    stack.up()
    print(f"\nrestart took {time.monotonic() - started:.1f}s")

    def acknowledged_data_back() -> bool:
        try:
            return (clinician_counts(token, settings, [pid]) - Counter()).get("Condition") == 1
        except (AssertionError, httpx.HTTPError):
            return False

    wait_for(acknowledged_data_back, 180, "the acknowledged transaction after restart")
    assert clinician_counts(token, settings, loaded["patient_ids"]) == loaded["expected"]
    r = httpx.get(f"{settings.records_url}/fhir/Condition/{condition['id']}",
                  headers=auth(token("gy-hosp-001", purpose="TREAT")), timeout=30)
    assert r.status_code == 200 and r.json()["code"]["coding"][0]["code"] == "38341003"
    assert _audit_size(settings) >= audit_before
