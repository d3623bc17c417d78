"""Sensitivity labels from meta.security and the code table; the fixtures' sensitive codes come out labelled."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

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
    path.write_text(json.dumps({"systems": {"http://loinc.org": {"codes": {"1234-5": ["GDIS"]}}}}))
    table = LabelTable(json.loads(path.read_text()))
    doc = {"resourceType": "Observation", "code": {"coding": [{"system": "http://loinc.org", "code": "1234-5"}]}}
    assert table.labels_for(doc) == ["GDIS"]
    assert load_table().labels_for(doc) == []
