"""Large resources on the running platform: documents of several MB go through; too large is a named 413.

Hospitals embed scanned documents and PDFs in DocumentReference (base64): a
resource of several MB must come back to a clinician byte for byte, and one
above the documented limit (``MAX_RESOURCE_BYTES``) must be refused as such,
permanently and by name, with nothing of its submission stored.
"""

from __future__ import annotations

import base64
import os
import uuid
from typing import Any

import httpx
import orjson

from services.contracts.topics import MAX_RESOURCE_BYTES
from tests.conftest import auth, wait_for
from tests.integration.ingest.support import assert_never_stored, condition, ingest, new_patient, wait_readable

NDJSON = {"Content-Type": "application/fhir+ndjson"}


def _document(pid: str, data: bytes) -> dict[str, Any]:
    """A DocumentReference carrying ``data`` as its attachment, as an EHR exports a scanned document."""
    return {"resourceType": "DocumentReference", "id": str(uuid.uuid4()), "status": "current",
            "subject": {"reference": f"Patient/{pid}"},
            "type": {"coding": [{"system": "http://loinc.org", "code": "34108-1"}]},
            "date": "2024-03-01T09:30:00+08:00",
            "content": [{"attachment": {"contentType": "application/pdf", "title": "discharge letter",
                                        "data": base64.b64encode(data).decode()}}]}


def _sized(pid: str, json_bytes: int) -> dict[str, Any]:
    """A DocumentReference of exactly ``json_bytes`` bytes of compact JSON."""
    doc = _document(pid, b"")
    pad = json_bytes - len(orjson.dumps(doc))
    doc["content"][0]["attachment"]["data"] = "JVBE" * (pad // 4)
    doc["id"] += "x" * (pad % 4)
    assert len(orjson.dumps(doc)) == json_bytes
    return doc


def _transaction(*resources: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}} for r in resources]}


def test_a_5_mb_document_comes_back_byte_identical_to_a_clinician(stack, token, settings) -> None:
    patient = new_patient()
    pid = patient["id"]
    pdf = os.urandom(5 * 1024 * 1024)
    doc = _document(pid, pdf)
    r = ingest(settings, token, "/fhir", json=_transaction(patient, doc))
    assert r.status_code == 200, r.text[:500]
    stored = wait_readable(settings, token, "DocumentReference", doc["id"], timeout_s=120)
    attachment = stored["content"][0]["attachment"]
    assert attachment["data"] == doc["content"][0]["attachment"]["data"]
    assert base64.b64decode(attachment["data"]) == pdf
    assert {k: v for k, v in stored.items() if k != "meta"} == doc


def test_two_5_mb_documents_in_one_ndjson_request_are_both_stored(stack, token, settings) -> None:
    """Together they exceed one message: packing by bytes sends them apart (by count they were one, and a 503)."""
    patient = new_patient()
    pid = patient["id"]
    docs = [_document(pid, os.urandom(5 * 1024 * 1024)) for _ in range(2)]
    body = b"\n".join(orjson.dumps(x) for x in [patient, *docs])
    r = ingest(settings, token, "/fhir/$import", content=body, headers=NDJSON)
    assert r.status_code == 200, r.text[:500]
    assert [e["response"]["status"] for e in r.json()["entry"]] == ["201 Created"] * 3
    for doc in docs:
        stored = wait_readable(settings, token, "DocumentReference", doc["id"], timeout_s=120)
        assert stored["content"] == doc["content"]


def test_a_resource_just_above_the_limit_is_413_naming_it_and_its_submission_stores_nothing(
        stack, token, settings) -> None:
    patient = new_patient()
    pid = patient["id"]
    cond = condition(pid)
    too_big = _sized(pid, MAX_RESOURCE_BYTES + 1)
    limit = str(MAX_RESOURCE_BYTES)

    # One resource: 413 naming it and the limit, never a 503 to retry.
    r = ingest(settings, token, "/fhir/DocumentReference", json=too_big)
    assert r.status_code == 413, r.text[:500]
    [issue] = r.json()["issue"]
    assert r.json()["resourceType"] == "OperationOutcome" and issue["code"] == "too-costly"
    assert issue["expression"] == ["DocumentReference"] and limit in issue["diagnostics"]
    assert "Retry-After" not in r.headers

    # In a transaction: the whole transaction is refused, naming the entry.
    r = ingest(settings, token, "/fhir", json=_transaction(patient, cond, too_big))
    assert r.status_code == 413, r.text[:500]
    [issue] = r.json()["issue"]
    assert issue["expression"] == ["Bundle.entry[2].resource"] and limit in issue["diagnostics"]
    assert_never_stored(settings, token, pid, [("Patient", pid), ("Condition", cond["id"]),
                                               ("DocumentReference", too_big["id"])])

    # At the limit exactly, the same document is accepted.
    at_limit = _sized(pid, MAX_RESOURCE_BYTES)
    r = ingest(settings, token, "/fhir/DocumentReference", json=at_limit)
    assert r.status_code == 201, r.text[:500]
    assert wait_readable(settings, token, "DocumentReference", at_limit["id"], timeout_s=120)["content"] \
        == at_limit["content"]


def test_ndjson_and_import_jobs_report_the_oversized_line(stack, token, settings) -> None:
    patient = new_patient()
    pid = patient["id"]
    cond = condition(pid)
    too_big = _sized(pid, MAX_RESOURCE_BYTES + 1)
    body = b"\n".join(orjson.dumps(x) for x in [patient, too_big, cond])

    r = ingest(settings, token, "/fhir/$import", content=body, headers=NDJSON)
    assert r.status_code == 200, r.text[:500]
    answers = [e["response"] for e in r.json()["entry"]]
    assert [a["status"] for a in answers] == ["201 Created", "413 Content Too Large", "201 Created"]
    [issue] = answers[1]["outcome"]["issue"]
    assert issue["expression"] == ["line 2"] and str(MAX_RESOURCE_BYTES) in issue["diagnostics"]
    wait_readable(settings, token, "Condition", cond["id"])
    assert_never_stored(settings, token, pid, [("DocumentReference", too_big["id"])])

    other = condition(pid)
    body = b"\n".join(orjson.dumps(x) for x in [other, too_big])
    r = ingest(settings, token, "/fhir/$import", content=body, headers={**NDJSON, "Prefer": "respond-async"})
    assert r.status_code == 202, r.text[:500]
    final: dict[str, Any] = {}

    def done() -> bool:
        s = httpx.get(r.headers["Content-Location"], timeout=30,
                      headers=auth(token("gy-hosp-001", "ingest", role="integration")))
        final.update(s.json())
        return s.status_code == 200

    wait_for(done, 120, "the import job")
    assert final["status"] == "completed" and final["accepted"] == 1 and final["rejected"] == 1
    [error] = final["errors"]
    assert error["line"] == 2 and error["status"] == 413
    assert str(MAX_RESOURCE_BYTES) in error["issue"][0]["diagnostics"]
