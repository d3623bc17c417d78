"""The native invariants (services/fhir/natives.py) give fhirpathpy's answers, case by case.

Each native decides a case or leaves it to fhirpathpy (``None``); wherever it
decides, its answer must be the one the specification's FHIRPath gives through
fhirpathpy (with the dateTime fix rules.py installs), as ``RuleSet`` would get
it: an evaluation error counts as passing, as it does there. The corpus walks
the edge cases: partial dates, offsets (the same instant written in two zones,
+14:00), fractions, a time without an offset, missing or null sides, a side
carried only as an extension, malformed values.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from services.fhir import natives
from services.fhir.rules import Invariant, _passes, rules

PERIOD_VALUES: list[Any] = [
    "2020", "2021", "2019",
    "2020-01", "2020-02", "2019-12",
    "2020-01-01", "2020-01-02", "2019-12-31",
    "2020-01-01T00:00:00Z", "2020-01-01T08:00:00+08:00", "2019-12-31T19:00:00-05:00",  # one instant, three zones
    "2020-01-01T07:59:59+08:00", "2020-01-01T00:00:01Z", "2019-12-31T23:59:59Z",
    "2020-01-01T10:00:00+14:00", "2019-12-31T10:00:00-12:00",
    "2020-01-01T00:00:00.5Z", "2020-01-01T00:00:00.25Z", "2020-01-01T00:00:00.500+00:00",
    "2020-01-01T08:00:00.750+08:00", "2020-01-01T00:00:00.123456Z",
    "2020-01-01T00:00:00",  # no offset: fhirpathpy reads it in the machine's zone; left to it
    "2020-01-01T00:00Z",  # minutes only: not a FHIR dateTime
    "garbage", "2020-13-01", "20200101", "",
    5, None,
]


def _reference(inv: Invariant, node: dict[str, Any], path: str) -> bool:
    """The invariant's answer through fhirpathpy, exactly as RuleSet reaches it."""
    r = rules()
    try:
        return _passes(inv.fn(r._node(node, path), None))
    except Exception:
        return True


def _invariant(path: str, key: str) -> Invariant:
    found = [i for i in rules().invariants.get(path, ()) if i.key == key]
    assert len(found) == 1, f"{key} at {path} is in the rule table"
    return found[0]


def _period_cases() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = [{}, {"start": "2020-01-01"}, {"end": "2020-01-01"}]
    for start, end in itertools.product(PERIOD_VALUES, repeat=2):
        cases.append({"start": start, "end": end})
    extension = {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason",
                                "valueCode": "unknown"}]}
    cases += [{"_start": extension, "end": "2020-01-01"}, {"start": "2021-01-01", "_start": extension,
                                                            "end": "2020-01-01"},
              {"start": "2020-01-01", "_end": extension}]
    return cases


def test_per_1_native_agrees_with_fhirpathpy_wherever_it_decides() -> None:
    inv = _invariant("Period", "per-1")
    assert inv.native is natives.per_1, "per-1 is checked natively"
    decided = disagreements = 0
    wrong: list[tuple[dict[str, Any], bool, bool]] = []
    for node in _period_cases():
        native = natives.per_1(node)
        if native is None:
            continue
        decided += 1
        expected = _reference(inv, node, "Period")
        if native is not expected:
            disagreements += 1
            wrong.append((node, native, expected))
    assert not wrong, wrong[:10]
    assert decided >= 190, f"the native decides the common shapes itself ({decided} decided)"


@pytest.mark.parametrize(("start", "end", "decided"), [
    ("2021-03-01T10:00:00+08:00", "2021-03-01T09:00:00+08:00", False),  # hospitals' own format: text order
    ("2021-03-01T10:00:00+08:00", "2021-03-01T03:00:00Z", True),  # two zones: instants
    ("2021-03-01T10:00:00+08:00", "2021-03-01T01:00:00Z", False),
    ("2021-03-02", "2021-03-01", False),
    ("2021", "2021", True),
])
def test_per_1_native_decides_what_hospitals_send(start: str, end: str, decided: bool) -> None:
    assert natives.per_1({"start": start, "end": end}) is decided


@pytest.mark.parametrize("node", [
    {"start": "2021-03-01", "end": "2021-03-01T10:00:00+08:00"},  # different precisions
    {"start": "2020-01-01T00:00:00", "end": "2020-01-01T00:00:00Z"},  # no offset on one side
    {"start": "garbage", "end": "2020"},
])
def test_per_1_native_leaves_the_ambiguous_to_fhirpathpy(node: dict[str, Any]) -> None:
    assert natives.per_1(node) is None


CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
VER = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
ALLERGY_CLINICAL = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
ALLERGY_VER = "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification"


def _concepts(system: str, codes: list[str]) -> list[Any]:
    """Absent, null, text only, and codings right, wrong by system, without system or code, mixed."""
    out: list[Any] = [..., None, {"text": "t"}, {"coding": []}]
    for code in codes:
        out.append({"coding": [{"system": system, "code": code}]})
        out.append({"coding": [{"system": system + "-other", "code": code}]})
        out.append({"coding": [{"code": code}]})
        out.append({"coding": [{"system": "http://snomed.info/sct", "code": "1"}, {"system": system, "code": code}]})
    out.append({"coding": [{"system": system}]})
    return out


ABATEMENTS: list[dict[str, Any]] = [
    {}, {"abatementDateTime": "2020-01-01"}, {"abatementString": "in remission"},
    {"abatementPeriod": {"start": "2020-01-01"}}, {"abatementAge": {"value": 40, "unit": "a"}},
    {"abatementRange": {"low": {"value": 1}}}, {"_abatementDateTime": {"extension": [{"url": "u", "valueCode": "x"}]}},
    {"abatementDateTime": None}, {"abatementBoolean": True},
]


def _with(base: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    return base if value is ... else {**base, key: value}


@pytest.mark.parametrize(("rtype", "key", "clinical", "verification"), [
    ("Condition", "con-4", CLINICAL, VER),
    ("Condition", "con-5", CLINICAL, VER),
    ("AllergyIntolerance", "ait-1", ALLERGY_CLINICAL, ALLERGY_VER),
    ("AllergyIntolerance", "ait-2", ALLERGY_CLINICAL, ALLERGY_VER),
])
def test_status_invariants_native_agree_with_fhirpathpy(rtype: str, key: str, clinical: str,
                                                        verification: str) -> None:
    inv = _invariant(rtype, key)
    assert inv.native is not None, f"{key} is checked natively"
    decided = 0
    wrong = []
    statuses = _concepts(clinical, ["active", "resolved", "remission", "inactive", "recurrence"])
    verifications = _concepts(verification, ["confirmed", "entered-in-error", "unconfirmed"])
    abatements = ABATEMENTS if rtype == "Condition" else [{}]
    for abatement, status, ver in itertools.product(abatements, statuses, verifications):
        node = _with(_with({"resourceType": rtype, **abatement}, "clinicalStatus", status), "verificationStatus", ver)
        native = inv.native(node)
        if native is None:
            continue
        decided += 1
        expected = _reference(inv, node, rtype)
        if native is not expected:
            wrong.append((node, native, expected))
    assert not wrong, wrong[:10]
    assert decided >= 100


def test_a_changed_expression_is_not_checked_natively() -> None:
    """A native is bound to the expression it was written for; another text goes to fhirpathpy."""
    assert natives.native_for("per-1", "start.hasValue().not() or end.hasValue().not() or (start <= end)")
    assert natives.native_for("per-1", "start <= end") is None
