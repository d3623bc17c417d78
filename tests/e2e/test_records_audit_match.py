"""Every response that carried data has exactly one matching audit event.

A mix of reads and consent changes by every kind of caller; then the whole
log is read back (as a regulator) and, for each response, exactly one event
carries its ``X-Healthgov-Event-Id`` and that event's ``data_digest`` is the
SHA-256 of exactly the bytes the caller received.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter

import httpx

from tests.integration.records.support import all_logged_events, bearer, logged_event, permit

ETHICS = json.dumps({"id": "irb-1", "board": "gz-med-univ-irb", "project": "p", "expires": "2099-01-01T00:00:00Z"})


def test_every_data_response_has_exactly_one_matching_audit_event(loaded, ten_patients, token, settings) -> None:  # type: ignore[no-untyped-def]
    a, b = loaded["patient_ids"][2], loaded["patient_ids"][3]
    cond = next(r["id"] for r in ten_patients if r["resourceType"] == "Condition"
                and r["subject"]["reference"] == f"Patient/{a}")
    calls = [
        ("GET", f"/fhir/Condition/{cond}", lambda: bearer(token("gy-hosp-001", purpose="TREAT")), None),
        ("GET", f"/fhir/Condition/{cond}/_history", lambda: bearer(token("gy-hosp-001", purpose="TREAT")), None),
        ("GET", f"/fhir/Encounter?patient={a}", lambda: bearer(token("gy-hosp-001", purpose="TREAT")), None),
        ("GET", f"/fhir/Patient/{a}/$everything",
         lambda: bearer(token("healthgov-portal", role="patient", patient=a, purpose="PATRQT")), None),
        ("GET", f"/fhir/Patient/{a}/$everything",
         lambda: bearer(token("gz-uni-research", role="researcher", purpose="HRESCH"),
                        **{"X-Ethics-Approval": ETHICS}), None),
        ("GET", f"/fhir/Patient/{b}/$everything",
         lambda: bearer(token("gy-cdc", role="epidemiologist", purpose="PUBHLTH")), None),
        ("GET", f"/fhir/Patient/{b}/$everything",
         lambda: bearer(token("gy-hosp-003", purpose="ETREAT"), **{"X-Break-Glass-Reason": "stroke"}), None),
        ("GET", "/fhir/Practitioner", lambda: bearer(token("gy-hosp-002", purpose="TREAT")), None),
        ("POST", "/fhir/Consent",
         lambda: bearer(token("healthgov-portal", role="patient", patient=b, purpose="PATRQT")),
         permit(b, "gz-insurer-1", "HPAYMT", ["Encounter"])),
        ("GET", f"/fhir/Encounter?patient={b}", lambda: bearer(token("gz-insurer-1", purpose="HPAYMT")), None),
        ("GET", f"/fhir/Consent?patient={b}",
         lambda: bearer(token("healthgov-portal", role="patient", patient=b, purpose="PATRQT")), None),
    ]
    responses: list[httpx.Response] = []
    denials: list[httpx.Response] = []
    with httpx.Client(base_url=settings.records_url, timeout=60) as c:
        for method, path, headers, body in calls:
            r = c.request(method, path, headers=headers(), json=body)
            assert r.status_code in (200, 201), (path, r.text[:300])
            assert r.content
            responses.append(r)
        consent_id = next(r.json()["id"] for r in responses if r.request.method == "POST")
        revoked = c.delete(f"/fhir/Consent/{consent_id}",  # leave the shared patient as it was
                           headers=bearer(token("healthgov-portal", role="patient", patient=b, purpose="PATRQT")))
        assert revoked.status_code == 200
        responses.append(revoked)
        denials.append(c.get(f"/fhir/Patient/{a}/$everything", headers=bearer(token("gz-insurer-1",
                                                                                      purpose="HPAYMT"))))
        assert denials[0].status_code == 403
    logged_event(settings, token, denials[-1].headers["X-Healthgov-Event-Id"])  # the log has caught up
    events = all_logged_events(settings, token)
    by_id = Counter(e["event_id"] for e in events)
    for r in responses:
        event_id = r.headers["X-Healthgov-Event-Id"]
        assert by_id[event_id] == 1, (r.request.url, by_id[event_id])
        (event,) = [e for e in events if e["event_id"] == event_id]
        assert event["data_digest"] == hashlib.sha256(r.content).hexdigest(), r.request.url
        assert event["kind"] in ("disclosure", "break_glass", "consent")
        assert event["decision"]["allow"] is True
    (denial,) = [e for e in events if e["event_id"] == denials[0].headers["X-Healthgov-Event-Id"]]
    assert denial["kind"] == "denial" and denial["data_digest"] is None
    assert denial["decision"]["reasons"] == ["no_consent"]
