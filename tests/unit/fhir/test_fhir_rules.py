"""The FHIR R4 rules that need the specification's definitions: bindings, invariants, empty elements, ids.

Most checks go through ``prepare.check_line``, the path every NDJSON line
takes, on small hand-made resources.
"""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest
from fhirpathpy import evaluate
from fhirpathpy.models import models

from services.fhir.validation import InvalidSubmission, parse_json
from services.ingest import bundle as bundles
from services.ingest.body import split_lines
from services.ingest.prepare import check_line
from tests.unit.ingest.conftest import FIXTURE_SETS, fixture_lines

HOSPITAL = "gy-hosp-001"
BOM = b"\xef\xbb\xbf"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"


def _line(doc: dict[str, Any]) -> tuple[bool, list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """(accepted, errors, warnings) of one resource sent as an NDJSON line."""
    kept, outcome = check_line(orjson.dumps(doc), 1, HOSPITAL)
    return kept is not None, outcome.issues, getattr(outcome, "warnings", [])


def _expressions(issues: list[tuple[Any, ...]]) -> list[str | None]:
    return [i[1] for i in issues]


def patient(**extra: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": "p1", "gender": "female", **extra}


def encounter(period: dict[str, str]) -> dict[str, Any]:
    return {"resourceType": "Encounter", "id": "e1", "status": "finished",
            "class": {"system": ACT_CODE, "code": "AMB"}, "subject": {"reference": "Patient/p1"}, "period": period}


def immunization(status: str) -> dict[str, Any]:
    return {"resourceType": "Immunization", "id": "i1", "status": status, "patient": {"reference": "Patient/p1"},
            "occurrenceDateTime": "2021-03-01T10:00:00+08:00",
            "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "208"}]}}


# --- required bindings -------------------------------------------------------------

def test_a_code_outside_a_required_value_set_is_refused() -> None:
    ok, errors, _ = _line(patient(gender="robot"))
    assert not ok
    assert _expressions(errors) == ["Patient.gender"]
    assert errors[0][2] == "code-invalid" and "administrative-gender" in errors[0][0]
    assert _line(patient(gender="other"))[0]


def test_required_codes_are_case_sensitive() -> None:
    ok, errors, _ = _line(immunization("Completed"))
    assert not ok and _expressions(errors) == ["Immunization.status"]
    assert _line(immunization("completed"))[0]


def test_a_required_coding_binding_checks_system_and_code() -> None:
    cond = {"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/p1"},
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006"}]},
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                           "code": "active"}]}}
    assert _line(cond)[0]
    bad = copy.deepcopy(cond)
    bad["clinicalStatus"]["coding"][0]["code"] = "ongoing"
    ok, errors, _ = _line(bad)
    assert not ok and _expressions(errors) == ["Condition.clinicalStatus"]


def test_the_value_sets_come_from_the_specification() -> None:
    """Expanded from the definitions at setup, not typed here: the table knows what the spec says."""
    from services.fhir.rules import rules

    gender = rules().elements["Patient"]["gender"].binding
    assert gender is not None and gender.strength == "required"
    assert gender.codes == frozenset({"male", "female", "other", "unknown"})
    status = rules().elements["Immunization"]["status"].binding
    assert status is not None and status.codes == frozenset({"completed", "entered-in-error", "not-done"})


# --- invariants ---------------------------------------------------------------------

def test_an_encounter_that_ends_before_it_starts_is_refused() -> None:
    ok, errors, _ = _line(encounter({"start": "2021-03-01T10:00:00+08:00", "end": "2021-03-01T09:00:00+08:00"}))
    assert not ok
    assert _expressions(errors) == ["Encounter.period"] and "per-1" in errors[0][0] and errors[0][2] == "invariant"


