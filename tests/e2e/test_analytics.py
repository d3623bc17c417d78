"""Population analytics on the running platform: policy-decided, disclosure-controlled, audited counts.

Each test ingests its own patients through the ingest API into districts of
its own, asks ``POST /analytics/query`` on records and reads the audit event
of the answer back from the log.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import httpx

from tests.e2e.analytics_support import (
    ask,
    cohort,
    district,
    populate,
    public_health,
    researcher,
)
from tests.integration.records.support import bearer, logged_event


def test_public_health_counts_are_suppressed_rounded_and_audited(stack, token, settings) -> None:  # type: ignore[no-untyped-def]
    big, small, other = district(), district(), district()
    populate(settings, token, big, 12)
    populate(settings, token, small, 3)
    populate(settings, token, other, 20)
    query = {"cohort": cohort([big, small, other]), "measure": {"by": ["district"]}}
    r = ask(settings, public_health(token), query)
    assert r.status_code == 200, r.text
    body = r.json()
    rows = {row["district"]: (row["count"], row["suppressed"]) for row in body["rows"]}
    assert rows[small] == (None, "small_count")  # 3 people: never released
    assert rows[big] == (None, "protects_suppressed_cell")  # else total - other gives the 3 away
    assert rows[other] == (20, None)
    assert body["total"] == {"count": 35, "suppressed": None}
    assert body["disclosure_control"] == {"threshold": 7, "rounding": 5}
    assert r.headers["X-Healthgov-Cached"] == "false"

    event = logged_event(settings, token, r.headers["X-Healthgov-Event-Id"])
    assert event["kind"] == "disclosure" and event["patient"] is None
    assert event["accessor"]["org"] == "gy-cdc" and event["purpose"] == "PUBHLTH"
    assert event["decision"]["reasons"] == ["public_health_analytics"]
    assert event["decision"]["obligations"]["deidentify"] == "aggregate_only"
    assert event["data_digest"] == hashlib.sha256(r.content).hexdigest()
    assert event["details"]["action"] == "analytics_query" and event["details"]["cached"] is False

    again = ask(settings, public_health(token), query)  # the same question: the same answer, from the cache
    assert again.status_code == 200 and again.content == r.content
    assert again.headers["X-Healthgov-Cached"] == "true"
    assert again.headers["X-Healthgov-Event-Id"] != r.headers["X-Healthgov-Event-Id"]  # still audited
    assert logged_event(settings, token, again.headers["X-Healthgov-Event-Id"])["details"]["cached"] is True


def test_research_without_an_approved_project_is_refused_and_audited(stack, token, settings) -> None:  # type: ignore[no-untyped-def]
    place = district()
    query = {"cohort": cohort([place]), "measure": {"by": ["month"]}}
    r = ask(settings, researcher(token), query)
    assert r.status_code == 403, r.text
    assert r.json()["resourceType"] == "OperationOutcome" and "analytics_requires_project" in r.text
    event = logged_event(settings, token, r.headers["X-Healthgov-Event-Id"])
    assert event["kind"] == "denial" and event["accessor"]["org"] == "gz-uni-research"
    assert event["decision"]["reasons"] == ["analytics_requires_project"]
    assert event["details"]["action"] == "analytics_query"

    unknown = ask(settings, researcher(token), {**query, "project": "prj-doesnotexist"})
    assert unknown.status_code == 403 and "analytics_requires_project" in unknown.text

    feasibility = ask(settings, researcher(token), {"cohort": cohort([place]), "feasibility": True})
    assert feasibility.status_code == 200, feasibility.text  # one total, sized before applying
    assert feasibility.json()["total"]["suppressed"] == "small_count"  # nobody there yet: 0 people


def test_an_erased_patient_no_longer_counts(stack, token, settings) -> None:  # type: ignore[no-untyped-def]
    place = district()
    ids = populate(settings, token, place, 20)
    query = {"cohort": cohort([place])}
    before = ask(settings, public_health(token), query)
    assert before.status_code == 200 and before.json()["total"]["count"] == 20
    for pid in ids[:8]:  # more than the threshold, so that the difference itself may be released
        me = bearer(token("healthgov-portal", role="patient", patient=pid, purpose="PATRQT"))
        assert httpx.delete(f"{settings.records_url}/fhir/Patient/{pid}", headers=me, timeout=60).status_code == 200
    after = ask(settings, public_health(token), query)
    assert after.status_code == 200, after.text
    assert after.json()["total"] == {"count": 10, "suppressed": None}  # 12 people left, rounded


def test_research_under_an_approved_project_leaves_opted_out_patients_out(stack, token, settings,  # type: ignore[no-untyped-def]
                                                                           documents) -> None:
    place = district()
    ids = populate(settings, token, place, 18)
    body = {"title": "Diabetes burden", "purpose": "Counting diabetes by district", "types": ["Condition"],
            "deidentify": "safe_harbor", "expires": (datetime.now(UTC) + timedelta(days=30)).isoformat()}
    applied = httpx.post(f"{settings.records_url}/projects", json=body, timeout=30,
                         headers=researcher(token, **{"X-Ethics-Approval": documents.ethics_approval(project="dm")}))
    assert applied.status_code == 201, applied.text
    project = applied.json()["id"]
    regulator = bearer(token("gz-nhc", role="inspector", purpose="HCOMPL"))
    assert httpx.post(f"{settings.records_url}/projects/{project}/$approve", headers=regulator,
                      timeout=30).status_code == 200
    for pid in ids[:8]:  # eight patients refuse research use of their records
        me = bearer(token("healthgov-portal", role="patient", patient=pid, purpose="PATRQT"))
        opt_out = {"resourceType": "Consent", "status": "active", "patient": {"reference": f"Patient/{pid}"},
                   "provision": {"type": "deny", "purpose": [
                       {"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "HRESCH"}]}}
        r = httpx.post(f"{settings.records_url}/fhir/Consent", json=opt_out, headers=me, timeout=30)
        assert r.status_code == 201, r.text  # the patient's own opt-out is in force at once
    query = {"cohort": cohort([place]), "measure": {"by": ["sex"]}, "project": project}

    def research_total() -> int | None:
        answer = ask(settings, researcher(token), query)
        assert answer.status_code == 200, answer.text
        return answer.json()["total"]["count"]

    assert research_total() == 10  # 18 - 8 opted out
    public = ask(settings, public_health(token), {"cohort": cohort([place])})
    assert public.json()["total"]["count"] == 20  # an opt-out does not bind public health (18, rounded)
    outside = ask(settings, researcher(token), {**query, "cohort": {**cohort([place]), "types": ["Encounter"]}})
    assert outside.status_code == 403 and "export_type_not_in_agreement" in outside.text
