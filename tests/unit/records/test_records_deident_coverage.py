"""De-identification over every resource type of a Synthea export, at both levels, and its rules one by one.

Every resource of the shipped fixture sets (13 types) plus one resource of each
of the other 11 types of a full Synthea export, carrying the patient's name,
MRN, phone and address line in every free-text place, goes through
``pseudonymize`` and ``safe_harbor``: no patient's name, identifier value,
phone, address line or id may survive anywhere in the output, while codes,
references and dates (per level) do.
"""

from __future__ import annotations

import gzip
import json
from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from services.adapters.config import REPO_ROOT
from services.records import deident
from tests.unit.records.synthea_types import more_types, whom

FIXTURES = REPO_ROOT / "deploy" / "demo" / "fixtures"
LEVELS = ("pseudonymize", "safe_harbor")
SYNTHEA_TYPES = {
    "AllergyIntolerance", "CarePlan", "CareTeam", "Claim", "Condition", "Device", "DiagnosticReport",
    "DocumentReference", "Encounter", "ExplanationOfBenefit", "ImagingStudy", "Immunization", "Location",
    "Medication", "MedicationAdministration", "MedicationRequest", "Observation", "Organization", "Patient",
    "Practitioner", "PractitionerRole", "Procedure", "Provenance", "SupplyDelivery"}


def _load(directory: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for f in sorted(directory.glob("*.ndjson.gz"))
            for line in gzip.decompress(f.read_bytes()).splitlines() if line.strip()]


@pytest.fixture(scope="module")
def export() -> list[dict[str, Any]]:
    """Both fixture sets, plus the missing Synthea types for each fixture patient."""
    resources = _load(FIXTURES / "synthea-10-patients") + _load(FIXTURES / "synthea-100-patients")
    patients = [r for r in resources if r["resourceType"] == "Patient"]
    return resources + [r for n, p in enumerate(patients) for r in more_types(p, n)]


def needles(patient: dict[str, Any]) -> set[str]:
    """What identifies one patient: id, names, identifier values, phones and e-mails, address lines."""
    out = {patient["id"], whom(patient)}
    for name in patient.get("name", []):
        given, family = name.get("given", []), name.get("family", "")
        out.update(given)
        out.update(f"{g} {family}" for g in given)
        out.add(family)
    out.update(i["value"] for i in patient.get("identifier", []))
    out.update(t["value"] for t in patient.get("telecom", []))
    out.update(line for a in patient.get("address", []) for line in a.get("line", []))
    return {n for n in out if n and len(n) > 3}


def _subject(resource: dict[str, Any]) -> str | None:
    refs = deident.patient_refs(resource)
    return resource["id"] if resource["resourceType"] == "Patient" else (min(refs) if refs else None)


def _collect(node: Any, keys: set[str], strings: set[str]) -> None:
    if isinstance(node, dict):
        keys.update(node)
        for v in node.values():
            _collect(v, keys, strings)
    elif isinstance(node, list):
        for v in node:
            _collect(v, keys, strings)
    else:
        strings.add(str(node))


@pytest.mark.parametrize("level", LEVELS)
def test_no_patient_identifier_survives_in_any_resource_of_any_type(export: list[dict[str, Any]],
                                                                    level: str) -> None:
    assert {r["resourceType"] for r in export} == SYNTHEA_TYPES
    every = set().union(*(needles(p) for p in export if p["resourceType"] == "Patient"))
    fn = deident.DEIDENTIFIERS[level]
    released: dict[str, set[str]] = {}  # every distinct string released, per type (keys included)
    seen: Counter[str] = Counter()
    for r in export:
        out = fn(r, _subject(r), "rp-x")
        keys: set[str] = set()
        _collect({**out, "extension": [e for e in out.get("extension", []) if e["url"] != deident.AGE_GROUP_URL]},
                 keys, released.setdefault(r["resourceType"], set()))
        released[r["resourceType"]].update(keys)
        assert _only_coded_displays(out), (r["resourceType"], out)
        assert not {"div", "data", "note", "title", "valueString", "description", "conclusion", "comment",
                    "line", "city", "telecom", "identifier", "name", "uid", "serialNumber", "lotNumber",
                    "udiCarrier"} & keys, (r["resourceType"], sorted(keys))
        seen[r["resourceType"]] += 1
    joined = {t: "\n".join(v) for t, v in released.items()}
    leaks = [(t, n) for t, text in joined.items() for n in every if n in text]
    assert not leaks, leaks[:10]
    assert set(seen) == SYNTHEA_TYPES and sum(seen.values()) > 7000


