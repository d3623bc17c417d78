"""A Synthea-sized population from the shipped fixtures: 24 resource types, fresh ids per copy.

The shipped CC0 Synthea sets (deploy/demo/fixtures) carry 13 resource types.
Synthea's default exporter writes 24 for a population; the other 11 are
derived here from each fixture patient's own encounters, conditions and
medication requests, shaped as Synthea writes them (vital-sign Observations
and their DiagnosticReport per encounter, a Claim and an ExplanationOfBenefit
per encounter and per prescription, care plans, goals, imaging studies,
supply deliveries, medication administrations), and one Provenance per
patient whose targets are every resource of that patient, as Synthea's is
(the resource that broke the message-size limit). Then the whole set is
replicated ``copies`` times with every UUID rewritten consistently per copy,
so each copy is new data that is really stored.
"""

from __future__ import annotations

import gzip
import re
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson

from services.adapters.config import REPO_ROOT

TEN = REPO_ROOT / "deploy" / "demo" / "fixtures" / "synthea-10-patients"
_UUID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_NS = uuid.UUID("0b8d3c4e-5f60-4a7b-8c9d-0e1f2a3b4c5d")
LOINC, SNOMED = "http://loinc.org", "http://snomed.info/sct"
VITALS = [("8302-2", "Body Height", "cm", 150.0), ("29463-7", "Body Weight", "kg", 70.0),
          ("8867-4", "Heart rate", "/min", 72.0)]


def _id(*parts: str) -> str:
    return str(uuid.uuid5(_NS, "|".join(parts)))


def _cc(system: str, code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code, "display": display}], "text": display}


