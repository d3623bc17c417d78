"""Who may write, idempotent resubmission and the ingest audit trail, on the running platform."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import httpx
import orjson

from services.adapters.auth import issue_token
from tests.integration.ingest.support import (
    assert_never_stored,
    audit_event,
    condition,
    ingest,
    new_patient,
    wait_readable,
)
from tests.integration.records.support import all_logged_events, settled_log_size
from tests.unit.ingest.hl7_messages import adt


def _bundle(patient: dict, cond: dict, identifier: str | None = None) -> dict:
    doc = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": f"urn:uuid:{r['id']}", "resource": r,
         "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}} for r in (patient, cond)]}
    if identifier:
        doc["identifier"] = {"system": "https://his.gy-hosp-001.example/bundles", "value": identifier}
    return doc


def ingest_events_since(settings, token, start: int) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    """The ingest events logged from index ``start`` on, once everything published so far is logged."""
    settled_log_size(settings, token)
    return [e for e in all_logged_events(settings, token, start=start) if e["kind"] == "ingest"]


def assert_one_ingest_event(events: list[dict[str, Any]], r: httpx.Response, body: bytes) -> dict[str, Any]:
    """Exactly one ingest event names the submission, and exactly one commits to the bytes sent."""
    submission = r.headers["X-Healthgov-Submission"]
    named = [e for e in events if e["request_id"] == submission or e["details"].get("submission") == submission]
    assert len(named) == 1, (submission, [e["event_id"] for e in named])
    sent = hashlib.sha256(body).hexdigest()
    assert sum(e["data_digest"] == sent for e in events) == 1, submission
    (event,) = named
    assert event["event_id"] == r.headers["X-Healthgov-Event-Id"] and event["data_digest"] == sent
    return event


def test_only_authenticated_hospitals_may_write(stack, token, keys, settings) -> None:
    patient = new_patient()
    pid = patient["id"]
    body = orjson.dumps(patient)
    replayed = token("gy-hosp-001", "ingest", role="integration")
    first = ingest(settings, token, "/fhir/Patient", content=body, tok=replayed)
    assert first.status_code == 201, first.text
    wait_readable(settings, token, "Patient", pid)
    other = new_patient()
    cases = {
        "replayed token": (replayed, 401),
        "wrong audience": (token("gy-hosp-001", "records", role="integration"), 401),
        "lifetime over 5 minutes": (token("gy-hosp-001", "ingest", role="integration", ttl_s=600), 401),
        "expired": (issue_token(org="gy-hosp-001", private_key=keys.org_signer("gy-hosp-001")[0], subject="his",
                                audience="ingest", role="integration", ttl_s=-30), 401),
        "signed with another org's key": (issue_token(org="gy-hosp-001", private_key=keys.org_signer("gy-hosp-002")[0],
                                                      subject="his", audience="ingest", role="integration"), 401),
        "public health is not a hospital": (token("gy-cdc", "ingest", role="integration"), 403),
        "insurer is not a hospital": (token("gz-insurer-1", "ingest", role="integration"), 403),
        "suspended hospital": (token("gy-hosp-099", "ingest", role="integration"), 403),
    }
    for what, (tok, status) in cases.items():
        r = ingest(settings, token, "/fhir/Patient", content=orjson.dumps(other), tok=tok)
        assert r.status_code == status, (what, r.status_code, r.text)
        assert r.json()["resourceType"] == "OperationOutcome", what
    denied = ingest(settings, token, "/fhir/Patient", content=orjson.dumps(other),
                    tok=token("gy-cdc", "ingest", role="integration")).json()
    assert "write_requires_hospital" in denied["issue"][0]["diagnostics"]  # OPA's reason
    no_token = httpx.post(f"{settings.ingest_url}/fhir/Patient", content=orjson.dumps(other), timeout=30)
    assert no_token.status_code == 401
    assert_never_stored(settings, token, other["id"], [("Patient", other["id"])])


def test_the_same_bundle_twice_is_stored_once_and_answered_the_same(stack, token, settings) -> None:
    patient = new_patient()
    cond = condition(patient["id"])
    doc = _bundle(patient, cond, identifier=str(uuid.uuid4()))
    body = orjson.dumps(doc)
    start = settled_log_size(settings, token)
    first = ingest(settings, token, "/fhir", content=body, headers={"Content-Type": "application/fhir+json"})
    second = ingest(settings, token, "/fhir", content=body, headers={"Content-Type": "application/fhir+json"})
    assert first.status_code == second.status_code == 200, (first.text, second.text)
    assert first.content == second.content
    for h in ("X-Healthgov-Submission", "X-Healthgov-Event-Id"):
        assert first.headers[h] == second.headers[h]
    assert second.headers["X-Healthgov-Replayed"] == "true"
    stored = wait_readable(settings, token, "Condition", cond["id"])
    assert stored["meta"]["versionId"] == "1"
    # Same key, different content: a sender bug, refused.
    changed = _bundle(patient, cond | {"onsetDateTime": "2020-01-01"}, identifier=doc["identifier"]["value"])
    assert ingest(settings, token, "/fhir", json=changed).status_code == 422
    # The Idempotency-Key header works the same for any request.
    key = str(uuid.uuid4())
    other = orjson.dumps(condition(patient["id"]))
    a = ingest(settings, token, "/fhir/Condition", content=other, headers={"Idempotency-Key": key})
    b = ingest(settings, token, "/fhir/Condition", content=other, headers={"Idempotency-Key": key})
    assert a.status_code == b.status_code == 201
    assert a.content == b.content
    for h in ("X-Healthgov-Submission", "X-Healthgov-Event-Id"):
        assert a.headers[h] == b.headers[h]
    assert b.headers["X-Healthgov-Replayed"] == "true"
    # Each submission was accounted for once, however often it was sent.
    events = ingest_events_since(settings, token, start)
    assert_one_ingest_event(events, second, body)
    assert_one_ingest_event(events, b, other)
    # Another hospital's key space is its own.
    theirs = new_patient()
    assert ingest(settings, token, "/fhir/Patient", json=theirs, org="gy-hosp-002").status_code == 201
    c = ingest(settings, token, "/fhir/Condition", json=condition(theirs["id"]), org="gy-hosp-002",
               headers={"Idempotency-Key": key})
    assert c.status_code == 201 and c.headers["X-Healthgov-Event-Id"] != a.headers["X-Healthgov-Event-Id"]


def test_idempotency_survives_an_ingest_restart(stack, token, settings) -> None:
    patient = new_patient()
    doc = _bundle(patient, condition(patient["id"]), identifier=str(uuid.uuid4()))
    first = ingest(settings, token, "/fhir", json=doc)
    assert first.status_code == 200
    stack.stop("ingest")
    stack.start("ingest")
    again = ingest(settings, token, "/fhir", json=doc)
    assert again.status_code == 200 and again.json() == first.json()
    assert again.headers["X-Healthgov-Event-Id"] == first.headers["X-Healthgov-Event-Id"]


def test_each_accepted_submission_has_one_ingest_audit_event(stack, token, settings) -> None:
    patient = new_patient()
    cond = condition(patient["id"])
    body = orjson.dumps(_bundle(patient, cond))
    start = settled_log_size(settings, token)
    r = ingest(settings, token, "/fhir", content=body, headers={"Content-Type": "application/fhir+json"})
    assert r.status_code == 200
    event = audit_event(settings, r.headers["X-Healthgov-Event-Id"])
    assert event["kind"] == "ingest"
    assert event["accessor"]["org"] == "gy-hosp-001" and event["accessor"]["org_type"] == "hospital"
    assert event["data_digest"] == hashlib.sha256(body).hexdigest()  # what the hospital sent, provably
    assert event["details"]["counts"] == {"Condition": 1, "Patient": 1}
    assert event["request_id"] == r.headers["X-Healthgov-Submission"]
    assert patient["id"] not in orjson.dumps(event).decode()  # counts and digests, no PHI
    # One resource, NDJSON and HL7 v2 are accounted for the same way: one event each.
    single = orjson.dumps(condition(patient["id"]))
    one = ingest(settings, token, "/fhir/Condition", content=single, headers={"Content-Type": "application/fhir+json"})
    assert one.status_code == 201, one.text
    lines = b"\n".join(orjson.dumps(x) for x in (condition(patient["id"]), condition(patient["id"])))
    bulk = ingest(settings, token, "/fhir/$import", content=lines, headers={"Content-Type": "application/fhir+ndjson"})
    assert bulk.status_code == 200, bulk.text
    mrn = "MRN-" + uuid.uuid4().hex[:10]
    message = adt("A01", control="C" + mrn, mrn=mrn).encode()
    hl7 = ingest(settings, token, "/hl7v2", content=message, headers={"Content-Type": "x-application/hl7-v2+er7"})
    assert hl7.status_code == 200 and "|AA|" in hl7.text, hl7.text
    events = ingest_events_since(settings, token, start)
    sent = [(r, body, "transaction", {"Condition": 1, "Patient": 1}), (one, single, "transaction", {"Condition": 1}),
            (bulk, lines, "ndjson", {"Condition": 2}), (hl7, message, "transaction", {"Encounter": 1, "Patient": 1})]
    for response, raw, kind, counts in sent:
        logged = assert_one_ingest_event(events, response, raw)
        assert logged["accessor"]["org"] == "gy-hosp-001"
        assert logged["details"]["kind"] == kind and logged["details"]["counts"] == counts, logged["details"]
    assert assert_one_ingest_event(events, hl7, message)["details"]["transport"] == "hl7v2"
