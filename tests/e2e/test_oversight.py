"""Oversight on the running platform: quality reports become metrics, reads become flags, reviews are logged."""

from __future__ import annotations

import csv
import io
import uuid
from typing import Any

import httpx

from tests.conftest import auth, wait_for


def regulator(token: Any) -> dict[str, str]:
    return auth(token("gz-nhc", "oversight", role="regulator", purpose="HCOMPL"))


def get(settings: Any, token: Any, path: str, **params: Any) -> Any:
    r = httpx.get(f"{settings.oversight_url}{path}", params=params, headers=regulator(token), timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def test_only_the_regulator_sees_oversight(stack, token, settings) -> None:  # type: ignore[no-untyped-def]
    assert httpx.get(f"{settings.oversight_url}/hospitals", timeout=10).status_code == 401
    r = httpx.get(f"{settings.oversight_url}/hospitals", headers=auth(token("gy-hosp-001", "oversight")), timeout=10)
    assert r.status_code == 403 and "audit_read_not_permitted" in r.text
    r = httpx.post(f"{settings.oversight_url}/reviews/{uuid.uuid4()}", json={"verdict": "justified"},
                   headers=auth(token("gy-hosp-001", "oversight")), timeout=10)
    assert r.status_code == 403 and "oversight_review_not_permitted" in r.text  # not even a 404 to learn from


def test_a_submission_becomes_quality_metrics(stack, token, settings) -> None:  # type: ignore[no-untyped-def]
    pid = f"ov-{uuid.uuid4()}"
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "PUT", "url": f"Patient/{pid}"},
         "resource": {"resourceType": "Patient", "id": pid, "gender": "unknown", "birthDate": "1971-03-04"}},
        {"request": {"method": "POST", "url": "Observation"},
         "resource": {"resourceType": "Observation", "status": "final",
                      "code": {"coding": [{"system": "http://hospital.example/local", "code": "GLU"}]},
                      "subject": {"reference": f"Patient/{pid}"}, "effectiveDateTime": "2026-01-01T00:00:00Z"}},
        {"request": {"method": "POST", "url": "Observation"},
         "resource": {"resourceType": "Observation", "subject": {"reference": f"Patient/{pid}"}}},
    ]}
    first = get(settings, token, "/hospitals/gy-hosp-004")
    before = first["metrics"]
    code_system_before = {w["rule"]: w["n"] for w in first["warnings"]}.get("code-system", 0)
    r = httpx.post(f"{settings.ingest_url}/fhir", json=bundle, timeout=30,
                   headers=auth(token("gy-hosp-004", "ingest", role="integration")))
    assert r.status_code == 200, r.text

    def counted() -> bool:
        return get(settings, token, "/hospitals/gy-hosp-004")["metrics"]["resources"] >= before["resources"] + 3

    wait_for(counted, 60, "the quality report to reach the oversight metrics")
    page = get(settings, token, "/hospitals/gy-hosp-004")
    m = page["metrics"]
    assert m["volume"] - before["volume"] == 2 and m["rejected"] - before["rejected"] == 1
    assert any(r["reason"] == "invalid Observation.code" for r in page["reasons"]), page["reasons"]
    types = {t["type"]: t for t in page["types"]}
    assert types["Patient"]["defaults"] >= 1  # gender "unknown"
    assert types["Observation"]["codings"] >= 1 and types["Observation"]["recognised"] == 0
    assert m["validity"] is not None and m["validity"] < 1
    # the accepted Observation's local code is a validity warning (rule code-system), counted as one
    assert m["warnings"] - before["warnings"] >= 1, (m, before)
    # and counted under its rule, per hospital and day, for the console's top warning rules
    code_system = {w["rule"]: w["n"] for w in page["warnings"]}.get("code-system", 0)
    assert code_system - code_system_before >= 1, page["warnings"]
    assert "code-system" in {w["rule"] for w in m["top_warnings"]}, m["top_warnings"]
    table = get(settings, token, "/hospitals")["hospitals"]
    assert {h["hospital"] for h in table} >= {"gy-hosp-001", "gy-hosp-004", "gy-hosp-005"}
    assert [h["rank"] for h in table] == sorted(h["rank"] for h in table)
    r = httpx.get(f"{settings.oversight_url}/hospitals", params={"format": "csv", "sort": "volume"},
                  headers=regulator(token), timeout=30)
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert r.headers["content-type"].startswith("text/csv") and "gy-hosp-004" in {x["hospital"] for x in rows}
    volumes = [int(x["volume"]) for x in rows]
    assert volumes == sorted(volumes, reverse=True)


