"""Attack: the same sensitive diagnosis in another code system, or only as its medicine, must be withheld alike.

gy-hosp-001 sends, about one patient, an HIV diagnosis coded in SNOMED CT, the
same diagnosis coded ICD-10-CM B20, one coded in the Chinese national ICD-10
edition, an HIV viral-load Observation (LOINC), an antiretroviral
MedicationRequest (RxNorm, Biktarvy) and an unrelated hypertension Condition.
The patient consents to an insurer reading their Conditions, Observations and
MedicationRequests without releasing any sensitivity label: the insurer gets the
hypertension only, and is told how many records were withheld.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.conftest import first_patient
from tests.integration.records.support import HYPERTENSION, bearer, condition, fresh_patient, ingest, permit

ICD10CM, ICD10CN = "http://hl7.org/fhir/sid/icd-10-cm", "urn:oid:2.16.156.10011.2.3.3.11"
RXNORM, LOINC = "http://www.nlm.nih.gov/research/umls/rxnorm", "http://loinc.org"


def coded_condition(pid: str, system: str, code: str) -> dict[str, Any]:
    c = condition(pid, code, "2023-06-01")
    c["code"] = {"coding": [{"system": system, "code": code}]}
    return c


@pytest.fixture(scope="module")
def records(stack, token, settings) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    patient = fresh_patient(first_patient())
    pid = patient["id"]
    plain = condition(pid, HYPERTENSION, "2019-05-01")
    snomed_hiv = condition(pid, "86406008", "2023-06-01")
    icd_cm_hiv, icd_cn_hiv = coded_condition(pid, ICD10CM, "B20"), coded_condition(pid, ICD10CN, "B20.000x001")
    viral_load = {"resourceType": "Observation", "id": str(uuid.uuid4()), "status": "final",
                  "code": {"coding": [{"system": LOINC, "code": "25836-8"}]},
                  "subject": {"reference": f"Patient/{pid}"}, "effectiveDateTime": "2023-06-01",
                  "valueQuantity": {"value": 40, "unit": "copies/mL"}}
    arv = {"resourceType": "MedicationRequest", "id": str(uuid.uuid4()), "status": "active", "intent": "order",
           "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": "1999673", "display":
                                                     "bictegravir 50 MG / emtricitabine 200 MG / tenofovir "
                                                     "alafenamide 25 MG Oral Tablet [Biktarvy]"}]},
           "subject": {"reference": f"Patient/{pid}"}, "authoredOn": "2023-06-02"}
    ingest(settings, token, patient, plain, snomed_hiv, icd_cm_hiv, icd_cn_hiv, viral_load, arv)
    with httpx.Client(base_url=settings.records_url, timeout=30) as c:
        r = c.post("/fhir/Consent", json=permit(pid, "gz-insurer-1", "HPAYMT",
                                                ["Condition", "Observation", "MedicationRequest"]),
                   headers=bearer(token("healthgov-portal", role="patient", patient=pid, purpose="PATRQT")))
        assert r.status_code == 201, r.text
    return {"id": pid, "plain": plain["id"],
            "hidden": [x["id"] for x in (snomed_hiv, icd_cm_hiv, icd_cn_hiv, viral_load, arv)]}


def _insurer_reads(settings, token, path: str) -> httpx.Response:  # type: ignore[no-untyped-def]
    return httpx.get(f"{settings.records_url}{path}", timeout=30,
                     headers=bearer(token("gz-insurer-1", role="claims", purpose="HPAYMT")))


def test_an_hiv_diagnosis_in_icd10_cm_or_the_chinese_edition_is_withheld_like_snomed(records, token, settings) -> None:  # type: ignore[no-untyped-def]
    r = _insurer_reads(settings, token, f"/fhir/Condition?patient={records['id']}")
    assert r.status_code == 200, r.text
    assert [e["resource"]["id"] for e in r.json()["entry"]] == [records["plain"]]
    assert r.headers["X-Healthgov-Withheld"] == "3"
    assert not [h for h in records["hidden"] if h in r.text]


def test_an_antiretroviral_prescription_and_an_hiv_test_are_withheld(records, token, settings) -> None:  # type: ignore[no-untyped-def]
    for rtype in ("MedicationRequest", "Observation"):
        r = _insurer_reads(settings, token, f"/fhir/{rtype}?patient={records['id']}")
        assert r.status_code == 200, r.text
        assert r.json()["total"] == 0 and r.headers["X-Healthgov-Withheld"] == "1", (rtype, r.text)
        assert not [h for h in records["hidden"] if h in r.text]
    arv = _insurer_reads(settings, token, f"/fhir/MedicationRequest/{records['hidden'][-1]}")
    assert arv.status_code == 403 and "Biktarvy" not in arv.text
