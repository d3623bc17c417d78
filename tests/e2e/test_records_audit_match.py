"""Every response that carried data has exactly one matching audit event.

A mix of reads and consent changes by every kind of caller, each with an
``X-Request-Id`` of its own; then the log entries written meanwhile are read
back (as a regulator). For each response exactly one event carries its request
id, that event is the one its ``X-Healthgov-Event-Id`` names, and its
``data_digest`` is the SHA-256 of exactly the bytes the caller received; and
no other event of the period claims those bytes (the log stores an event id
once, so counting by event id alone could never find a second event).
"""

from __future__ import annotations

import hashlib
import uuid
from collections import Counter, defaultdict
from typing import Any

import httpx

from tests.integration.records.support import (
    MRN_SYSTEM,
    all_logged_events,
    bearer,
    logged_event,
    permit,
    settled_log_size,
)


def digest(r: httpx.Response) -> str:
    return hashlib.sha256(r.content).hexdigest()


def test_every_data_response_has_exactly_one_matching_audit_event(  # type: ignore[no-untyped-def]
        loaded, ten_patients, token, settings, documents) -> None:
    ethics = documents.ethics_approval(project="p")
    a, b = loaded["patient_ids"][2], loaded["patient_ids"][3]
    cond = next(r["id"] for r in ten_patients if r["resourceType"] == "Condition"
                and r["subject"]["reference"] == f"Patient/{a}")
    mrn = next(i["value"] for r in ten_patients if r["resourceType"] == "Patient" and r["id"] == a
               for i in r["identifier"] if i.get("system") == MRN_SYSTEM)

    def as_b() -> dict[str, str]:
        return bearer(token("healthgov-portal", role="patient", patient=b, purpose="PATRQT"))

    calls = [
        ("GET", f"/fhir/Condition/{cond}", lambda: bearer(token("gy-hosp-001", purpose="TREAT")), None),
        ("GET", f"/fhir/Condition/{cond}/_history", lambda: bearer(token("gy-hosp-001", purpose="TREAT")), None),
        ("GET", f"/fhir/Condition/{cond}/_history/1", lambda: bearer(token("gy-hosp-001", purpose="TREAT")), None),
        ("GET", f"/fhir/Encounter?patient={a}", lambda: bearer(token("gy-hosp-001", purpose="TREAT")), None),
        ("GET", f"/fhir/Condition?patient.identifier={MRN_SYSTEM}|{mrn}",
         lambda: bearer(token("gy-hosp-001", purpose="TREAT")), None),
        ("GET", f"/fhir/Patient?identifier={MRN_SYSTEM}|{mrn}",
         lambda: bearer(token("gy-hosp-001", purpose="TREAT")), None),
        ("GET", f"/fhir/Patient/{a}/$everything",
         lambda: bearer(token("healthgov-portal", role="patient", patient=a, purpose="PATRQT")), None),
        ("GET", f"/fhir/Patient/{a}/$everything",
         lambda: bearer(token("gz-uni-research", role="researcher", purpose="HRESCH"),
                        **{"X-Ethics-Approval": ethics}), None),
        ("GET", f"/fhir/Patient/{b}/$everything",
         lambda: bearer(token("gy-cdc", role="epidemiologist", purpose="PUBHLTH")), None),
        ("GET", f"/fhir/Patient/{b}/$everything",
         lambda: bearer(token("gy-hosp-003", purpose="ETREAT"), **{"X-Break-Glass-Reason": "stroke"}), None),
        ("GET", "/fhir/Practitioner", lambda: bearer(token("gy-hosp-002", purpose="TREAT")), None),
        ("POST", "/fhir/Consent", as_b, permit(b, "gz-insurer-1", "HPAYMT", ["Encounter"])),
        ("GET", f"/fhir/Encounter?patient={b}", lambda: bearer(token("gz-insurer-1", purpose="HPAYMT")), None),
        ("GET", f"/fhir/Consent?patient={b}", as_b, None),
    ]
    start = settled_log_size(settings, token)
    responses: list[httpx.Response] = []

    def send(c: httpx.Client, method: str, path: str, headers: dict[str, str], body: Any = None) -> httpx.Response:
        return c.request(method, path, headers={**headers, "X-Request-Id": str(uuid.uuid4())}, json=body)

    with httpx.Client(base_url=settings.records_url, timeout=60) as c:
        for method, path, headers, body in calls:
            r = send(c, method, path, headers(), body)
            assert r.status_code in (200, 201), (path, r.text[:300])
            assert r.content
            responses.append(r)
        consent_id = next(r.json()["id"] for r in responses if r.request.method == "POST")
        one = send(c, "GET", f"/fhir/Consent/{consent_id}", as_b())
        assert one.status_code == 200 and one.json()["id"] == consent_id, one.text
        responses.append(one)
        revoked = send(c, "DELETE", f"/fhir/Consent/{consent_id}", as_b())  # leave the shared patient as it was
        assert revoked.status_code == 200
        responses.append(revoked)
        denial = send(c, "GET", f"/fhir/Patient/{a}/$everything",
                      bearer(token("gz-insurer-1", purpose="HPAYMT")))
        assert denial.status_code == 403
    logged_event(settings, token, denial.headers["X-Healthgov-Event-Id"])  # published last: the log has caught up
    events = all_logged_events(settings, token, start=start)
    by_request: dict[str | None, list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        by_request[e.get("request_id")].append(e)
    logged_digests = Counter(e.get("data_digest") for e in events)
    released_digests = Counter(digest(r) for r in responses)
    for r in responses:
        matching = by_request[r.request.headers["X-Request-Id"]]
        assert len(matching) == 1, (r.request.url, [e["event_id"] for e in matching])
        (event,) = matching
        assert event["event_id"] == r.headers["X-Healthgov-Event-Id"], r.request.url
        assert event["data_digest"] == digest(r), r.request.url
        assert event["kind"] in ("disclosure", "break_glass", "consent")
        assert event["decision"]["allow"] is True
        # As many events claim these bytes as responses carried them (a read and a vread of
        # the same version are the same bytes), no more.
        assert logged_digests[digest(r)] == released_digests[digest(r)], (r.request.url, logged_digests[digest(r)])
    (denied,) = by_request[denial.request.headers["X-Request-Id"]]
    assert denied["event_id"] == denial.headers["X-Healthgov-Event-Id"]
    assert denied["kind"] == "denial" and denied["data_digest"] is None
    assert denied["decision"]["reasons"] == ["no_consent"]
