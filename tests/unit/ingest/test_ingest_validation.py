"""The validation memo changes speed, never answers: same issues with and without it."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest

from services.fhir.validation import validate_resource
from services.ingest import validation


def _broken(resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Invalid variants of real resources, each broken in a nested element the memo could hold."""
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


def _issues(resources: list[dict[str, Any]]) -> list[list[tuple[str, str | None, str, str]]]:
    return [[i.as_tuple() for i in validate_resource(copy.deepcopy(r), r["resourceType"])] for r in resources]


def test_memo_gives_exactly_the_library_answers(ten_resources: list[dict[str, Any]]) -> None:
    sample = ten_resources[::3] + _broken(ten_resources)
    validation.uninstall_memo()
    plain = _issues(sample)
    try:
        assert validation.install_memo()
        first = _issues(sample)  # cold memo
        second = _issues(sample)  # warm memo: nested elements now come from it
    finally:
        validation.uninstall_memo()
    assert first == plain and second == plain
    assert sum(1 for found in plain if found) == len(_broken(ten_resources))
    # A valid element seen before does not let a broken copy of it through.
    assert all(plain[-k] for k in range(1, 7))


def test_every_broken_variant_names_its_element(ten_resources: list[dict[str, Any]]) -> None:
    expected = ["Encounter.type[0].coding[0].code", "Condition.code.coding[0].unknownElement",
                "Patient.birthDate", "MedicationRequest.subject.reference", "Procedure.status",
                "Encounter.period.start"]
    for doc, path in zip(_broken(ten_resources), expected, strict=True):
        issues = validate_resource(doc, doc["resourceType"])
        assert any(i.expression and i.expression.startswith(path) for i in issues), (path, issues)


@pytest.mark.parametrize("workers", [0, 2])
def test_pool_yields_results_in_order(workers: int) -> None:
    pool = validation.Pool(workers, memo=False)
    try:
        assert list(pool.map_ordered(pow, [(n, 2) for n in range(20)])) == [n * n for n in range(20)]
    finally:
        pool.close()


@pytest.mark.parametrize("memo", [False, True])
def test_nested_resource_of_unknown_type_is_an_issue_not_a_crash(memo: bool,
                                                                 ten_resources: list[dict[str, Any]]) -> None:
    """fhir_core raises KeyError (not a ValidationError) here; uncaught, it failed the whole chunk or job."""
    from services.ingest.prepare import check_line

    cond = copy.deepcopy(next(r for r in ten_resources if r["resourceType"] == "Condition"))
    cond["contained"] = [{"resourceType": "NoSuchType", "id": "x"}]
    if memo:
        validation.install_memo()
    try:
        doc, outcome = check_line(orjson.dumps(cond), 7, "gy-hosp-001")
        [issue] = validate_resource(copy.deepcopy(cond), "Bundle.entry[2].resource")
    finally:
        validation.uninstall_memo()
    assert doc is None
    [(diagnostics, expression, code, *_)] = outcome.issues
    assert diagnostics.startswith("line 7: Condition: ") and expression == "Condition" and code == "not-supported"
    assert issue.expression == "Bundle.entry[2].resource" and issue.code == "not-supported"


def test_the_memo_stays_bounded_under_a_stream_of_new_elements(ten_resources: list[dict[str, Any]]) -> None:
    """A population load brings new references with every patient: the memo must not keep them all.

    Each entry holds a validated model (about 5 kB): a memo that grew to its
    old bound of 200,000 entries held about 1.5 GB per validation worker.
    """
    cond = next(r for r in ten_resources if r["resourceType"] == "Condition")
    bound = 2 * validation.MEMO_GENERATION
    validation.install_memo()
    try:
        for n in range(bound + 5_000):  # each has a Reference the memo has not seen
            doc = copy.deepcopy(cond)
            doc["subject"] = {"reference": f"Patient/p-{n}"}
            assert validate_resource(doc, "Condition") == []
            assert len(validation._memo) <= bound
        # What repeats (the same code in every Condition) is still there after the turnover.
        code_key = orjson.dumps(cond["code"])
        assert any(raw == code_key for _, raw in validation._memo.young)
    finally:
        validation.uninstall_memo()


def test_large_elements_are_not_memoised(ten_resources: list[dict[str, Any]]) -> None:
    doc = copy.deepcopy(next(r for r in ten_resources if r["resourceType"] == "DocumentReference"))
    doc["content"][0]["attachment"]["data"] = "QUFB" * 4096  # 16 kB of base64: a one-off document
    validation.install_memo()
    try:
        assert validate_resource(doc, "DocumentReference") == []
        assert all(len(raw) <= validation.MEMO_MAX_ELEMENT_BYTES for _, raw in [*validation._memo.young,
                                                                                *validation._memo.old])
    finally:
        validation.uninstall_memo()