@pytest.mark.parametrize(("start", "end", "valid"), [
    ("2021-03-01T10:00:00+08:00", "2021-03-01T03:00:00Z", True),  # 02:00Z to 03:00Z: compared as instants
    ("2021-03-01T10:00:00+08:00", "2021-03-01T01:00:00Z", False),
    ("2021-03-02", "2021-03-01", False),
    ("2021-03-01", "2021-03-01T10:00:00+08:00", True),  # different precision: not decidable, not an error
    ("2021-03-01T10:00:00.5+08:00", "2021-03-01T10:00:00.25+08:00", False),
])
def test_period_order_is_compared_as_time_not_text(start: str, end: str, valid: bool) -> None:
    assert _line(encounter({"start": start, "end": end}))[0] is valid


def test_a_backbone_invariant_applies_to_each_instance() -> None:
    ok, errors, _ = _line(patient(contact=[{"name": {"family": "Li"}}, {"gender": "male"}]))
    assert not ok and _expressions(errors) == ["Patient.contact[1]"] and "pat-1" in errors[0][0]


def test_an_extension_with_both_value_and_extensions_is_refused() -> None:
    ext = {"url": "http://example.org/x", "valueString": "a", "extension": [{"url": "y", "valueString": "b"}]}
    ok, errors, _ = _line(patient(extension=[ext]))
    assert not ok and _expressions(errors) == ["Patient.extension[0]"] and "ext-1" in errors[0][0]


# --- empty elements and ids -----------------------------------------------------------

@pytest.mark.parametrize(("extra", "where"), [
    ({"name": []}, "Patient.name"),
    ({"name": [{}]}, "Patient.name[0]"),
    ({"meta": {}}, "Patient.meta"),
    ({"name": [{"given": [None]}]}, "Patient.name[0].given"),
    ({"name": [{"id": "n1"}]}, "Patient.name[0]"),
])
def test_empty_elements_are_refused(extra: dict[str, Any], where: str) -> None:
    ok, errors, _ = _line(patient(**extra))
    assert not ok and where in _expressions(errors)


def test_a_null_paired_with_its_extension_is_kept() -> None:
    ext = [{"url": "http://hl7.org/fhir/StructureDefinition/iso21090-EN-qualifier", "valueCode": "IN"}]
    name = {"given": ["Wei", None], "_given": [None, {"extension": ext}], "family": "Zhang"}
    assert _line(patient(name=[name]))[0]


@pytest.mark.parametrize("node", [{}, {"id": "a"}, {"id": "a", "extension": [{"url": "u", "valueString": "v"}]},
                                  {"family": "Li"}])
def test_native_ele1_agrees_with_its_fhirpath(node: dict[str, Any]) -> None:
    """ele-1 is checked natively for speed; the specification's expression gives the same answer."""
    from services.fhir.rules import OPTIONS
    from services.fhir.validation import check_resource


    spec = evaluate({"resourceType": "Patient", "name": [node]}, "Patient.name.all(hasValue() or "
                    "(children().count() > id.count()))", None, models["r4"], OPTIONS)
    native = check_resource(patient(name=[node]), "Patient").accepted
    assert spec == [native]


def test_a_contained_id_longer_than_64_characters_is_refused() -> None:
    contained = {"resourceType": "Practitioner", "id": "a" * 65}
    ok, errors, _ = _line(patient(contained=[contained], generalPractitioner=[{"reference": "#" + "a" * 65}]))
    assert not ok and "Patient.contained[0].id" in _expressions(errors)
    contained["id"] = "a" * 64
    assert _line(patient(contained=[contained], generalPractitioner=[{"reference": "#" + "a" * 64}]))[0]


# --- warnings -------------------------------------------------------------------------

def test_a_clinical_code_in_no_recognised_system_is_a_warning() -> None:
    obs = {"resourceType": "Observation", "id": "o1", "status": "final", "subject": {"reference": "Patient/p1"},
           "code": {"coding": [{"system": "http://hospital.example/lab", "code": "GLU"}]}}
    ok, errors, warnings = _line(obs)
    assert ok and not errors
    assert _expressions(warnings) == ["Observation.code"]
    obs["code"]["coding"].append({"system": "http://loinc.org", "code": "2345-7"})
    assert _line(obs)[2] == []