def test_a_burst_of_reads_of_one_record_is_flagged(loaded, token, settings) -> None:  # type: ignore[no-untyped-def]
    pid = loaded["patient_ids"][0]
    who = f"dr-burst-{uuid.uuid4().hex[:8]}"
    ids = []
    with httpx.Client(base_url=settings.records_url, timeout=30) as c:
        for _ in range(7):
            r = c.get(f"/fhir/Patient/{pid}", headers=auth(token("gy-hosp-001", sub=who, purpose="TREAT")))
            assert r.status_code == 200, r.text
            ids.append(r.headers["X-Healthgov-Event-Id"])
    found: dict[str, Any] = {}

    def flagged() -> bool:
        flags = get(settings, token, "/anomalies", hospital="gy-hosp-001", rule="repeated_record")["flags"]
        found["flag"] = next((f for f in flags if f["accessor"] == who), None)
        return found["flag"] is not None

    wait_for(flagged, 60, "the repeated-record flag")
    flag = found["flag"]
    assert flag["evidence"]["reads"] >= 5 and flag["evidence"]["record"].startswith("Patient/")
    assert pid not in flag["evidence"]["record"]  # the log names a patient by pseudonym only
    assert set(flag["event_ids"]) <= set(ids) and len(flag["event_ids"]) >= 5


def test_a_hospitals_privacy_officer_judges_its_own_staffs_break_glass_and_no_other(  # type: ignore[no-untyped-def]
        loaded, token, settings) -> None:
    """The hospital's privacy officer: its own staff's break-glass accesses, never another hospital's or their own."""
    pid = loaded["patient_ids"][2]

    def break_glass(org: str, sub: str) -> str:
        r = httpx.get(f"{settings.records_url}/fhir/Patient/{pid}", timeout=30,
                      headers=auth(token(org, sub=sub, purpose="ETREAT"), **{"X-Break-Glass-Reason": "unconscious"}))
        assert r.status_code == 200, r.text
        return r.headers["X-Healthgov-Event-Id"]

    def officer() -> dict[str, str]:  # tokens are single-use: one per request
        return auth(token("gy-hosp-003", "oversight", sub="po-zhao", role="privacy_officer"))

    staff = break_glass("gy-hosp-003", "dr-li")
    own = break_glass("gy-hosp-003", "po-zhao")  # the privacy officer also treats patients
    other = break_glass("gy-hosp-002", "dr-chen")

    def queue() -> list[dict[str, Any]]:  # asks for another hospital's queue: gets its own
        r = httpx.get(f"{settings.oversight_url}/reviews", params={"per_page": 500, "hospital": "gy-hosp-002"},
                      headers=officer(), timeout=30)
        assert r.status_code == 200, r.text
        return r.json()["reviews"]  # type: ignore[no-any-return]

    wait_for(lambda: {staff, own} <= {v["event_id"] for v in queue()}, 60, "the accesses in the officer's queue")
    assert {v["hospital"] for v in queue()} == {"gy-hosp-003"}
    wait_for(lambda: other in {v["event_id"] for v in get(settings, token, "/reviews", per_page=500)["reviews"]},
             60, "the other hospital's access in the regulator's queue")
    r = httpx.post(f"{settings.oversight_url}/reviews/{other}", json={"verdict": "justified"}, headers=officer(),
                   timeout=30)
    assert r.status_code == 403 and "break_glass_of_another_hospital" in r.text
    r = httpx.post(f"{settings.oversight_url}/reviews/{own}", json={"verdict": "justified"}, headers=officer(),
                   timeout=30)
    assert r.status_code == 403 and "own_break_glass_access" in r.text
    r = httpx.post(f"{settings.oversight_url}/reviews/{staff}", headers=officer(), timeout=30,
                   json={"verdict": "not_justified", "note": "no emergency recorded in the ward notes"})
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "not_justified" and r.json()["reviewer"] == "gy-hosp-003/po-zhao"
    judged = {v["event_id"]: v for v in get(settings, token, "/reviews", state="all", per_page=500)["reviews"]}
    assert judged[staff]["state"] == "not_justified"
    assert judged[own]["state"] == "open" and judged[other]["state"] == "open"
    clinician = httpx.get(f"{settings.oversight_url}/reviews", timeout=30,
                          headers=auth(token("gy-hosp-003", "oversight", role="clinician")))
    assert clinician.status_code == 403


