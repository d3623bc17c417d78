"""Sensitivity labels from meta.security and the code table; the fixtures' sensitive codes come out labelled."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from services.ingest.labels import SENSITIVE, LabelTable, load_table

# Fixture codes in each sensitive category (display text as the fixtures carry it).
EXPECTED = {
    "73595000": {"PSY"},  # Stress (finding)
    "80583007": {"PSY"},  # Severe anxiety (panic)
    "171207006": {"PSY"},  # Depression screening
    "10939881000119105": {"ETH"},  # Unhealthy alcohol drinking behavior
    "361055000": {"ETH"},  # Misuses drugs
    "713106006": {"ETH"},  # Screening for drug abuse
    "706893006": {"SDV"},  # Victim of intimate partner abuse
    "866148006": {"SDV"},  # Screening for domestic abuse
    "72892002": {"SEX"},  # Normal pregnancy
    "714812005": {"SEX"},  # Induced termination of pregnancy
    "65200003": {"SEX"},  # Insertion of intrauterine contraceptive device
    "424619006": {"SEX"},  # Prenatal visit (Encounter.type)
    "807283": {"SEX"},  # Mirena (RxNorm)
    "269828009": {"STD"},  # Syphilis infectious titer test
    "31676001": {"HIV"},  # HIV antigen test
    "433114000": {"GDIS"},  # HER2 gene detection
    "840539006": {"NOTIFIABLE"},  # COVID-19
}


def _by_code(resources: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in resources:
        for element in ("code", "type", "medicationCodeableConcept", "reasonCode"):
            value = r.get(element)
            for concept in value if isinstance(value, list) else [value]:
                for coding in (concept or {}).get("coding", []) if isinstance(concept, dict) else []:
                    out[coding["code"]].append(r)
    return out


def test_fixture_codes_in_sensitive_categories_come_out_labelled(ten_resources: list[dict[str, Any]]) -> None:
    table = load_table()
    found = _by_code(ten_resources)
    for code, labels in EXPECTED.items():
        assert found[code], f"fixture code {code} not in the 10-patient set"
        for r in found[code]:
            assert labels <= set(table.labels_for(r)), (code, r["resourceType"], table.labels_for(r))
    labelled = sum(1 for r in ten_resources if table.labels_for(r))
    assert labelled > 300
    assert set().union(*(set(table.labels_for(r)) for r in ten_resources)) == SENSITIVE


def test_ordinary_codes_carry_no_label(ten_resources: list[dict[str, Any]]) -> None:
    table = load_table()
    found = _by_code(ten_resources)
    for code in ("698314001", "185349003", "59621000", "140"):  # consultation, check-up, hypertension, flu shot
        for r in found[code]:
            assert table.labels_for(r) == [], (code, table.labels_for(r))


def test_meta_security_and_icd10_prefixes() -> None:
    table = load_table()
    doc = {"resourceType": "Condition", "meta": {"security": [
        {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "PSY"},
        {"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}]},
        "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "B20.1"}]}}
    assert table.labels_for(doc) == ["HIV", "PSY"]


def test_the_table_is_configurable(tmp_path: Path) -> None:
    path = tmp_path / "labels.json"
    path.write_text(json.dumps({"code_systems": {"loinc": {"match": "exact", "uris": ["http://loinc.org"]}},
                                "value_sets": {"GDIS": {"loinc": ["1234-5"]}}}))
    table = LabelTable(json.loads(path.read_text()))
    doc = {"resourceType": "Observation", "code": {"coding": [{"system": "http://loinc.org", "code": "1234-5"}]}}
    assert table.labels_for(doc) == ["GDIS"]
    assert load_table().labels_for(doc) == []


# --- value sets across code systems -------------------------------------------------------

ICD10, ICD10CM, ICD10CN = ("http://hl7.org/fhir/sid/icd-10", "http://hl7.org/fhir/sid/icd-10-cm",
                           "urn:oid:2.16.156.10011.2.3.3.11")
RXNORM, ATC, LOINC = "http://www.nlm.nih.gov/research/umls/rxnorm", "http://www.whocc.no/atc", "http://loinc.org"


def coded(rtype: str, element: str, system: str, code: str) -> dict[str, Any]:
    return {"resourceType": rtype, element: {"coding": [{"system": system, "code": code}]}}


@pytest.mark.parametrize(("system", "code", "labels"), [
    (ICD10, "B20", ["HIV"]), (ICD10, "B24", ["HIV"]), (ICD10, "B23.8", ["HIV"]), (ICD10, "Z21", ["HIV"]),
    (ICD10CM, "B20", ["HIV"]), (ICD10CM, "b20", ["HIV"]), (ICD10CN, "B20.000x001", ["HIV"]),
    ("urn:oid:2.16.840.1.113883.6.90", "B20", ["HIV"]), ("urn:oid:2.16.840.1.113883.6.3", "B22.7", ["HIV"]),
    (ICD10, "B25", []), (ICD10, "B19.9", ["NOTIFIABLE"]), (ICD10, "O98.7", ["HIV", "SEX"]),
    (ICD10CM, "F10.20", ["ETH"]), (ICD10CM, "F19.99", ["ETH"]), (ICD10CM, "F20.9", ["PSY"]),
    (ICD10CM, "F32.A", ["PSY"]), (ICD10CM, "F48.1", ["PSY"]), (ICD10CM, "F50.0", []), (ICD10CM, "F09", []),
    (ICD10CM, "Z71.41", ["ETH"]), (ICD10CN, "A51.000", ["STD"]), (ICD10, "A64", ["STD"]), (ICD10, "A65", []),
    (ICD10CM, "Q90.9", ["GDIS"]), (ICD10CM, "T74.21XA", ["SDV"]), (ICD10, "U07.1", ["NOTIFIABLE"]),
])
def test_icd10_in_all_three_editions_with_ranges(system: str, code: str, labels: list[str]) -> None:
    assert load_table().labels_for(coded("Condition", "code", system, code)) == labels


@pytest.mark.parametrize(("system", "code", "labels"), [
    (LOINC, "56888-1", ["HIV"]), (LOINC, "25836-8", ["HIV"]), (LOINC, "7917-8", ["HIV"]), (LOINC, "8480-6", []),
    ("urn:oid:2.16.840.1.113883.6.1", "68961-2", ["HIV"]),
    (RXNORM, "1999673", ["HIV"]), (RXNORM, "1433873", ["HIV"]), (RXNORM, "11413", ["HIV"]), (RXNORM, "313782", []),
    (ATC, "J05AR03", ["HIV"]), (ATC, "J05AG01", ["HIV"]), (ATC, "J05AJ03", ["HIV"]), (ATC, "J05AF07", ["HIV"]),
    (ATC, "J05AF10", []), (ATC, "J05AE30", []), (ATC, "J05AE08", ["HIV"]), (ATC, "J05AB01", []),
    (ATC, "N07BC02", ["ETH"]), (ATC, "N05AH03", ["PSY"]), (ATC, "G03AA07", ["SEX"]),
    ("http://snomed.info/sct", "86406008", ["HIV"]), ("http://snomed.info/sct", "788075003", ["HIV"]),
])
def test_tests_and_medicines_in_loinc_rxnorm_and_atc(system: str, code: str, labels: list[str]) -> None:
    assert load_table().labels_for(coded("MedicationRequest", "medicationCodeableConcept", system, code)) == labels


def test_every_coding_of_every_resource_type_is_read() -> None:
    table = load_table()
    b20 = {"coding": [{"system": ICD10CM, "code": "B20"}]}
    claim = {"resourceType": "Claim", "diagnosis": [{"sequence": 1, "diagnosisCodeableConcept": b20}]}
    eob = {"resourceType": "ExplanationOfBenefit", "contained": [{"resourceType": "ServiceRequest",
                                                                  "reasonCode": [b20]}]}
    obs = {"resourceType": "Observation", "code": {"coding": [{"system": LOINC, "code": "8480-6"}]},
           "component": [{"code": {"coding": [{"system": LOINC, "code": "25836-8"}]}}]}
    med = {"resourceType": "Medication", "ingredient": [{"itemCodeableConcept": {"coding": [
        {"system": ATC, "code": "J05AR03"}]}}]}
    value = {"resourceType": "Observation", "valueCodeableConcept": b20}
    ext = {"resourceType": "Encounter", "extension": [{"url": "x", "valueCoding": {"system": ICD10, "code": "B21"}}]}
    for resource in (claim, eob, obs, med, value, ext):
        assert table.labels_for(resource) == ["HIV"], resource
    assert table.labels_for({"resourceType": "Observation", "meta": {"tag": [{"system": ICD10, "code": "B20"}]}}) == []


@pytest.mark.parametrize(("value_sets", "error"), [
    ({"HIV": {"icd10": ["B24-B20"]}}, "range"), ({"HIV": {"icd10": ["B20-C24"]}}, "range"),
    ({"HIVX": {"icd10": ["B20"]}}, "unknown sensitivity label"), ({"HIV": {"icd9": ["042"]}}, "unknown code system"),
])
def test_a_table_that_cannot_be_read_fails_at_load(value_sets: dict[str, Any], error: str) -> None:
    doc = {"code_systems": {"icd10": {"match": "hierarchy", "uris": [ICD10]}}, "value_sets": value_sets}
    with pytest.raises(ValueError, match=error):
        LabelTable(doc)


def test_deep_nesting_is_walked_without_recursion() -> None:
    node: dict[str, Any] = {"coding": [{"system": ICD10, "code": "B20"}]}
    for _ in range(5000):
        node = {"extension": [{"url": "x", "valueCodeableConcept": node}]}
    assert load_table().labels_for({"resourceType": "Basic", "code": node}) == ["HIV"]


def _coding(system: str, code: str) -> dict[str, Any]:
    return {"system": system, "code": code}


HIV_SCT = _coding("http://snomed.info/sct", "86406008")
HIV_ICD = _coding("http://hl7.org/fhir/sid/icd-10", "B20.1")  # matched hierarchically (B20)
PREGNANCY = _coding("http://snomed.info/sct", "72892002")
CRAFTED = [
    # codes in the resource's own meta are not labelled; meta.security's confidentiality codes are
    {"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/p1"},
     "code": {"coding": [HIV_ICD]}, "meta": {"tag": [PREGNANCY], "security": [_coding("x", "PSY")]}},
    # a contained resource's codes, its meta's too, and a Coding inside a primitive's extension
    {"resourceType": "Observation", "id": "o1", "status": "final", "code": {"text": "x"},
     "contained": [{"resourceType": "Condition", "id": "k", "subject": {"reference": "Patient/p1"},
                    "meta": {"tag": [HIV_SCT]}, "code": {"coding": [PREGNANCY]}}],
     "_status": {"extension": [{"url": "http://example.org/why", "valueCoding": HIV_ICD}]}},
    {"resourceType": "Observation", "id": "o2", "status": "final", "code": {"coding": [PREGNANCY]},
     "valueQuantity": {"value": 1, "system": "http://snomed.info/sct", "code": "86406008"}},
]


@pytest.mark.parametrize("where", ["synthea-10-patients", "synthea-100-patients", "crafted"])
def test_labels_from_the_validation_walk_are_the_labels_of_the_table_walk(
        where: str, all_fixture_lines: dict[str, list[bytes]]) -> None:
    """``labels_of`` (codes validation found) gives exactly what ``labels_for`` (a walk of its own) gives."""
    import orjson

    from services.fhir.validation import check_resource

    table = load_table()
    docs = CRAFTED if where == "crafted" else [
        orjson.loads(ln) for name, lines in all_fixture_lines.items() if name.startswith(where) for ln in lines]
    labelled = 0
    for doc in docs:
        verdict = check_resource(doc, "R")
        assert verdict.accepted, verdict.errors
        assert table.labels_of(doc, verdict.coded) == table.labels_for(doc), doc["id"]
        labelled += bool(table.labels_for(doc))
    assert labelled >= {"crafted": 3, "synthea-10-patients": 10}.get(where, 0)  # the 100-patient set: Patients
