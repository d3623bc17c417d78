"""A project's cohort criteria: who is a member, and which criteria are refused."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from services.records.cohort import Cohort, CohortInvalid

TODAY = date(2026, 6, 15)
SNOMED = "http://snomed.info/sct"


def patient(gender: str = "female", born: str | None = "1960-06-15") -> dict[str, Any]:
    return {"resourceType": "Patient", "gender": gender, **({"birthDate": born} if born else {})}


def condition(code: str = "38341003", onset: str | None = "2019-05-01", status: str = "confirmed",
              recorded: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"resourceType": "Condition", "code": {"coding": [{"system": SNOMED, "code": code}]},
                           "verificationStatus": {"coding": [{"code": status}]}}
    if onset:
        out["onsetDateTime"] = onset
    if recorded:
        out["recordedDate"] = recorded
    return out


def test_no_criteria_admit_everyone_and_need_nothing() -> None:
    cohort = Cohort.parse({})
    assert cohort.needs() == set()
    assert cohort.admits([], TODAY)


def test_condition_codes_with_or_without_system() -> None:
    assert Cohort.parse({"conditions": ["38341003"]}).admits([condition()], TODAY)
    assert Cohort.parse({"conditions": [f"{SNOMED}|38341003"]}).admits([condition()], TODAY)
    assert not Cohort.parse({"conditions": ["44054006"]}).admits([condition()], TODAY)
    assert not Cohort.parse({"conditions": ["http://other|38341003"]}).admits([condition()], TODAY)
    assert not Cohort.parse({"conditions": ["38341003"]}).admits([patient()], TODAY)
    assert Cohort.parse({"conditions": ["x"]}).needs() == {"Condition"}


def test_refuted_or_erroneous_conditions_are_not_evidence() -> None:
    cohort = Cohort.parse({"conditions": ["38341003"]})
    assert not cohort.admits([condition(status="refuted"), condition(status="entered-in-error")], TODAY)
    assert cohort.admits([condition(status="refuted"), condition()], TODAY)


def test_period_bounds_the_qualifying_condition() -> None:
    cohort = Cohort.parse({"conditions": ["38341003"], "period": {"start": "2019-01-01", "end": "2019-12-31"}})
    assert cohort.admits([condition(onset="2019-05-01T10:00:00+08:00")], TODAY)
    assert not cohort.admits([condition(onset="2020-01-01")], TODAY)
    assert not cohort.admits([condition(onset="2018-12-31")], TODAY)
    assert not cohort.admits([condition(onset=None)], TODAY)  # undated: cannot be shown in the period
    assert cohort.admits([condition(onset=None, recorded="2019-03-03")], TODAY)
    assert cohort.admits([condition(onset="2019")], TODAY)  # the whole year lies in the period
    later = Cohort.parse({"period": {"start": "2019-06-01"}})
    assert not later.admits([condition(onset="2019")], TODAY)  # it may have begun before June
    open_ended = Cohort.parse({"period": {"start": "2019-01-01"}})
    assert open_ended.admits([condition(code="anything", onset="2025-01-01")], TODAY)
    assert not open_ended.admits([condition(code="anything", onset="2018-01-01")], TODAY)


def test_age_in_whole_years_on_the_day_of_the_export() -> None:
    adults = Cohort.parse({"age": {"min": 18, "max": 65}})
    assert adults.needs() == {"Patient"}
    assert adults.admits([patient(born="2008-06-15")], TODAY)  # 18 today
    assert not adults.admits([patient(born="2008-06-16")], TODAY)  # 18 tomorrow
    assert adults.admits([patient(born="1960-06-16")], TODAY)  # 65 until tomorrow
    assert not adults.admits([patient(born="1960-06-15")], TODAY)  # 66 today
    assert not adults.admits([patient(born=None)], TODAY)
    assert not adults.admits([], TODAY)  # no Patient resource: the criterion cannot be shown to hold


def test_a_partial_birth_date_admits_only_if_every_day_it_stands_for_does() -> None:
    adults = Cohort.parse({"age": {"min": 18}})
    assert adults.admits([patient(born="2007")], TODAY)  # 18 or 19 by now
    assert not adults.admits([patient(born="2008")], TODAY)  # 17 or 18: not shown to be 18
    assert not adults.admits([patient(born="2008-06")], TODAY)  # born 1-30 June 2008: not all 18 on 15 June
    assert adults.admits([patient(born="2008-05")], TODAY)


def test_sex_and_criteria_combine_with_and() -> None:
    cohort = Cohort.parse({"sex": ["female"], "conditions": ["38341003"], "age": {"min": 40}})
    assert cohort.needs() == {"Patient", "Condition"}
    assert cohort.admits([patient(), condition()], TODAY)
    assert not cohort.admits([patient(gender="male"), condition()], TODAY)
    assert not cohort.admits([patient(born="2000-01-01"), condition()], TODAY)
    assert not cohort.admits([patient()], TODAY)


@pytest.mark.parametrize("doc", [
    [], "all", {"condition": "38341003"}, {"everyone": True}, {"conditions": "38341003"}, {"conditions": [1]},
    {"conditions": [""]}, {"period": {"start": "yesterday"}}, {"period": {"start": "2020-01-01", "end": "2019-01-01"}},
    {"period": {"from": "2020-01-01"}}, {"age": {"min": -1}}, {"age": {"min": 50, "max": 40}}, {"age": {"min": 1.5}},
    {"age": {"min": True}}, {"age": 18}, {"sex": []}, {"sex": ["f"]}, {"sex": "female"},
])
def test_criteria_that_do_not_parse_are_refused(doc: Any) -> None:
    with pytest.raises(CohortInvalid):
        Cohort.parse(doc)
