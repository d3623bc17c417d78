"""Validation answers by element, never crashes on what a sender writes, and the pool keeps order."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest

from services.fhir.validation import validate_resource
from services.ingest import validation


def _broken(resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Invalid variants of real resources, each broken in a nested element."""
    out = []
    by_type = {r["resourceType"]: r for r in resources}
    enc = copy.deepcopy(by_type["Encounter"])
    enc["type"][0]["coding"][0]["code"] = 12  # a Coding.code that is not a string
    out.append(enc)
    cond = copy.deepcopy(by_type["Condition"])
    cond["code"]["coding"][0]["unknownElement"] = "x"  # an element FHIR does not have
    out.append(cond)
    pat = copy.deepcopy(by_type["Patient"])
    pat["birthDate"] = "1970-13-45"
    out.append(pat)
    med = copy.deepcopy(by_type["MedicationRequest"])
    med["subject"] = {"reference": 5}
    out.append(med)
    proc = copy.deepcopy(by_type["Procedure"])
    del proc["status"]  # required
    out.append(proc)
    enc2 = copy.deepcopy(by_type["Encounter"])
    enc2["period"] = {"start": "yesterday"}
    out.append(enc2)
    return out


def test_every_broken_variant_names_its_element(ten_resources: list[dict[str, Any]]) -> None:
    expected = ["Encounter.type[0].coding[0].code", "Condition.code.coding[0].unknownElement",
                "Patient.birthDate", "MedicationRequest.subject.reference", "Procedure.status",
                "Encounter.period.start"]
    for doc, path in zip(_broken(ten_resources), expected, strict=True):
        issues = validate_resource(doc, doc["resourceType"])
        assert any(i.expression and i.expression.startswith(path) for i in issues), (path, issues)


@pytest.mark.parametrize("workers", [0, 2])
def test_pool_yields_results_in_order(workers: int) -> None:
    pool = validation.Pool(workers)
    try:
        assert list(pool.map_ordered(pow, [(n, 2) for n in range(20)])) == [n * n for n in range(20)]
    finally:
        pool.close()


def test_nested_resource_of_unknown_type_is_an_issue_not_a_crash(ten_resources: list[dict[str, Any]]) -> None:
    """The models raised KeyError (not a ValidationError) here, which once failed a whole chunk or job."""
    from services.ingest.prepare import check_line

    cond = copy.deepcopy(next(r for r in ten_resources if r["resourceType"] == "Condition"))
    cond["contained"] = [{"resourceType": "NoSuchType", "id": "x"}]
    doc, outcome = check_line(orjson.dumps(cond), 7, "gy-hosp-001")
    [issue] = validate_resource(copy.deepcopy(cond), "Bundle.entry[2].resource")
    assert doc is None
    [(diagnostics, expression, code, *_)] = outcome.issues
    assert diagnostics == "line 7: Condition.contained[0].resourceType: unknown resourceType"
    assert expression == "Condition.contained[0].resourceType" and code == "not-supported"
    assert issue.expression == "Bundle.entry[2].resource.contained[0].resourceType" and issue.code == "not-supported"