def test_an_extensible_binding_not_met_is_a_warning_with_its_rule() -> None:
    from services.fhir.validation import check_resource

    verdict = check_resource(patient(maritalStatus={"coding": [{"system": "http://x.example", "code": "Q"}]}),
                             "Patient")
    assert verdict.accepted and verdict.errors == []
    [w] = verdict.warnings
    assert (w.severity, w.code, w.expression, w.rule) == ("warning", "code-invalid", "Patient.maritalStatus",
                                                         "binding-extensible")
    assert w.to_fhir()["details"]["coding"][0]["code"] == "binding-extensible"


def test_every_demo_resource_is_accepted() -> None:
    refused = []
    warned = 0
    every = {f"{d.name}/{k}": v for d in FIXTURE_SETS for k, v in fixture_lines(d).items()}
    for name, lines in every.items():
        for n, raw in enumerate(lines, 1):
            kept, outcome = check_line(raw, n, HOSPITAL)
            if kept is None:
                refused.append((name, outcome.issues[:1]))
            warned += bool(outcome.warnings)
    assert refused == []
    assert warned > 0  # Synthea's Patient identifiers carry types outside identifier-type (extensible)


# --- bodies ---------------------------------------------------------------------------

def test_a_byte_order_mark_before_ndjson_or_json_is_accepted() -> None:
    line = orjson.dumps(patient())
    lines = split_lines(BOM + line + b"\n" + line, 10)
    assert lines[0] == line and check_line(lines[0], 1, HOSPITAL)[0] is not None
    assert parse_json(BOM + line) == patient()


# --- documents ------------------------------------------------------------------------

def ips(**changes: Any) -> dict[str, Any]:
    """A small International Patient Summary: Composition first, urn:uuid references between entries."""
    pid, cid, aid = "urn:uuid:6d2c1f5e-8e1d-4bb0-9f3e-0a8b6a1d2f01", "urn:uuid:6d2c1f5e-8e1d-4bb0-9f3e-0a8b6a1d2f02", \
        "urn:uuid:6d2c1f5e-8e1d-4bb0-9f3e-0a8b6a1d2f03"
    composition = {"resourceType": "Composition", "status": "final", "date": "2021-03-01T10:00:00+08:00",
                   "type": {"coding": [{"system": "http://loinc.org", "code": "60591-5"}]},
                   "subject": {"reference": pid}, "author": [{"display": "Guiyang First People's Hospital"}],
                   "title": "Patient summary",
                   "section": [{"title": "Problems", "code": {"coding": [{"system": "http://loinc.org",
                                                                          "code": "11450-4"}]},
                                "entry": [{"reference": aid}]}]}
    condition = {"resourceType": "Condition", "subject": {"reference": pid},
                 "code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006"}]}}
    doc = {"resourceType": "Bundle", "type": "document", "timestamp": "2021-03-01T10:00:00+08:00",
           "identifier": {"system": "urn:ietf:rfc:3986", "value": "urn:uuid:6d2c1f5e-8e1d-4bb0-9f3e-0a8b6a1d2f00"},
           "entry": [{"fullUrl": cid, "resource": composition},
                     {"fullUrl": pid, "resource": patient() | {"id": pid[len("urn:uuid:"):]}},
                     {"fullUrl": aid, "resource": condition}]}
    return doc | changes


def test_a_document_bundle_is_unpacked_as_a_transaction_with_its_references_resolved() -> None:
    parsed = bundles.read_entries(ips(), 100)
    assert parsed.kind == "transaction" and parsed.identifier
    bundles.validate_inline(parsed)
    bundles.resolve(parsed, HOSPITAL)
    assert [e.issues for e in parsed.entries] == [[], [], []]
    composition, pat, cond = (e.resource for e in parsed.entries)
    assert composition["subject"] == {"reference": f"Patient/{pat['id']}"}
    assert composition["section"][0]["entry"] == [{"reference": f"Condition/{cond['id']}"}]


def test_a_document_without_a_composition_first_is_refused() -> None:
    doc = ips()
    doc["entry"] = doc["entry"][1:] + doc["entry"][:1]
    with pytest.raises(InvalidSubmission) as err:
        bundles.read_entries(doc, 100)
    assert any("bdl-11" in i.diagnostics for i in err.value.issues)
