"""Resources of the Synthea types the shipped fixtures do not carry, shaped as Synthea's R4 export writes them.

The fixtures hold 13 of the 24 resource types of a full Synthea export (their
Observation and DiagnosticReport files are too large to ship; Claim,
ExplanationOfBenefit, CarePlan, CareTeam, ImagingStudy, Provenance,
MedicationAdministration, Medication, SupplyDelivery were not exported). These
builders make one of each for a fixture Patient, with the element layout of
Synthea's output, and with the patient's name, MRN and phone written into every
free-text place a sender could use: notes, narrative, descriptions, comments,
``valueString``, attachment data/url/title, displays, contained resources and
extensions.
"""

from __future__ import annotations

import base64
from typing import Any

SCT = "http://snomed.info/sct"
LOINC = "http://loinc.org"


def _cc(system: str, code: str, display: str, text: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code, "display": display}], "text": text}


def whom(patient: dict[str, Any]) -> str:
    """"Given Family, MRN m, phone p": what a careless note says about the patient."""
    name = patient["name"][0]
    mrn = next((i["value"] for i in patient.get("identifier", [])
                if i.get("type", {}).get("coding", [{}])[0].get("code") == "MR"), patient["id"])
    phone = next((t["value"] for t in patient.get("telecom", [])), "555-0100")
    line = next((ln for a in patient.get("address", []) for ln in a.get("line", [])), "1 Main St")
    return f"{' '.join(name.get('given', []))} {name.get('family', '')}, MRN {mrn}, tel {phone}, {line}"