def test_break_glass_is_queued_judged_by_the_regulator_and_the_verdict_is_logged(  # type: ignore[no-untyped-def]
        loaded, token, settings) -> None:
    pid = loaded["patient_ids"][1]
    r = httpx.get(f"{settings.records_url}/fhir/Patient/{pid}", timeout=30,
                  headers=auth(token("gy-hosp-002", purpose="ETREAT"), **{"X-Break-Glass-Reason": "unconscious"}))
    assert r.status_code == 200, r.text
    event_id = r.headers["X-Healthgov-Event-Id"]

    def queued() -> bool:
        return any(v["event_id"] == event_id for v in get(settings, token, "/reviews", per_page=500)["reviews"])

    wait_for(queued, 60, "the break-glass access in the review queue")
    refused = httpx.post(f"{settings.oversight_url}/reviews/{event_id}", json={"verdict": "justified"},
                         headers=auth(token("gy-hosp-003", "oversight", role="privacy_officer")), timeout=30)
    assert refused.status_code == 403 and "break_glass_of_another_hospital" in refused.text
    refused = httpx.post(f"{settings.oversight_url}/reviews/{event_id}", json={"verdict": "justified"},
                         headers=auth(token("gy-hosp-002", "oversight", role="clinician")), timeout=30)
    assert refused.status_code == 403 and "oversight_review_not_permitted" in refused.text
    r = httpx.post(f"{settings.oversight_url}/reviews/{event_id}", headers=regulator(token), timeout=30,
                   json={"verdict": "justified", "note": "resuscitation, documented in the ER record"})
    assert r.status_code == 200, r.text
    judged = r.json()
    assert judged["state"] == "justified" and judged["reviewer"] == "gz-nhc/user-1"
    again = httpx.post(f"{settings.oversight_url}/reviews/{event_id}", json={"verdict": "not_justified"},
                       headers=regulator(token), timeout=30)
    assert again.status_code == 409
    assert httpx.post(f"{settings.oversight_url}/reviews/{event_id}", json={"verdict": "maybe"},
                      headers=regulator(token), timeout=30).status_code == 400
    # the verdict is an entry of the audit log itself
    audit = auth(token("gz-nhc", "audit", role="regulator", purpose="HCOMPL"))

    def logged() -> bool:
        r = httpx.get(f"{settings.audit_url}/events", params={"kind": "break_glass_review", "limit": 1000},
                      headers=audit, timeout=30)
        return any(e["event_id"] == judged["review_event_id"] for e in r.json()["events"])

    wait_for(logged, 60, "the review's audit event in the log")


def test_the_audit_search_is_newest_first_with_totals_filters_and_csv(  # type: ignore[no-untyped-def]
        loaded, token, settings) -> None:
    pid = loaded["patient_ids"][2]
    who = f"dr-search-{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=settings.records_url, timeout=30) as c:
        ids = [c.get(f"/fhir/Patient/{pid}", headers=auth(token("gy-hosp-001", sub=who, purpose="TREAT")))
               .headers["X-Healthgov-Event-Id"] for _ in range(3)]

    def projected() -> bool:
        return get(settings, token, "/audit/events", accessor=who)["total"] == 3

    wait_for(projected, 60, "the reads in the oversight projection")
    first = get(settings, token, "/audit/events", accessor=who, hospital="gy-hosp-001", per_page=2)
    assert (first["total"], first["pages"], first["page"]) == (3, 2, 1)
    second = get(settings, token, "/audit/events", accessor=who, per_page=2, page=2)
    order = [e["event_id"] for e in first["events"] + second["events"]]
    assert order == list(reversed(ids))  # UUIDv7 ids follow time: newest first
    patient = first["events"][0]["patient"]
    assert get(settings, token, "/audit/events", accessor=who, patient=patient, purpose="TREAT")["total"] == 3
    assert get(settings, token, "/audit/events", accessor=who, purpose="HCOMPL")["total"] == 0
    assert get(settings, token, "/audit/events", accessor=who, since="2999-01-01")["total"] == 0
    r = httpx.get(f"{settings.oversight_url}/audit/events", params={"accessor": who, "format": "csv", "per_page": 2},
                  headers=regulator(token), timeout=30)
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [x["event_id"] for x in rows] == order[:2] and r.headers["X-Total-Count"] == "3"
    assert 'rel="next"' in r.headers["Link"]
    bad = httpx.get(f"{settings.oversight_url}/audit/events", params={"since": "yesterday"},
                    headers=regulator(token), timeout=30)
    assert bad.status_code == 400
