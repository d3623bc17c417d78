"""De-identification of released resources (services/records/deident.py)."""

from __future__ import annotations

import json
from datetime import date

from services.records import deident

PID = "129c6ac7-8d06-89de-ad63-0204a93e76c3"
PATIENT = {
    "resourceType": "Patient", "id": PID,
    "text": {"status": "generated", "div": "<div>Sumiko254 Larue605</div>"},
    "identifier": [{"system": "http://hospital.smarthealthit.org", "value": "MRN-4711"}],
    "name": [{"family": "Larue605", "given": ["Sumiko254"]}], "telecom": [{"value": "555-0101"}],
    "address": [{"line": ["12 Main St"], "city": "Guiyang"}], "photo": [{"data": "AAAA"}],
    "contact": [{"name": {"family": "Medhurst46"}}],
    "extension": [{"url": "http://hl7.org/fhir/StructureDefinition/patient-mothersMaidenName", "valueString": "M"},
                  {"url": "http://hl7.org/fhir/StructureDefinition/patient-birthPlace", "valueAddress": {"city": "X"}},
                  {"url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex", "valueCode": "F"}],
    "gender": "female", "birthDate": "1927-05-21",
}
NOTE = {
    "resourceType": "DocumentReference", "id": "d1", "identifier": [{"value": "urn:uuid:1"}],
    "subject": {"reference": f"Patient/{PID}", "display": "Mrs. Sumiko254 Larue605"},
    "date": "1987-11-19T00:22:16.824-05:00",
    "content": [{"attachment": {"contentType": "text/plain", "data": "U3VtaWtvMjU0IExhcnVlNjA1"}}],
}
SECRETS = (PID, "Sumiko254", "Larue605", "MRN-4711", "555-0101", "12 Main St", "Medhurst46", "U3VtaWtv")


def test_pseudonymize_drops_direct_identifiers_and_rewrites_the_patient() -> None:
    out = [deident.pseudonymize(r, PID, "rp-abc") for r in (PATIENT, NOTE)]
    text = json.dumps(out)
    assert not [s for s in SECRETS if s in text]
    assert out[0]["id"] == "rp-abc" and out[1]["subject"] == {"reference": "Patient/rp-abc"}
    assert out[0]["birthDate"] == "1927-05-21" and out[0]["gender"] == "female"  # not a direct identifier
    assert [e["valueCode"] for e in out[0]["extension"]] == ["F"]
    assert PATIENT["name"] and NOTE["subject"]["display"]  # inputs untouched


def test_pseudonymize_without_a_known_patient_drops_the_reference_and_the_name_next_to_it() -> None:
    out = deident.pseudonymize(NOTE, None, None)
    assert "subject" not in out and "Sumiko254" not in json.dumps(out) and PID not in json.dumps(out)


def test_safe_harbor_keeps_years_and_groups_the_very_old() -> None:
    today = date(2026, 11, 22)
    patient, note = (deident.safe_harbor(r, PID, "rp-abc", today=today) for r in (PATIENT, NOTE))
    assert "birthDate" not in patient
    assert {"url": deident.AGE_GROUP_URL, "valueString": "90+"} in patient["extension"]
    assert note["date"] == "1987" and "content" not in note
    young = deident.safe_harbor({**PATIENT, "birthDate": "1990-03-04"}, PID, "rp-abc", today=today)
    assert young["birthDate"] == "1990"


def test_patient_references_are_found_wherever_they_are() -> None:
    res = {"subject": {"reference": "Patient/a"}, "x": [{"y": {"reference": "urn:uuid:b"}}],
           "performer": [{"reference": "Practitioner/c"}]}
    assert deident.patient_refs(res) == {"a", "b"}
