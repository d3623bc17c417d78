"""One patient can never reach another's data: every way in, attempted.

Patient A signs in through the portal (its key, ``patient`` claim = A) and
tries every records endpoint on patient B. Each attempt is refused with 403,
carries no data of B, and is itself on the audit log.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.integration.records.support import MRN_SYSTEM, bearer, permit


@pytest.fixture(scope="module")
def two(loaded, ten_patients, token, settings) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    a, b = loaded["patient_ids"][0], loaded["patient_ids"][1]
    b_patient = next(r for r in ten_patients if r["id"] == b)
    b_conditions = [r["id"] for r in ten_patients if r["resourceType"] == "Condition"
                    and r["subject"]["reference"] == f"Patient/{b}"]
    b_mrn = next(i["value"] for i in b_patient["identifier"] if i.get("system") == MRN_SYSTEM)
    b_names = [n for name in b_patient["name"] for n in [name["family"], *name.get("given", [])]]
    return {"a": a, "b": b, "b_condition": b_conditions[0], "b_mrn": b_mrn, "b_names": b_names}


def as_a(token, two) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return bearer(token("healthgov-portal", role="patient", patient=two["a"], purpose="PATRQT"))


def test_every_read_of_another_patient_is_refused(two, token, settings) -> None:  # type: ignore[no-untyped-def]
    b, cond, mrn = two["b"], two["b_condition"], two["b_mrn"]
    attempts = [
        ("GET", f"/fhir/Patient/{b}", {}),
        ("GET", f"/fhir/Patient/{b}/$everything", {}),
        ("GET", "/fhir/Condition", {"patient": b}),
        ("GET", "/fhir/Condition", {"patient": f"Patient/{b}", "code": "44054006"}),
        ("GET", "/fhir/Patient", {"identifier": f"{MRN_SYSTEM}|{mrn}"}),
        ("GET", "/fhir/Encounter", {"patient.identifier": f"{MRN_SYSTEM}|{mrn}"}),
        ("GET", f"/fhir/Condition/{cond}", {}),
        ("GET", f"/fhir/Condition/{cond}/_history", {}),
        ("GET", f"/fhir/Condition/{cond}/_history/1", {}),
        ("GET", "/fhir/Consent", {"patient": b}),
    ]
    with httpx.Client(base_url=settings.records_url, timeout=60) as c:
        assert c.get(f"/fhir/Patient/{two['a']}/$everything", headers=as_a(token, two)).status_code == 200
        for method, path, params in attempts:
            r = c.request(method, path, params=params, headers=as_a(token, two))
            assert r.status_code == 403, (path, params, r.status_code, r.text[:200])
            assert "not_own_records" in r.text
            assert "entry" not in r.json() and cond not in r.text and mrn not in r.text
            assert not [n for n in two["b_names"] if n in r.text]
            assert r.headers["X-Healthgov-Event-Id"]  # the attempt itself is audited


def test_every_change_to_another_patient_is_refused(two, token, settings) -> None:  # type: ignore[no-untyped-def]
    b = two["b"]
    refer = {"resourceType": "Parameters",
             "parameter": [{"name": "organization", "valueReference": {"reference": "Organization/gy-hosp-002"}}]}
    with httpx.Client(base_url=settings.records_url, timeout=60) as c:
        for method, path, body in (("POST", "/fhir/Consent", permit(b, "gz-insurer-1", "HPAYMT")),
                                   ("DELETE", f"/fhir/Patient/{b}", None),
                                   ("POST", f"/fhir/Patient/{b}/$refer", refer)):
            r = c.request(method, path, headers=as_a(token, two),
                          content=None if body is None else json.dumps(body).encode())
            assert r.status_code == 403, (path, r.text)
            assert "not_own_records" in r.text
        still = c.get(f"/fhir/Patient/{b}", headers=bearer(token("gy-hosp-001", purpose="TREAT")))
        assert still.status_code == 200  # B was not erased
        consents = c.get("/fhir/Consent", params={"patient": b},
                         headers=bearer(token("healthgov-portal", role="patient", patient=b, purpose="PATRQT")))
        assert consents.status_code == 200 and consents.json()["total"] == 0


def test_tokens_cannot_be_bent_to_reach_a_patient(two, token, settings) -> None:  # type: ignore[no-untyped-def]
    b = two["b"]
    path = f"/fhir/Patient/{b}/$everything"
    with httpx.Client(base_url=settings.records_url, timeout=60) as c:
        forged = c.get(path, headers=bearer(token("gy-hosp-002", role="patient", patient=b, purpose="PATRQT")))
        assert forged.status_code == 403  # only the portal's key may carry a patient claim
        posing = c.get(path, headers=bearer(token("healthgov-portal", role="clinician", patient=two["a"],
                                                  purpose="TREAT")))
        assert posing.status_code == 403 and "purpose_not_permitted_for_org_type" in posing.text
        wrong_audience = c.get(path, headers=bearer(token("healthgov-portal", "audit", role="patient",
                                                          patient=b, purpose="PATRQT")))
        assert wrong_audience.status_code == 401
        once = bearer(token("healthgov-portal", role="patient", patient=b, purpose="PATRQT"))
        assert c.get(path, headers=once).status_code == 200
        assert c.get(path, headers=once).status_code == 401  # a replayed token
        assert c.get(path).status_code == 401