def more_types(patient: dict[str, Any], n: int) -> list[dict[str, Any]]:
    """One resource of each missing type for ``patient`` (ids suffixed ``n``)."""
    pid, who = patient["id"], whom(patient)
    subject = {"reference": f"Patient/{pid}", "display": who}
    enc = {"reference": f"Encounter/enc-{n}"}
    note = [{"authorString": who, "time": "2019-03-04T10:00:00-05:00", "text": f"Spoke with {who}."}]
    ext = [{"url": "https://example.org/fhir/StructureDefinition/remark", "valueString": who},
           {"url": "https://example.org/fhir/StructureDefinition/nested",
            "extension": [{"url": "who", "valueString": who}, {"url": "phone", "valueContactPoint": {"value": who}}]}]
    narrative = {"status": "generated", "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{who}</div>'}
    data = base64.b64encode(f"Clinical note for {who}".encode()).decode()
    attachment = {"contentType": "text/plain; charset=utf-8", "data": data, "title": who,
                  "url": f"https://notes.example.org/{who}"}
    period = {"start": "2019-03-04T09:00:00-05:00", "end": "2019-03-04T10:00:00-05:00"}
    coverage = {"resourceType": "Coverage", "id": "coverage", "status": "active",
                "subscriberId": who, "beneficiary": subject, "payor": [{"display": "Medicaid"}],
                "type": _cc(SCT, "1", "Medicaid", who)}
    observation = {
        "resourceType": "Observation", "id": f"obs-{n}", "status": "final", "text": narrative, "extension": ext,
        "meta": {"profile": ["http://hl7.org/fhir/us/core/StructureDefinition/us-core-vital-signs"],
                 "lastUpdated": "2019-03-04T10:00:00-05:00"},
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                  "code": "vital-signs", "display": "vital-signs"}], "text": who}],
        "code": {"coding": [{"system": LOINC, "code": "85354-9", "display": "Blood pressure panel",
                             "extension": [{"url": "https://example.org/x", "valueString": who}]}], "text": who},
        "subject": subject, "encounter": enc, "effectiveDateTime": "2019-03-04T09:30:00-05:00",
        "issued": "2019-03-04T09:30:00.000-05:00", "note": note, "valueString": who,
        "component": [{"code": _cc(LOINC, "8480-6", "Systolic Blood Pressure", who),
                       "valueQuantity": {"value": 120, "unit": "mm[Hg]", "system": "http://unitsofmeasure.org",
                                         "code": "mm[Hg]"}}],
        "referenceRange": [{"text": who, "low": {"value": 90}}], "interpretation": [_cc(SCT, "N", "Normal", who)],
        "identifier": [{"system": "urn:mrn", "value": who}], "performer": [{"display": who}],
        "device": {"display": who}, "bodySite": _cc(SCT, "368209003", "Right arm", who),
    }
    report = {
        "resourceType": "DiagnosticReport", "id": f"dr-{n}", "status": "final", "text": narrative,
        "category": [_cc(LOINC, "34117-2", "History and physical note", who)],
        "code": _cc(LOINC, "34117-2", "History and physical note", who), "subject": subject, "encounter": enc,
        "effectiveDateTime": "2019-03-04T09:00:00-05:00", "issued": "2019-03-04T09:00:00.000-05:00",
        "performer": [{"reference": "Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|9999999999",
                       "display": "Dr. Who"}],
        "presentedForm": [attachment], "conclusion": who, "conclusionCode": [_cc(SCT, "1", "x", who)],
        "result": [{"reference": f"Observation/obs-{n}", "display": who}],
    }
    claim = {
        "resourceType": "Claim", "id": f"claim-{n}", "status": "active", "use": "claim",
        "type": _cc("http://terminology.hl7.org/CodeSystem/claim-type", "institutional", "Institutional", who),
        "patient": subject, "billablePeriod": period, "created": "2019-03-04T10:00:00-05:00",
        "provider": {"reference": "Organization?identifier=https://github.com/synthetichealth/synthea|x",
                     "display": "GENERAL HOSPITAL"},
        "priority": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/processpriority",
                                 "code": "normal"}]},
        "prescription": {"reference": f"MedicationRequest/mr-{n}"},
        "facility": {"reference": "Location?identifier=https://github.com/synthetichealth/synthea|y",
                     "display": "GENERAL HOSPITAL"},
        "contained": [coverage],
        "insurance": [{"sequence": 1, "focal": True, "coverage": {"reference": "#coverage", "display": who}}],
        "supportingInfo": [{"sequence": 1, "category": _cc(SCT, "info", "Info", who), "valueString": who}],
        "item": [{"sequence": 1, "productOrService": _cc(SCT, "185349003", "Check up", who),
                  "encounter": [enc], "net": {"value": 129.16, "currency": "USD"}}],
        "total": {"value": 129.16, "currency": "USD"}, "accident": {"locationAddress": {"line": [who]}},
    }
    eob = {
        "resourceType": "ExplanationOfBenefit", "id": f"eob-{n}", "status": "active", "use": "claim",
        "contained": [{"resourceType": "ServiceRequest", "id": "referral", "status": "completed",
                       "intent": "order", "subject": subject, "requester": {"display": who},
                       "note": note, "patientInstruction": who}, coverage],
        "identifier": [{"system": "https://bluebutton.cms.gov/resources/variables/clm_id", "value": who}],
        "type": _cc("http://terminology.hl7.org/CodeSystem/claim-type", "professional", "Professional", who),
        "patient": subject, "billablePeriod": period, "created": "2019-03-04T10:00:00-05:00",
        "insurer": {"display": "Medicaid"}, "provider": {"display": "Dr. Who"},
        "referral": {"reference": "#referral"}, "claim": {"reference": f"Claim/claim-{n}"}, "outcome": "complete",
        "careTeam": [{"sequence": 1, "provider": {"display": "Dr. Who"}}],
        "insurance": [{"focal": True, "coverage": {"reference": "#coverage", "display": who}}],
        "item": [{"sequence": 1, "productOrService": _cc(SCT, "185349003", "Check up", who),
                  "servicedPeriod": period, "locationCodeableConcept": _cc("x", "21", "Inpatient", who),
                  "adjudication": [{"category": _cc("x", "https://bluebutton.cms.gov/x", "Line Payment", who),
                                    "amount": {"value": 103.33, "currency": "USD"}}]}],
        "total": [{"category": _cc("x", "submitted", "Submitted", who), "amount": {"value": 129.16,
                                                                                   "currency": "USD"}}],
        "payment": {"amount": {"value": 103.33, "currency": "USD"}}, "processNote": [{"text": who}],
    }
    care_plan = {
        "resourceType": "CarePlan", "id": f"cp-{n}", "text": narrative, "status": "active", "intent": "order",
        "category": [_cc(SCT, "734163000", "Care plan", who)], "subject": subject, "encounter": enc,
        "period": {"start": "2019-03-04T09:00:00-05:00"}, "description": who, "title": who,
        "careTeam": [{"reference": f"CareTeam/ct-{n}"}], "addresses": [{"reference": "Condition/c-1", "display": who}],
        "activity": [{"detail": {"code": _cc(SCT, "229065009", "Exercise therapy", who), "status": "in-progress",
                                 "location": {"display": who}, "description": who}, "outcomeReference": [],
                      "progress": note}],
    }
    care_team = {
        "resourceType": "CareTeam", "id": f"ct-{n}", "status": "active", "subject": subject, "encounter": enc,
        "period": {"start": "2019-03-04T09:00:00-05:00"}, "name": who,
        "participant": [{"role": [_cc(SCT, "116153009", "Patient", who)], "member": subject},
                        {"role": [_cc(SCT, "223366009", "Healthcare professional", who)],
                         "member": {"reference": "Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|1",
                                    "display": "Dr. Who"}}],
        "managingOrganization": [{"reference": "Organization?identifier=x|y", "display": "GENERAL HOSPITAL"}],
        "telecom": [{"system": "phone", "value": who}], "note": note,
    }
    imaging = {
        "resourceType": "ImagingStudy", "id": f"is-{n}", "status": "available", "text": narrative,
        "identifier": [{"use": "official", "system": "urn:ietf:rfc:3986", "value": f"urn:oid:1.2.840.{n}"}],
        "subject": subject, "encounter": enc, "started": "2019-03-04T09:00:00-05:00",
        "numberOfSeries": 1, "numberOfInstances": 1, "description": who,
        "location": {"reference": "Location?identifier=x|y", "display": who},
        "series": [{"uid": f"1.2.840.99999999.{n}.1", "number": 1, "description": who,
                    "modality": {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "DX",
                                 "display": "Digital Radiography"}, "numberOfInstances": 1,
                    "bodySite": {"system": SCT, "code": "51185008", "display": "Thoracic structure (body structure)"},
                    "started": "2019-03-04T09:00:00-05:00",
                    "instance": [{"uid": f"1.2.840.99999999.{n}.1.1", "number": 1, "title": who,
                                  "sopClass": {"system": "urn:ietf:rfc:3986",
                                               "code": "urn:oid:1.2.840.10008.5.1.4.1.1.1.1"}}]}],
    }
    provenance = {
        "resourceType": "Provenance", "id": f"prov-{n}", "target": [subject, {"reference": f"Observation/obs-{n}"}],
        "recorded": "2019-03-04T10:00:00.000-05:00",
        "agent": [{"type": _cc("http://terminology.hl7.org/CodeSystem/provenance-participant-type", "author",
                               "Author", who),
                   "who": {"reference": "Practitioner?identifier=x|1", "display": "Dr. Who"},
                   "onBehalfOf": {"reference": "Organization?identifier=x|y", "display": "GENERAL HOSPITAL"}}],
        "entity": [{"role": "source", "what": {"display": who}}],
        "extension": [{"url": "https://example.org/fhir/StructureDefinition/network",
                       "valueString": "10.1.2.3"}],
    }
    med = {"resourceType": "Medication", "id": f"med-{n}", "status": "active", "text": narrative,
           "code": _cc("http://www.nlm.nih.gov/research/umls/rxnorm", "313782", "Acetaminophen 325 MG", who),
           "batch": {"lotNumber": who, "expirationDate": "2030-01-01"}}
    med_admin = {
        "resourceType": "MedicationAdministration", "id": f"ma-{n}", "status": "completed",
        "medicationReference": {"reference": f"Medication/med-{n}", "display": who}, "subject": subject,
        "context": enc, "effectiveDateTime": "2019-03-04T09:00:00-05:00", "note": note,
        "reasonReference": [{"reference": "Condition/c-1", "display": who}],
        "dosage": {"text": who, "dose": {"value": 1, "unit": "tablet"}},
    }
    supply = {
        "resourceType": "SupplyDelivery", "id": f"sd-{n}", "status": "completed", "patient": subject,
        "type": _cc("http://terminology.hl7.org/CodeSystem/supply-item-type", "device", "Device", who),
        "suppliedItem": {"quantity": {"value": 1}, "itemCodeableConcept": _cc(SCT, "337388004", "Blood glucose "
                                                                                 "testing strips", who)},
        "occurrenceDateTime": "2019-03-04T09:00:00-05:00", "destination": {"display": who},
    }
    return [observation, report, claim, eob, care_plan, care_team, imaging, provenance, med, med_admin, supply]
