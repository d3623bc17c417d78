"""The FHIR front door on the running platform: Bundles, single resources, bad input answered, nothing lost."""

from __future__ import annotations

import socket
import uuid

import httpx
import orjson

from tests.integration.ingest.support import (
    assert_never_stored,
    condition,
    ingest,
    new_patient,
    read,
    wait_readable,
)


def _transaction(*resources: dict, urn: bool = True) -> dict:
    return {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": f"urn:uuid:{r['id']}" if urn else None, "resource": r,
         "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}} for r in resources]}


def test_a_transaction_is_stored_with_its_references_resolved(stack, token, settings) -> None:
    patient = new_patient()
    pid = patient["id"]
    cond = condition("urn:uuid:" + pid)
    cond["subject"] = {"reference": f"urn:uuid:{pid}"}
    cond["asserter"] = {"reference": "Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|9999999999"}
    r = ingest(settings, token, "/fhir", json=_transaction(patient, cond))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["type"] == "transaction-response"
    assert [e["response"]["location"] for e in body["entry"]] == [f"Patient/{pid}", f"Condition/{cond['id']}"]
    assert r.headers["X-Healthgov-Event-Id"] and r.headers["X-Healthgov-Submission"]
    stored = wait_readable(settings, token, "Condition", cond["id"])
    assert stored["subject"] == {"reference": f"Patient/{pid}"}
    assert stored["asserter"] == {"type": "Practitioner", "identifier": {
        "system": "http://hl7.org/fhir/sid/us-npi", "value": "9999999999"}}
    assert stored["meta"]["source"] == "gy-hosp-001"  # provenance: which hospital sent it
    assert read(settings, token, "Patient", pid).status_code == 200


def test_a_batch_stores_the_good_entries_and_names_the_bad(stack, token, settings) -> None:
    patient = new_patient()
    good = condition(patient["id"])
    bad = condition(patient["id"]) | {"onsetDateTime": "the day before"}
    batch = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": patient, "request": {"method": "POST", "url": "Patient"}},
        {"resource": bad, "request": {"method": "POST", "url": "Condition"}},
        {"resource": good, "request": {"method": "POST", "url": "Condition"}}]}
    r = ingest(settings, token, "/fhir", json=batch)
    assert r.status_code == 200, r.text
    answers = [e["response"] for e in r.json()["entry"]]
    assert [a["status"] for a in answers] == ["201 Created", "400 Bad Request", "201 Created"]
    assert answers[1]["outcome"]["issue"][0]["expression"] == ["Bundle.entry[1].resource.onsetDateTime"]
    wait_readable(settings, token, "Condition", good["id"])
    assert_never_stored(settings, token, patient["id"], [("Condition", bad["id"])])


def test_bad_input_is_answered_and_nothing_is_stored(stack, token, settings) -> None:
    patient = new_patient()
    pid = patient["id"]
    cond = condition(pid)
    cases = [
        ("malformed JSON", "/fhir", {"content": b'{"resourceType": "Bundle", "type": '}, 400, "structure"),
        ("wrong resourceType at /fhir", "/fhir", {"json": patient}, 400, "invalid"),
        ("wrong resourceType for the URL", "/fhir/Condition", {"json": patient}, 400, "invalid"),
        ("invalid element", "/fhir/Patient", {"json": patient | {"active": "perhaps"}}, 400, "invalid"),
        ("unknown resource type", "/fhir/Patient", {"json": {"resourceType": "Patient", "id": pid,
                                                              "favouriteColour": "blue"}}, 400, "invalid"),
        ("broken reference in a transaction", "/fhir",
         {"json": _transaction(patient, cond | {"encounter": {"reference": "urn:uuid:" + str(uuid.uuid4())}})},
         400, "not-found"),
    ]
    for what, path, kwargs, status, code in cases:
        r = ingest(settings, token, path, **kwargs)
        assert r.status_code == status, (what, r.text)
        outcome = r.json()
        assert outcome["resourceType"] == "OperationOutcome", what
        assert outcome["issue"][0]["code"] == code, (what, outcome)
    invalid = ingest(settings, token, "/fhir/Patient", json=patient | {"active": "perhaps"}).json()
    assert invalid["issue"][0]["expression"] == ["Patient.active"]
    broken = ingest(settings, token, "/fhir", json=_transaction(
        patient, cond | {"encounter": {"reference": "urn:uuid:" + str(uuid.uuid4())}})).json()
    assert broken["issue"][0]["expression"] == ["Bundle.entry[1].resource.encounter.reference"]
    assert_never_stored(settings, token, pid, [("Patient", pid), ("Condition", cond["id"])])


def test_limits_give_413(stack, token, settings) -> None:
    too_many = {"resourceType": "Bundle", "type": "batch",
                "entry": [{"resource": {"resourceType": "Basic", "code": {"text": "x"}}}] * 5_001}
    r = ingest(settings, token, "/fhir", json=too_many)
    assert r.status_code == 413 and r.json()["issue"][0]["code"] == "too-costly"
    # A declared size over the limit is refused before the body is read (raw HTTP: clients will not lie).
    host, port = settings.ingest_url.removeprefix("http://").split(":")
    tok = token("gy-hosp-001", "ingest", role="integration")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall((f"POST /fhir HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {tok}\r\n"
                      f"Content-Type: application/fhir+json\r\nContent-Length: {512 * 1024 * 1024}\r\n\r\n{{}}"
                      ).encode())
        status_line = sock.recv(4096).split(b"\r\n", 1)[0]
    assert b" 413 " in status_line, status_line


def test_a_single_resource_is_created_and_updated(stack, token, settings) -> None:
    patient = new_patient()
    del patient["id"]
    r = ingest(settings, token, "/fhir/Patient", json=patient)
    assert r.status_code == 201, r.text
    pid = r.json()["id"]
    assert r.headers["Location"] == f"Patient/{pid}"
    wait_readable(settings, token, "Patient", pid)
    update = r.json() | {"gender": "other"}
    u = httpx.put(f"{settings.ingest_url}/fhir/Patient/{pid}", content=orjson.dumps(update), timeout=60,
                  headers={"Authorization": f"Bearer {token('gy-hosp-001', 'ingest', role='integration')}"})
    assert u.status_code == 200, u.text

    def updated() -> bool:
        got = read(settings, token, "Patient", pid)
        return got.status_code == 200 and got.json().get("gender") == "other"

    from tests.conftest import wait_for

    wait_for(updated, 90, "the update")
    assert read(settings, token, "Patient", pid).json()["meta"]["versionId"] == "2"