def _derived(base: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The 11 types the fixtures lack, derived per patient from the fixtures' own resources."""
    out: list[dict[str, Any]] = []
    encounters = [r for r in base if r["resourceType"] == "Encounter"]
    orders = [r for r in base if r["resourceType"] == "MedicationRequest"]
    conditions = [r for r in base if r["resourceType"] == "Condition"]
    for n, enc in enumerate(encounters):
        subject = {"reference": enc["subject"]["reference"]}
        when = enc["period"]["start"]
        ref = {"reference": f"Encounter/{enc['id']}"}
        provider = enc.get("serviceProvider", {})
        observations = []
        for code, display, unit, value in VITALS:
            obs = {"resourceType": "Observation", "id": _id(enc["id"], code), "status": "final",
                   "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                             "code": "vital-signs", "display": "Vital signs"}]}],
                   "code": _cc(LOINC, code, display), "subject": subject, "encounter": ref,
                   "effectiveDateTime": when, "issued": when,
                   "valueQuantity": {"value": value + n % 17, "unit": unit, "system": "http://unitsofmeasure.org",
                                     "code": unit}}
            observations.append(obs)
        out += observations
        out.append({"resourceType": "DiagnosticReport", "id": _id(enc["id"], "report"), "status": "final",
                    "code": _cc(LOINC, "85353-1", "Vital signs panel"), "subject": subject, "encounter": ref,
                    "effectiveDateTime": when, "issued": when,
                    "result": [{"reference": f"Observation/{o['id']}"} for o in observations]})
        out += _claim_and_eob(enc["id"], subject, ref, when, provider, enc["type"][0])
        if n % 10 == 0:
            out.append({"resourceType": "SupplyDelivery", "id": _id(enc["id"], "supply"), "status": "completed",
                        "patient": subject, "type": _cc("http://terminology.hl7.org/CodeSystem/supply-item-type",
                                                        "device", "Device"),
                        "suppliedItem": {"quantity": {"value": 1},
                                         "itemCodeableConcept": _cc(SNOMED, "337388004", "Blood glucose meter")},
                        "occurrenceDateTime": when})
        if n % 20 == 0:
            out.append({"resourceType": "ImagingStudy", "id": _id(enc["id"], "imaging"), "status": "available",
                        "subject": subject, "encounter": ref, "started": when, "numberOfSeries": 1,
                        "numberOfInstances": 1,
                        "identifier": [{"use": "official", "system": "urn:ietf:rfc:3986",
                                        "value": f"urn:oid:1.2.840.99999999.{n}"}],
                        "series": [{"uid": f"1.2.840.99999999.1.{n}", "number": 1,
                                    "modality": {"system": "http://dicom.nema.org/resources/ontology/DCM",
                                                 "code": "DX"},
                                    "bodySite": {"system": SNOMED, "code": "51185008", "display": "Thoracic"},
                                    "instance": [{"uid": f"1.2.840.99999999.1.{n}.1",
                                                  "sopClass": {"system": "urn:ietf:rfc:3986",
                                                               "code": "urn:oid:1.2.840.10008.5.1.4.1.1.1.1"},
                                                  "number": 1}]}]})
    for n, order in enumerate(orders):
        subject = {"reference": order["subject"]["reference"]}
        when = order["authoredOn"]
        ref = order.get("encounter", {})
        out += _claim_and_eob(order["id"], subject, ref, when, {}, order["medicationCodeableConcept"])
        if n % 10 == 0:
            out.append({"resourceType": "MedicationAdministration", "id": _id(order["id"], "given"),
                        "status": "completed", "medicationCodeableConcept": order["medicationCodeableConcept"],
                        "subject": subject, "context": ref, "effectiveDateTime": when,
                        "request": {"reference": f"MedicationRequest/{order['id']}"}})
    for cond in conditions[::5]:
        subject = {"reference": cond["subject"]["reference"]}
        goal = {"resourceType": "Goal", "id": _id(cond["id"], "goal"), "lifecycleStatus": "active",
                "description": {"text": "Address the condition"}, "subject": subject,
                "addresses": [{"reference": f"Condition/{cond['id']}"}]}
        team = {"resourceType": "CareTeam", "id": _id(cond["id"], "team"), "status": "active", "subject": subject,
                "encounter": cond.get("encounter", {}), "period": {"start": cond.get("recordedDate", "2000-01-01")},
                "participant": [{"role": [_cc(SNOMED, "116154003", "Patient")], "member": subject}],
                "reasonCode": [cond["code"]]}
        plan = {"resourceType": "CarePlan", "id": _id(cond["id"], "plan"), "status": "active", "intent": "order",
                "category": [_cc(SNOMED, "736353004", "Inpatient care plan (record artifact)")],
                "subject": subject, "period": {"start": cond.get("recordedDate", "2000-01-01")},
                "careTeam": [{"reference": f"CareTeam/{team['id']}"}],
                "addresses": [{"reference": f"Condition/{cond['id']}"}],
                "goal": [{"reference": f"Goal/{goal['id']}"}],
                "activity": [{"detail": {"code": _cc(SNOMED, "409002", "Food allergy diet"), "status": "in-progress",
                                         "location": {"display": "home"}}}]}
        out += [goal, team, plan]
    return out


def _claim_and_eob(source: str, subject: dict[str, Any], encounter: dict[str, Any], when: str,
                   provider: dict[str, Any], service: dict[str, Any]) -> list[dict[str, Any]]:
    claim_id = _id(source, "claim")
    prov = {"reference": provider["reference"]} if provider.get("reference") else {"display": "provider"}
    item = {"sequence": 1, "productOrService": {"coding": service.get("coding", [])[:1], "text": service.get("text")},
            "encounter": [encounter] if encounter else None, "net": {"value": 129.16, "currency": "USD"}}
    item = {k: v for k, v in item.items() if v is not None}
    claim = {"resourceType": "Claim", "id": claim_id, "status": "active",
             "type": _cc("http://terminology.hl7.org/CodeSystem/claim-type", "institutional", "Institutional"),
             "use": "claim", "patient": subject, "billablePeriod": {"start": when, "end": when}, "created": when,
             "provider": prov, "priority": _cc("http://terminology.hl7.org/CodeSystem/processpriority", "normal",
                                                 "Normal"),
             "insurance": [{"sequence": 1, "focal": True, "coverage": {"display": "Medicare"}}],
             "item": [item], "total": {"value": 129.16, "currency": "USD"}}
    eob = {"resourceType": "ExplanationOfBenefit", "id": _id(source, "eob"), "status": "active",
           "type": claim["type"], "use": "claim", "patient": subject, "billablePeriod": claim["billablePeriod"],
           "created": when, "insurer": {"display": "Medicare"}, "provider": prov,
           "claim": {"reference": f"Claim/{claim_id}"}, "outcome": "complete",
           "insurance": [{"focal": True, "coverage": {"display": "Medicare"}}],
           "item": [{**item, "adjudication": [{"category": _cc(
               "https://bluebutton.cms.gov/resources/codesystem/adjudication", "https://bluebutton.cms.gov/"
               "resources/variables/line_bene_pmt_amt", "Line Beneficiary Payment Amount"),
               "amount": {"value": 25.83, "currency": "USD"}}]}],
           "total": [{"category": _cc("http://terminology.hl7.org/CodeSystem/adjudication", "submitted",
                                      "Submitted Amount"), "amount": {"value": 129.16, "currency": "USD"}}],
           "payment": {"amount": {"value": 103.33, "currency": "USD"}}}
    return [claim, eob]


def _provenance(base: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One per patient, naming every resource of that patient, as Synthea writes it."""
    by_patient: dict[str, list[str]] = defaultdict(list)
    for r in base:
        if r["resourceType"] == "Patient":
            by_patient[f"Patient/{r['id']}"].insert(0, f"Patient/{r['id']}")
            continue
        for element in ("subject", "patient"):
            ref = (r.get(element) or {}).get("reference")
            if isinstance(ref, str) and ref.startswith("Patient/"):
                by_patient[ref].append(f"{r['resourceType']}/{r['id']}")
                break
    return [{"resourceType": "Provenance", "id": _id(patient, "provenance"),
             "target": [{"reference": t} for t in targets], "recorded": "2024-01-01T00:00:00+00:00",
             "agent": [{"type": _cc("http://terminology.hl7.org/CodeSystem/provenance-participant-type", "author",
                                    "Author"), "who": {"display": "Synthea"}}]}
            for patient, targets in by_patient.items()]


def base_set(directory: Path = TEN) -> dict[str, list[bytes]]:
    """The fixture set with the derived types, as NDJSON lines per resource type (one file each)."""
    base = [orjson.loads(ln) for f in sorted(directory.glob("*.ndjson.gz"))
            for ln in gzip.decompress(f.read_bytes()).splitlines() if ln.strip()]
    everything = base + _derived(base)
    everything += _provenance(everything)
    out: dict[str, list[bytes]] = defaultdict(list)
    for r in everything:
        out[r["resourceType"]].append(orjson.dumps(r))
    return dict(out)


def population(copies: int, directory: Path = TEN) -> dict[str, list[bytes]]:
    """``copies`` of the base set, each under fresh ids (every UUID rewritten consistently within a copy)."""
    base = base_set(directory)
    out: dict[str, list[bytes]] = {rtype: [] for rtype in base}
    for _ in range(copies):
        salt = uuid.uuid4().hex

        def fresh(m: re.Match[bytes], salt: str = salt) -> bytes:
            return str(uuid.uuid5(uuid.UUID(int=0), salt + m.group().decode())).encode()

        for rtype, lines in base.items():
            out[rtype].extend(_UUID.sub(fresh, b"\n".join(lines)).split(b"\n"))
    return out
