"""The analytic store's flattening equals its declared SQL on FHIR ViewDefinitions.

``flatten.rows`` / ``flatten.person_of`` (the fast path the store runs) and
the shipped views in ``services/records/analytics/views/`` run through
``viewdef.py`` must give the same rows for every resource of the shipped
Synthea fixtures, the Synthea-shaped resources of the types the fixtures do
not carry, and hand-made edge cases: the code cannot drift from the contract.
"""

from __future__ import annotations

import copy
import gzip
import json
import re
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from services.records.analytics import flatten, viewdef
from tests.unit.records.synthea_types import more_types

FIXTURES = Path(__file__).resolve().parents[3] / "deploy" / "demo" / "fixtures"
SETS = ("synthea-10-patients", "synthea-100-patients")
SCT = "http://snomed.info/sct"


def _resources(name: str) -> Iterator[dict[str, Any]]:
    for path in sorted((FIXTURES / name).glob("*.ndjson.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as f:
            yield from (json.loads(line) for line in f if line.strip())


def _patient_of(resource: dict[str, Any]) -> str | None:
    if resource.get("resourceType") == "Patient":
        return resource["id"]
    for element in ("subject", "patient"):
        ref = (resource.get(element) or {}).get("reference", "")
        if ref.startswith("Patient/"):
            return ref.removeprefix("Patient/")
    return None


def _patients() -> list[tuple[dict[str, Any] | None, list[dict[str, Any]]]]:
    """Each fixture patient with their resources, plus the Synthea-shaped ones of the types the fixtures lack."""
    by_patient: dict[str, list[dict[str, Any]]] = defaultdict(list)
    patients: dict[str, dict[str, Any]] = {}
    seen: set[tuple[str, str]] = set()
    for name in SETS:  # the 10-patient set's patients are also in the 100-patient one: each resource once
        for res in _resources(name):
            pid = _patient_of(res)
            if pid is None or (res["resourceType"], res["id"]) in seen:
                continue
            seen.add((res["resourceType"], res["id"]))
            if res["resourceType"] == "Patient":
                patients[pid] = res
            by_patient[pid].append(res)
    for n, pid in enumerate(sorted(patients)[:20]):
        by_patient[pid] += more_types(patients[pid], n)
    return [(patients.get(pid), docs) for pid, docs in sorted(by_patient.items())]


PATIENTS = _patients()


def _edge_cases() -> list[dict[str, Any]]:
    """What the fixtures never exercise: fallbacks, partial dates, implausible codes, missing elements."""
    subject = {"reference": "Patient/edge"}
    return [
        {"resourceType": "Condition", "id": "c1", "subject": subject, "onsetString": "as a child",
         "recordedDate": "2021-03", "abatementDateTime": "2022-05-06",
         "code": {"coding": [{"system": SCT, "code": "44054006"}, {"system": "free text", "code": "E11.9"},
                             {"system": SCT, "code": "not a code!"}, {"system": SCT, "code": "44054006"}]}},
        {"resourceType": "Condition", "id": "c2", "subject": subject, "onsetPeriod": {"start": "2019-12-31"},
         "code": {"text": "only text"}},
        {"resourceType": "Condition", "id": "c3", "subject": subject, "onsetAge": {"value": 3},
         "code": {"coding": [{"code": "x"}]}},
        {"resourceType": "Observation", "id": "o1", "subject": subject, "status": "final",
         "effectiveInstant": "2020-02-03T04:05:06Z", "issued": "2021-01-01T00:00:00Z",
         "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7"}]}},
        {"resourceType": "Observation", "id": "o3", "subject": subject, "status": "final",
         "effectivePeriod": {"end": "2020-01-01"}, "issued": "2021-01-01T00:00:00Z",
         "code": {"coding": [{"system": "http://loinc.org", "code": "2093-3"}]}},
        {"resourceType": "Observation", "id": "o2", "subject": subject, "status": "final",
         "issued": "2020-07-08T09:00:00.000+08:00",
         "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4"}]}},
        {"resourceType": "Encounter", "id": "e1", "subject": subject, "status": "finished",
         "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
         "period": {"end": "2020-12-31T23:59:59+13:00"}},
        {"resourceType": "Encounter", "id": "e2", "subject": subject, "status": "finished",
         "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
         "type": [{"coding": [{"system": SCT, "code": "185349003"}]}, {"text": "walk-in"}],
         "reasonCode": [{"coding": [{"system": SCT, "code": "185349003"}, {"system": SCT, "code": "38341003"}]}],
         "period": {"start": "2020-01-05"}},
        {"resourceType": "Encounter", "id": "e3", "subject": subject, "status": "planned",
         "class": {"code": "AMB"}},
        {"resourceType": "Procedure", "id": "p1", "subject": subject, "status": "completed",
         "performedPeriod": {"start": "2018-06-01T10:00:00Z"}, "code": {"coding": [{"system": SCT, "code": "1"}]}},
        {"resourceType": "MedicationRequest", "id": "m1", "subject": subject, "status": "active",
         "intent": "order", "authoredOn": "2020-04-04", "medicationReference": {"reference": "Medication/x"}},
        {"resourceType": "MedicationStatement", "id": "s1", "subject": subject, "status": "active",
         "effectiveDateTime": "2020", "dateAsserted": "2020-05-05",
         "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                                   "code": "860975"}]}},
        {"resourceType": "MedicationStatement", "id": "s2", "subject": subject, "status": "active",
         "effectivePeriod": {"start": "2020-06-06"},
         "medicationCodeableConcept": {"coding": [{"system": "http://www.whocc.no/atc", "code": "A10BA02"}]}},
        {"resourceType": "Immunization", "id": "i1", "patient": subject, "status": "completed",
         "occurrenceString": "spring 2019", "recorded": "2019-04-01",
         "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "140"}]}},
        {"resourceType": "DiagnosticReport", "id": "d1", "subject": subject, "status": "final",
         "effectiveDateTime": "2021-02-02T02:02:02+02:00", "code": {"coding": [{"system": "http://loinc.org",
                                                                                "code": "58410-2"}]}},
        # Every candidate present with a different date: the first one wins, so an order change shows.
        {"resourceType": "Condition", "id": "c4", "subject": subject, "onsetDateTime": "2010-01-01",
         "recordedDate": "2011-01-01", "abatementDateTime": "2012-01-01", "code": {"coding": [{"code": "c4"}]}},
        {"resourceType": "Encounter", "id": "e4", "subject": subject, "status": "finished", "class": {"code": "e4"},
         "period": {"start": "2010-01-01", "end": "2011-01-01"}},
        {"resourceType": "Observation", "id": "o4", "subject": subject, "status": "final",
         "effectiveDateTime": "2010-01-01", "issued": "2011-01-01T00:00:00Z", "code": {"coding": [{"code": "o4"}]}},
        {"resourceType": "MedicationStatement", "id": "s4", "subject": subject, "status": "active",
         "effectiveDateTime": "2010-01-01", "dateAsserted": "2011-01-01",
         "medicationCodeableConcept": {"coding": [{"code": "s4"}]}},
        {"resourceType": "Immunization", "id": "i4", "patient": subject, "status": "completed",
         "occurrenceDateTime": "2010-01-01", "recorded": "2011-01-01", "vaccineCode": {"coding": [{"code": "i4"}]}},
        {"resourceType": "DiagnosticReport", "id": "d4", "subject": subject, "status": "final",
         "effectiveDateTime": "2010-01-01", "issued": "2011-01-01T00:00:00Z", "code": {"coding": [{"code": "d4"}]}},
        {"resourceType": "AllergyIntolerance", "id": "a4", "patient": subject, "onsetDateTime": "2010-01-01",
         "recordedDate": "2011-01-01", "code": {"coding": [{"code": "a4"}]}},
        {"resourceType": "AllergyIntolerance", "id": "a1", "patient": subject, "onsetPeriod": {"start": "2001-01-01"},
         "recordedDate": "2002-02-02", "code": {"coding": [{"system": SCT, "code": "91935009"}]}},
    ]


EDGE_PATIENTS = [
    {"resourceType": "Patient", "id": "edge", "gender": "other", "birthDate": "1950",
     "address": [{"line": ["1 Road"], "district": "far too long a district name" * 3, "city": "Guiyang"},
                 {"city": "  Zunyi "}]},
    {"resourceType": "Patient", "id": "edge2", "birthDate": "1999-12-31", "gender": "nonbinary",
     "address": [{"line": ["2 Road"]}, {"district": "Nanming", "city": "Guiyang"}]},
    {"resourceType": "Patient", "id": "edge3"},
]


def _as_json_path(fhirpath: str) -> str:
    """``onset.ofType(Period).start`` as the JSON path flatten reads: ``onsetPeriod.start``."""
    return re.sub(r"\.ofType\((\w)(\w*)\)", lambda m: m.group(1).upper() + m.group(2), fhirpath)


def test_every_flattened_type_and_the_patient_has_one_view_with_its_date_candidates_in_order() -> None:
    views = viewdef.shipped()
    assert set(views) == set(flatten.TYPES) | {"Patient"}
    for rtype, paths in flatten.DATES.items():
        columns = {c["name"]: c["path"] for s in views[rtype]["select"] for c in s.get("column", [])}
        dates = [_as_json_path(path) for name, path in columns.items() if name.startswith("date_")]
        assert tuple(dates) == paths, rtype


def test_native_flattening_equals_the_views_over_the_fixtures() -> None:
    """Every fixture patient: the same Person and the same fact rows, in the same order."""
    checked = set()
    for n, (patient, docs) in enumerate(PATIENTS):
        native_who = flatten.person_of(patient, n, n % 2 == 0)
        assert viewdef.person(patient, n, n % 2 == 0) == native_who
        resources = [(r, "gy-hosp-001") for r in docs]
        native = flatten.rows(native_who, resources)
        assert viewdef.facts(native_who, resources) == native, f"patient {n} differs"
        checked |= {r["rtype"] for r in native}
    # Every type compared on real rows but MedicationStatement, which Synthea does not write (the edge cases have it).
    assert checked == set(flatten.TYPES) - {"MedicationStatement"}


@pytest.mark.parametrize("patient", EDGE_PATIENTS, ids=lambda p: p["id"])
def test_native_flattening_equals_the_views_on_edge_cases(patient: dict[str, Any]) -> None:
    who = flatten.person_of(patient, 7, True)
    assert viewdef.person(patient, 7, True) == who
    resources = [(r, "gy-hosp-002") for r in _edge_cases()]
    native = flatten.rows(who, resources)
    assert viewdef.facts(who, resources) == native
    assert {r["rtype"] for r in native} == set(flatten.TYPES)


def test_edge_cases_take_the_fallbacks_the_views_declare() -> None:
    """The edge cases really reach the fallbacks (else the equality above would prove little)."""
    who = flatten.person_of(EDGE_PATIENTS[0], 1, False)
    assert who.district == "Zunyi" and who.birth is None and who.sex == "other"
    assert flatten.person_of(EDGE_PATIENTS[1], 1, False).district == "Nanming"
    rows = {(r["rtype"], str(r["event_date"]), r["system"], r["code"])
            for r in flatten.rows(who, [(r, "h") for r in _edge_cases()])}
    assert ("Condition", "2022-05-06", SCT, "44054006") in rows  # abatement, the last candidate
    assert ("Condition", "2022-05-06", None, "E11.9") in rows  # implausible system dropped, code kept
    assert ("Condition", "2019-12-31", None, None) in rows  # no coding: one row without a code
    assert ("Encounter", "2020-12-31", "http://terminology.hl7.org/CodeSystem/v3-ActCode", "IMP") in rows
    assert ("MedicationStatement", "2020-05-05", "http://www.nlm.nih.gov/research/umls/rxnorm", "860975") in rows
    assert ("Observation", "2020-02-03", "http://loinc.org", "2345-7") in rows  # effectiveInstant
    assert ("Observation", "2021-01-01", "http://loinc.org", "2093-3") in rows  # a period without start: issued
    assert not any(code == "not a code!" for *_, code in rows)
    firsts = {code: when for _, when, _, code in rows if code in {"c4", "e4", "o4", "s4", "i4", "d4", "a4"}}
    assert firsts == dict.fromkeys(["c4", "e4", "o4", "s4", "i4", "d4", "a4"], "2010-01-01")
    assert not any(r[0] == "Encounter" and r[3] == "AMB" and r[2] is None for r in rows)  # e3: no date, no row


# --- the runner follows the spec on what it supports and refuses the rest -----------------------------------

TELECOM = {"resourceType": "Patient", "id": "pt1", "gender": "male",
           "telecom": [{"system": "phone", "use": "home"}, {"system": "email", "use": "work"}],
           "contact": [{"telecom": [{"system": "fax", "use": "work"}]}]}


def _view(*select: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"resourceType": "ViewDefinition", "resource": "Patient", "select": list(select), **extra}


def test_run_crosses_columns_with_foreach_and_concatenates_unionall() -> None:
    view = _view({"column": [{"name": "key", "path": "getResourceKey()"}]},
                 {"unionAll": [{"forEach": "telecom", "column": [{"name": "sys", "path": "system"}]},
                               {"forEach": "contact.telecom", "column": [{"name": "sys", "path": "system"}]}]})
    assert viewdef.run(viewdef.check(view), TELECOM) == [
        {"key": "pt1", "sys": "phone"}, {"key": "pt1", "sys": "email"}, {"key": "pt1", "sys": "fax"}]


def test_foreach_drops_and_foreachornull_keeps_a_resource_with_an_empty_collection() -> None:
    inner = {"column": [{"name": "city", "path": "city"}]}
    head = {"column": [{"name": "gender", "path": "gender"}]}
    assert viewdef.run(_view(head, {"forEach": "address", **inner}), TELECOM) == []
    assert viewdef.run(_view(head, {"forEachOrNull": "address", **inner}), TELECOM) == [{"gender": "male",
                                                                                            "city": None}]


def test_where_filters_resources() -> None:
    head = {"column": [{"name": "gender", "path": "gender"}]}
    assert viewdef.run(_view(head, where=[{"path": "gender = 'male'"}]), TELECOM) == [{"gender": "male"}]
    assert viewdef.run(_view(head, where=[{"path": "gender = 'female'"}]), TELECOM) == []
    with pytest.raises(viewdef.ViewError, match="not a boolean"):
        viewdef.run(_view(head, where=[{"path": "gender"}]), TELECOM)


def test_reference_key_follows_the_type_asked_for() -> None:
    obs = {"resourceType": "Observation", "id": "o", "subject": {"reference": "Patient/p9"},
           "performer": [{"reference": "Practitioner/d1"}]}
    view = {"resourceType": "ViewDefinition", "resource": "Observation", "select": [{"column": [
        {"name": "p", "path": "subject.getReferenceKey(Patient)"},
        {"name": "q", "path": "subject.getReferenceKey(Group)"},
        {"name": "r", "path": "performer.getReferenceKey()"}]}]}
    assert viewdef.run(viewdef.check(view), obs) == [{"p": "p9", "q": None, "r": "d1"}]


@pytest.mark.parametrize(("view", "message"), [
    (_view({"repeat": ["item"], "column": [{"name": "a", "path": "linkId"}]}), "repeat not supported"),
    (_view({"column": [{"name": "a", "path": "gender"}]}, constant=[{"name": "c", "valueString": "x"}]),
     "constant not supported"),
    (_view({"column": [{"name": "a", "path": "telecom.system", "collection": True}]}),
     "collection columns not supported"),
    (_view({"unionAll": [{"column": [{"name": "a", "path": "gender"}, {"name": "b", "path": "gender"}]},
                         {"column": [{"name": "b", "path": "gender"}, {"name": "a", "path": "gender"}]}]}),
     "unionAll branches give different columns"),
    (_view({"forEach": "telecom", "forEachOrNull": "telecom", "column": [{"name": "a", "path": "system"}]}),
     "forEach and forEachOrNull together"),
    (_view({"column": [{"name": "a", "path": "gender"}]}, {"column": [{"name": "a", "path": "gender"}]}),
     "unique"),
    ({"resourceType": "Patient"}, "not a ViewDefinition"),
])
def test_check_refuses_what_the_runner_does_not_support(view: dict[str, Any], message: str) -> None:
    with pytest.raises(viewdef.ViewError, match=message):
        viewdef.check(view)


def test_a_column_with_several_values_is_an_error_not_a_guess() -> None:
    with pytest.raises(viewdef.ViewError, match="gave 2 values"):
        viewdef.run(viewdef.check(_view({"column": [{"name": "s", "path": "telecom.system"}]})), TELECOM)


@pytest.mark.parametrize("path", ["$$", "gender +", "noSuchFunction()"])
def test_a_path_that_does_not_parse_or_run_is_a_view_error(path: str) -> None:
    with pytest.raises(viewdef.ViewError, match=r"FHIRPath expression .* (does not parse|failed)"):
        viewdef.run(viewdef.check(_view({"column": [{"name": "s", "path": path}]})), TELECOM)


# --- de-identification: no shipped view reads, and the check catches, what identifies or is free text --------

@pytest.mark.parametrize("path", [
    "name", "name.family", "identifier.value", "text.div", "telecom.value", "address.line", "address.postalCode",
    "address.text", "code.coding.display", "note.text", "id", "subject.reference", "`name`.given",
    "extension('http://example.org/x').value", "contact.name", "code.text", "subject.display",
])
def test_deidentification_check_catches_a_forbidden_path(path: str) -> None:
    bad = copy.deepcopy(viewdef.shipped()["Condition"])
    bad["select"][0]["column"].append({"name": "leak", "path": path})
    with pytest.raises(viewdef.ViewError, match="must not"):
        viewdef.check_deidentified(bad)


@pytest.mark.parametrize("where", ["forEach", "where"])
def test_deidentification_check_reads_foreach_and_where_too(where: str) -> None:
    bad = copy.deepcopy(viewdef.shipped()["Patient"])
    if where == "forEach":
        bad["select"].append({"forEach": "name", "column": [{"name": "given", "path": "given.first()"}]})
    else:
        bad["where"] = [{"path": "name.family.exists()"}]
    with pytest.raises(viewdef.ViewError, match="'name'"):
        viewdef.check_deidentified(bad)


def test_deidentification_check_reads_names_not_string_literals() -> None:
    ok = copy.deepcopy(viewdef.shipped()["Condition"])
    ok["select"][0]["column"].append({"name": "sct", "path": "code.coding.where(system = 'name').code.first()"})
    viewdef.check_deidentified(ok)


def test_shipped_views_say_how_they_are_de_identified() -> None:
    for view in viewdef.shipped().values():
        viewdef.check_deidentified(view)
        assert "De-identified" in view["description"]
        assert view["name"].startswith("analytics_") and view["status"] == "active"
