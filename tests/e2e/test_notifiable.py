"""Notifiable-disease counts per district and week on the running platform: who may ask, what leaves, the audit.

The test's own patients are sent through the ingest API into districts of its
own (and Xiuwen, whose illustrative population gives a rate); the counts are
read back from ``GET /analytics/notifiable`` on records and the answer's
audit event from the log.
"""

from __future__ import annotations

import hashlib

from tests.e2e.analytics_support import ask, cases, cohort, district, notifiable, public_health
from tests.integration.records.support import SNOMED, bearer, logged_event

ICD10 = "http://hl7.org/fhir/sid/icd-10"
TB = "56717001"
XIUWEN = 300_000  # services/records/analytics/populations.json (illustrative)


def regulator(token) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return bearer(token("gz-nhc", role="regulator", purpose="HCOMPL"))


def test_notifiable_counts_are_protected_rated_and_audited_for_the_regulator(  # type: ignore[no-untyped-def]
        stack, token, settings) -> None:
    many, few = district(), district()
    cases(settings, token,
          (many, 12, SNOMED, TB, "2024-03-12T09:00:00+08:00"),  # 2024-W11
          (few, 3, SNOMED, TB, "2024-03-13T09:00:00+08:00"),  # 2024-W11
          ("Xiuwen", 10, SNOMED, TB, "2024-03-18T09:00:00+08:00"),  # 2024-W12
          ("Xiuwen", 10, ICD10, "A15.0", "2024-03-19T09:00:00+08:00"))  # 2024-W12, coded in ICD-10
    params = {"since": "2024-03-11", "until": "2024-03-24", "district": f"{many},{few},Xiuwen"}
    r = notifiable(settings, regulator(token), **params)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["weeks"] == ["2024-W11", "2024-W12"]
    tb = next(d for d in body["diseases"] if d["id"] == "tuberculosis")
    cells = {(row["week"], row["district"]): row for row in tb["rows"]}
    assert (cells["2024-W11", few]["count"], cells["2024-W11", few]["suppressed"]) == (None, "small_count")
    assert (cells["2024-W11", many]["count"], cells["2024-W11", many]["suppressed"]) == (
        None, "protects_suppressed_cell")  # else the week's total minus it would give the 3 away
    assert cells["2024-W11", many]["rate_per_100000"] is None  # a withheld count has no rate
    xiuwen = cells["2024-W12", "Xiuwen"]
    assert xiuwen["count"] >= 20 and xiuwen["count"] % 5 == 0  # ours (SNOMED CT and ICD-10), rounded
    assert xiuwen["rate_per_100000"] == round(xiuwen["count"] * 100_000 / XIUWEN, 2)  # from the released count
    assert cells["2024-W11", many]["rate_suppressed"] == "protects_suppressed_cell"
    assert body["population"]["illustrative"] is True

    event = logged_event(settings, token, r.headers["X-Healthgov-Event-Id"])
    assert event["kind"] == "disclosure" and event["patient"] is None
    assert event["accessor"]["org"] == "gz-nhc" and event["purpose"] == "HCOMPL"
    assert event["decision"]["reasons"] == ["regulator_notifiable_disease_counts"]
    assert event["data_digest"] == hashlib.sha256(r.content).hexdigest()
    assert event["details"]["named"] == "notifiable_diseases"
    assert event["details"]["query"]["districts"] == sorted([many, few, "Xiuwen"])

    cdc = notifiable(settings, public_health(token), **params)  # public health: the same bytes, audited again
    assert cdc.status_code == 200 and cdc.content == r.content
    cdc_event = logged_event(settings, token, cdc.headers["X-Healthgov-Event-Id"])
    assert cdc_event["decision"]["reasons"] == ["public_health_analytics"]


def test_others_are_refused_and_audited_and_the_regulator_asks_nothing_else(  # type: ignore[no-untyped-def]
        stack, token, settings) -> None:
    hospital = notifiable(settings, bearer(token("gy-hosp-001", purpose="TREAT")))
    assert hospital.status_code == 403 and hospital.json()["resourceType"] == "OperationOutcome"
    event = logged_event(settings, token, hospital.headers["X-Healthgov-Event-Id"])
    assert event["kind"] == "denial" and event["accessor"]["org"] == "gy-hosp-001"
    assert "notifiable_counts_public_health_and_regulator_only" in event["decision"]["reasons"]
    assert event["details"]["named"] == "notifiable_diseases"

    researcher = notifiable(settings, bearer(token("gz-uni-research", role="researcher", purpose="HRESCH")))
    assert researcher.status_code == 403 and "notifiable_counts_public_health_and_regulator_only" in researcher.text

    general = ask(settings, regulator(token), {"cohort": cohort([district()]), "measure": {"by": ["district"]}})
    assert general.status_code == 403 and "analytics_not_permitted_for_org_type" in general.text

    for bad in ({"since": "last week"}, {"disease": "plague"}, {"since": "2024-03-01", "until": "2024-02-01"},
                {"since": "2010-01-01", "until": "2024-01-01"}, {"select": "*"}):
        r = notifiable(settings, regulator(token), **bad)
        assert r.status_code == 400, (bad, r.text)
        assert r.json()["resourceType"] == "OperationOutcome"