def _only_coded_displays(node: Any, parent: str = "") -> bool:
    """``display`` survives only inside a Coding (the code system's wording), never beside a reference."""
    if isinstance(node, dict):
        if "display" in node and "code" not in node and "system" not in node:
            return False
        return all(_only_coded_displays(v, k) for k, v in node.items())
    if isinstance(node, list):
        return all(_only_coded_displays(v, parent) for v in node)
    return True


@pytest.mark.parametrize("level", LEVELS)
def test_what_is_released_stays_useful(export: list[dict[str, Any]], level: str) -> None:
    fn = deident.DEIDENTIFIERS[level]
    for r in (x for x in export if x["resourceType"] in ("Condition", "Observation", "Claim")):
        out = fn(r, _subject(r), "rp-x")
        assert out["id"] == r["id"] and out["resourceType"] == r["resourceType"]
        coded = r.get("code") or r.get("type")
        assert (out.get("code") or out.get("type"))["coding"] == [
            {k: v for k, v in c.items() if k != "extension"} for c in coded["coding"]]
        assert (out.get("subject") or out.get("patient")) == {"reference": "Patient/rp-x"}
    obs = next(fn(r, _subject(r), "rp-x") for r in export if r["resourceType"] == "Observation")
    assert obs["component"][0]["valueQuantity"]["value"] == 120
    assert obs["effectiveDateTime"] == ("2019-03-04T09:30:00-05:00" if level == "pseudonymize" else "2019")
    eob = next(fn(r, _subject(r), "rp-x") for r in export if r["resourceType"] == "ExplanationOfBenefit")
    assert [c["resourceType"] for c in eob["contained"]] == ["ServiceRequest", "Coverage"]
    assert eob["contained"][0]["subject"] == {"reference": "Patient/rp-x"}
    assert eob["referral"] == {"reference": "#referral"} and eob["payment"]["amount"]["value"] == 103.33


def test_a_patients_safe_harbor_keeps_state_zip3_year_and_coded_extensions() -> None:
    patient = {"resourceType": "Patient", "id": "p1", "birthDate": "1960-04-13", "gender": "female",
               "address": [{"line": ["601 CROSS STREET"], "city": "BURLINGTON", "state": "KS",
                            "postalCode": "668391105", "country": "US", "extension": [
                                {"url": "http://hl7.org/fhir/StructureDefinition/geolocation", "extension": [
                                    {"url": "latitude", "valueDecimal": 38.2}, {"url": "longitude",
                                                                              "valueDecimal": -95.6}]}]},
                           {"state": "WY", "postalCode": "82301"}],
               "extension": [{"url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex",
                              "valueCode": "F"},
                             {"url": "http://synthetichealth.github.io/synthea/disability-adjusted-life-years",
                              "valueDecimal": 3.8}]}
    out = deident.safe_harbor(patient, "p1", "rp-x", today=date(2026, 1, 1))
    assert out == {"resourceType": "Patient", "id": "rp-x", "birthDate": "1960", "gender": "female",
                   "address": [{"state": "KS", "postalCode": "668", "country": "US"},
                               {"state": "WY", "postalCode": "000"}],  # 823: fewer than 20,000 people
                   "extension": patient["extension"]}


