"""Attack: a hospital writes the patient's name, MRN and phone into free text; de-identified readers must not see them.

gy-hosp-001 sends a Patient and, about them, an Observation and a Condition
whose notes, narrative, ``valueString``, extensions, contained resource and
reference displays name the patient, their MRN and their phone number. A
research project (pseudonymized, under an ethics approval) and a commercial
data buyer (Safe Harbor, under the patient's consent) then read everything they
may: none of those strings, nor the patient's id, may be in what they get, while
the coded content still is.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.conftest import first_patient
from tests.integration.records.support import bearer, fresh_patient, ingest, permit

LOINC, SNOMED = "http://loinc.org", "http://snomed.info/sct"


@pytest.fixture(scope="module")
def victim(stack, token, settings) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """A patient whose records carry their identity in every free-text place a sender can use."""
    patient = fresh_patient(first_patient())
    pid = patient["id"]
    phone = f"+86 851 {uuid.uuid4().int % 10**8:08d}"
    patient["telecom"] = [{"system": "phone", "value": phone, "use": "home"}]
    given, family = patient["name"][0]["given"][0], patient["name"][0]["family"]
    mrn = next(i["value"] for i in patient["identifier"] if i["value"].startswith("MRN-"))
    who = f"{given} {family} (MRN {mrn}, phone {phone})"
    note = [{"authorString": f"nurse who called {given}", "time": "2024-03-04T10:00:00+08:00",
             "text": f"Called {who} about the result."}]
    narrative = {"status": "generated", "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{who}</div>'}
    remark = [{"url": "https://hospital.example/fhir/StructureDefinition/remark", "valueString": who}]
    observation = {
        "resourceType": "Observation", "id": str(uuid.uuid4()), "status": "final", "text": narrative,
        "extension": remark, "code": {"coding": [{"system": LOINC, "code": "8480-6",
                                                  "display": "Systolic blood pressure"}], "text": who},
        "subject": {"reference": f"Patient/{pid}", "display": who},
        "effectiveDateTime": "2024-03-04T09:30:00+08:00", "valueQuantity": {
            "value": 151, "unit": "mm[Hg]", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"},
        "note": note, "performer": [{"display": f"seen with {who}"}],
        "interpretation": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
                                        "code": "H"}], "text": who}]}
    condition = {
        "resourceType": "Condition", "id": str(uuid.uuid4()), "text": narrative, "extension": remark,
        "contained": [{"resourceType": "RelatedPerson", "id": "caller", "patient": {"reference": f"Patient/{pid}"},
                       "name": [{"text": who}], "telecom": [{"system": "phone", "value": phone}]}],
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                       "code": "active"}]},
        "code": {"coding": [{"system": SNOMED, "code": "38341003", "display": "Hypertension"}], "text": who},
        "subject": {"reference": f"Patient/{pid}", "display": who}, "onsetDateTime": "2024-03-04",
        "asserter": {"reference": "#caller"}, "note": note,
        "evidence": [{"detail": [{"reference": f"Observation/{observation['id']}", "display": who}]}]}
    ingest(settings, token, patient, observation, condition)
    return {"id": pid, "observation": observation["id"], "condition": condition["id"],
            "secrets": [given, family, f"{given} {family}", mrn, phone, pid, who]}


def _leaks(body: str, secrets: list[str]) -> list[str]:
    return [s for s in secrets if s in body]


def test_a_researcher_reads_no_name_mrn_or_phone_from_notes_and_text(victim, token, settings, documents) -> None:  # type: ignore[no-untyped-def]
    approval = documents.ethics_approval()

    def research() -> dict[str, str]:  # a token is good for one request
        return bearer(token("gz-uni-research", role="researcher", purpose="HRESCH"),
                      **{"X-Ethics-Approval": approval})

    with httpx.Client(base_url=settings.records_url, timeout=60) as c:
        everything = c.get(f"/fhir/Patient/{victim['id']}/$everything", headers=research())
        single = c.get(f"/fhir/Observation/{victim['observation']}", headers=research())
    for r in (everything, single):
        assert r.status_code == 200, r.text
        assert not _leaks(r.text, victim["secrets"]), _leaks(r.text, victim["secrets"])
    resources = {e["resource"]["resourceType"]: e["resource"] for e in everything.json()["entry"]}
    assert {"Patient", "Observation", "Condition"} <= set(resources)
    obs, cond = resources["Observation"], resources["Condition"]
    assert obs["valueQuantity"]["value"] == 151 and obs["code"]["coding"][0]["code"] == "8480-6"
    assert obs["effectiveDateTime"] == "2024-03-04T09:30:00+08:00"  # pseudonymized data keeps dates
    assert cond["subject"]["reference"] == f"Patient/{resources['Patient']['id']}"
    assert not {"note", "text"} & (set(obs) | set(cond))


def test_a_commercial_buyer_under_consent_reads_no_name_mrn_or_phone(victim, token, settings) -> None:  # type: ignore[no-untyped-def]
    pid = victim["id"]
    with httpx.Client(base_url=settings.records_url, timeout=60) as c:
        granted = c.post("/fhir/Consent", json=permit(pid, "gy-datamart", "HMARKT", ["Observation", "Condition"]),
                         headers=bearer(token("healthgov-portal", role="patient", patient=pid, purpose="PATRQT")))
        assert granted.status_code == 201, granted.text
        reads = [c.get(f"/fhir/{t}?patient={pid}", headers=bearer(token("gy-datamart", role="analyst",
                                                                        purpose="HMARKT")))
                 for t in ("Observation", "Condition")]
    for r in reads:
        assert r.status_code == 200, r.text
        assert r.json()["total"] == 1
        assert not _leaks(r.text, victim["secrets"]), _leaks(r.text, victim["secrets"])
    obs = reads[0].json()["entry"][0]["resource"]
    cond = reads[1].json()["entry"][0]["resource"]
    assert obs["effectiveDateTime"] == "2024" and cond["onsetDateTime"] == "2024"  # Safe Harbor: years only
    assert obs["valueQuantity"]["value"] == 151 and cond["code"]["coding"][0]["code"] == "38341003"
    assert "contained" not in cond or all("name" not in x and "telecom" not in x for x in cond["contained"])
