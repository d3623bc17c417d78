"""``_elements`` and ``_typeFilter`` of a Bulk Data kick-off: parsing, refusal, and how a resource is cut."""

from __future__ import annotations

from typing import Any

import pytest

from services.records import bulk_params as bp
from services.records import deident

SNOMED = "http://snomed.info/sct"
DIABETES = {"resourceType": "Condition", "id": "c1", "meta": {"versionId": "2"},
            "code": {"coding": [{"system": SNOMED, "code": "44054006"}]},
            "category": [{"coding": [{"code": "problem-list-item"}]}],
            "clinicalStatus": {"coding": [{"code": "active"}]},
            "onsetDateTime": "2019-05-01", "subject": {"reference": "Patient/p1"}, "note": [{"text": "x"}]}
LAB = {"resourceType": "Observation", "id": "o1", "status": "final", "statusReason": {"text": "r"},
       "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                 "code": "laboratory"}]}],
       "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4"}]},
       "effectiveDateTime": "2021-03-04T10:00:00Z", "valueQuantity": {"value": 7.1}}


def one(query: str) -> bp.TypeFilter:
    (f,) = bp.parse_type_filters([query])
    return f


# ----------------------------------------------------------------- _elements

def test_elements_parse_with_and_without_a_type() -> None:
    assert bp.parse_elements(["Condition.code,onset", "Patient.gender"]) == {
        "Condition": frozenset({"code"}), "*": frozenset({"onset"}), "Patient": frozenset({"gender"})}
    assert bp.parse_elements([]) == {}


@pytest.mark.parametrize("raw", ["", ",", "Patient.name.given", "patient.gender", "Patient.", ".code",
                                 "code;DROP TABLE", "Patient.gender' OR '1'='1", "a" * 70, "Code"])
def test_malformed_elements_are_refused(raw: str) -> None:
    with pytest.raises(bp.ParameterInvalid):
        bp.parse_elements([raw])


def test_an_element_without_a_type_applies_to_every_exported_type() -> None:
    asked = bp.parse_elements(["code", "Condition.onset"])
    assert bp.expand_elements(asked, ["Condition", "Observation"]) == {
        "Condition": ["code", "onset"], "Observation": ["code"]}
    assert bp.asked_elements(asked, ["Condition", "Observation"]) == [
        "Condition.code", "Condition.onset", "Observation.code"]


def test_mandatory_elements_are_not_asked_of_the_policy_and_types_left_unnamed_are_not_narrowed() -> None:
    asked = bp.parse_elements(["Condition.id,Condition.code"])
    assert bp.asked_elements(asked, ["Condition", "Patient"]) == ["Condition.code"]
    assert bp.expand_elements(asked, ["Condition", "Patient"]) == {"Condition": ["code", "id"]}


def test_an_element_of_a_type_outside_the_export_is_asked_of_the_policy_then_refused() -> None:
    asked = bp.parse_elements(["MedicationRequest.status"])
    assert bp.asked_elements(asked, ["Condition"]) == ["MedicationRequest.status"]
    with pytest.raises(bp.ParameterInvalid, match="MedicationRequest"):
        bp.expand_elements(asked, ["Condition"])


def test_restrict_keeps_the_named_and_mandatory_elements_and_choice_elements_by_their_base() -> None:
    cut = bp.restrict(LAB, ["value", "status"])
    assert set(cut) == {"resourceType", "id", "status", "valueQuantity"}  # not statusReason: not a choice type
    assert bp.restrict(LAB, None) is LAB


def test_a_subsetted_resource_is_tagged_once_and_keeps_its_meta() -> None:
    tagged = bp.tag_subsetted(bp.tag_subsetted(DIABETES))
    assert tagged["meta"]["versionId"] == "2"
    assert [t["code"] for t in tagged["meta"]["tag"]] == ["SUBSETTED"]
    assert "tag" not in DIABETES["meta"]


# --------------------------------------------------------------- _typeFilter

@pytest.mark.parametrize(("query", "resource", "hit"), [
    (f"Condition?code={SNOMED}|44054006", DIABETES, True),
    ("Condition?code=44054006", DIABETES, True),
    (f"Condition?code={SNOMED}|38341003", DIABETES, False),
    ("Condition?code=http://loinc.org|44054006", DIABETES, False),
    ("Condition?code=38341003,44054006", DIABETES, True),  # a comma ORs within a token
    ("Condition?clinical-status=active", DIABETES, True),
    ("Condition?category=problem-list-item&date=ge2019-01-01", DIABETES, True),
    ("Condition?category=problem-list-item&date=ge2020-01-01", DIABETES, False),  # AND
    ("Condition?date=le2019-05-01", DIABETES, True),
    ("Condition?date=le2019-04-30", DIABETES, False),
    ("Observation?category=laboratory", LAB, True),
    ("Observation?category=vital-signs", LAB, False),
    ("Observation?status=final", LAB, True),
    ("Observation?status=preliminary,amended", LAB, False),
    ("Observation?date=ge2021&date=le2021-12", LAB, True),
    ("Observation?code=http%3A%2F%2Floinc.org%7C4548-4", LAB, True),  # the query's own percent-encoding
])
def test_filters_match_as_fhir_search_does(query: str, resource: dict[str, Any], hit: bool) -> None:
    assert one(query).matches(resource) is hit