def test_ages_over_89_are_one_category_under_safe_harbor_only() -> None:
    cond = {"resourceType": "Condition", "id": "c", "subject": {"reference": "Patient/p1"},
            "onsetAge": {"value": 93, "unit": "a", "system": "http://unitsofmeasure.org", "code": "a"}}
    assert deident.safe_harbor(cond, "p1", "rp-x")["onsetAge"] == {
        "value": 90, "comparator": ">=", "unit": "a", "system": "http://unitsofmeasure.org", "code": "a"}
    assert deident.safe_harbor({**cond, "onsetAge": {"value": 45, "unit": "a"}}, "p1", "rp-x")["onsetAge"] == {
        "value": 45, "unit": "a"}
    assert deident.pseudonymize(cond, "p1", "rp-x")["onsetAge"]["value"] == 93


def test_free_text_cannot_hide_inside_kept_elements_or_unknown_ones() -> None:
    """An extension inside a kept code, an unknown element, a new resource type: text in them goes."""
    who = "Sumiko254 Larue605 MRN-4711 555-0101"
    res = {"resourceType": "FutureThing", "id": "f1", "status": "final", "subject": {"reference": "Patient/p1"},
           "code": {"coding": [{"system": "http://loinc.org", "code": "1-8", "extension": [
               {"url": "https://x.example/e", "valueString": who}]}], "extension": [
               {"url": "https://x.example/e", "valueString": who, "extension": [{"url": "n", "valueString": who}]}]},
           "someNewText": who, "nested": {"deeper": [{"words": who, "count": 3}]},
           "valueMarkdown": who, "patientInstruction": who,
           "recorder": {"reference": "https://evil.example/Patient/p1"},
           "other": {"reference": "Patient/p2"}, "sibling": {"reference": "RelatedPerson/r1"},
           "performer": [{"reference": "Practitioner/pr1"}, {"reference": "urn:uuid:" + "1" * 8 + "-1111-1111-1111-"
                                                            + "1" * 12}],
           "conditional": {"reference": "Patient?identifier=urn:mrn|MRN-4711"}}
    for level in LEVELS:
        out = deident.DEIDENTIFIERS[level](res, "p1", "rp-x")
        assert out == {"resourceType": "FutureThing", "id": "f1", "status": "final",
                       "subject": {"reference": "Patient/rp-x"},
                       "code": {"coding": [{"system": "http://loinc.org", "code": "1-8"}]},
                       "nested": {"deeper": [{"count": 3}]},
                       "performer": res["performer"]}, level


def test_a_patient_reference_without_a_pseudonym_is_dropped_not_released() -> None:
    cond = {"resourceType": "Condition", "id": "c", "subject": {"reference": "Patient/p1"},
            "asserter": {"reference": "Patient/p1"}}
    assert deident.pseudonymize(cond, None, "rp-x") == {"resourceType": "Condition", "id": "c"}
    assert deident.pseudonymize({"resourceType": "Patient", "id": "p1"}, "p1", None) == {"resourceType": "Patient"}


def test_the_rules_file_is_checked_when_loaded(tmp_path: Path) -> None:
    bad = tmp_path / "rules.toml"
    bad.write_text('[profile.x]\n[[profile.x.rule]]\npath = "Patient.name"\nmethod = "shred"\n')
    with pytest.raises(ValueError, match="not understood"):
        deident.load_profiles(bad)
    bad.write_text('[profile.x]\n[[profile.x.rule]]\npath = "Patient.birthDate"\nmethod = "generalize"\n'
                   'to = "month"\n')
    with pytest.raises(ValueError, match="not understood"):
        deident.load_profiles(bad)
    bad.write_text('[profile.x]\n[[profile.x.rule]]\npath = "nodesByType(\'Nope\')"\nmethod = "keep"\n')
    with pytest.raises(ValueError, match="unknown type"):
        deident.load_profiles(bad)


def test_every_rule_names_the_hipaa_classes_it_removes_or_why_it_keeps() -> None:
    import tomllib

    doc = tomllib.loads(deident.RULES_FILE.read_text())
    rules = [r for p in doc["profile"].values() for r in p["rule"]]
    assert all(r.get("why") for r in rules)
    classes = {c for r in rules if r["method"] != "keep" for c in r.get("hipaa", [])}
    assert classes == set("ABCDEFGHIJKLMNOPQR")  # the 18 classes of 45 CFR 164.514(b)(2)(i)