def test_a_resource_without_the_element_never_matches() -> None:
    assert not one("Observation?date=ge2000").matches({k: v for k, v in LAB.items() if k != "effectiveDateTime"})
    assert not one("MedicationRequest?status=active").matches({"resourceType": "MedicationRequest"})


def test_filters_for_one_type_are_ored_and_a_type_without_filters_passes() -> None:
    either = bp.parse_type_filters(["Condition?code=38341003", f"Condition?code={SNOMED}|44054006"])
    assert bp.matches_any(either, DIABETES)
    assert not bp.matches_any(either[:1], DIABETES)
    assert bp.matches_any([], DIABETES)


def test_comma_separated_queries_split_only_where_a_query_starts() -> None:
    got = bp.parse_type_filters(["Condition?code=1,2,Observation?category=laboratory"])
    assert [(f.rtype, f.params[0].values) for f in got] == [("Condition", ("1", "2")),
                                                            ("Observation", ("laboratory",))]


@pytest.mark.parametrize("query", [
    "Condition?code:not=44054006", "Condition?code:text=diabetes", "Condition?_lastUpdated=ge2020",
    "Condition?subject=Patient/1", "Condition?_include=Condition:subject", "Patient?name=Smith",
    "Condition?status=active",  # not a Condition search parameter (clinical-status is)
    "Observation?date=eq2021", "Observation?date=2021", "Observation?date=ge2021-02-30",
    "Observation?date=gt2021-01-01T00:00:00Z", "Condition?code=", "Condition?code=|", "Condition?code=sys|",
    "Condition?code=' OR 1=1--", "Condition?code=44054006;DROP TABLE records", "Condition?code=<script>",
    "Condition?code=javascript:alert(1)|x", "Observation?status=final'--", "Condition", "Condition?",
    "condition?code=1", "?code=1", "Condition?code=1&&", "Condition?code=a%00b", "Condition?code=" + "9" * 200,
    "Condition?" + "&".join(["code=1"] * 400),
])
def test_what_is_not_in_the_supported_subset_is_refused(query: str) -> None:
    with pytest.raises(bp.ParameterInvalid):
        bp.parse_type_filters([query])


def test_too_many_queries_are_refused() -> None:
    with pytest.raises(bp.ParameterInvalid, match="at most"):
        bp.parse_type_filters(["Condition?code=1"] * (bp.MAX_FILTERS + 1))


def test_a_filter_for_a_type_outside_the_export_is_refused() -> None:
    with pytest.raises(bp.ParameterInvalid, match="MedicationRequest"):
        bp.filters_by_type(bp.parse_type_filters(["MedicationRequest?status=active"]), ["Condition"])


# ------------------------------------------------------------ the job's shape

def test_the_shape_cuts_to_the_agreement_filters_on_what_is_left_then_narrows() -> None:
    shape = bp.Shape.of({"Condition": ["code", "onset"]}, {"Condition": ["code"]},
                        {"Condition": [f"Condition?code={SNOMED}|44054006"]})
    out = shape.apply("Condition", DIABETES)
    assert out is not None and set(out) == {"resourceType", "id", "meta", "code"}
    assert out["meta"]["tag"] == [bp.SUBSETTED]
    assert shape.apply("Condition", {**DIABETES, "code": {"coding": [{"system": SNOMED, "code": "1"}]}}) is None
    assert shape.apply("Observation", LAB) is LAB  # neither terms nor filters for it: as de-identified


def test_a_filter_cannot_read_an_element_the_agreement_withholds() -> None:
    shape = bp.Shape.of({"Condition": ["code"]}, {}, {"Condition": ["Condition?date=ge2019-01-01"]})
    assert shape.apply("Condition", DIABETES) is None  # onset is not released, so it cannot be probed


def test_safe_harbor_dates_cannot_be_probed_below_the_year_and_removed_elements_do_not_come_back() -> None:
    patient = {"resourceType": "Patient", "id": "p1", "name": [{"family": "Zhang"}], "gender": "female",
               "birthDate": "1970-06-15"}
    shaped = deident.safe_harbor(patient, "p1", "rp-x")
    narrowed = bp.Shape.of({}, {"Patient": ["name", "gender", "birthDate"]}, {}).apply("Patient", shaped)
    assert narrowed is not None and "name" not in narrowed and narrowed["gender"] == "female"
    assert "Zhang" not in str(narrowed)
    condition = deident.safe_harbor(DIABETES, "p1", "rp-x")
    assert condition["onsetDateTime"] == "2019"
    # The day-precise question gets the same answer for every day of 2019: the year is all it learns.
    early = bp.Shape.of({}, {}, {"Condition": ["Condition?date=le2019-01-02"]})
    late = bp.Shape.of({}, {}, {"Condition": ["Condition?date=ge2019-12-30"]})
    assert early.apply("Condition", condition) is not None and late.apply("Condition", condition) is not None
