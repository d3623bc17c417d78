"""Transaction and batch Bundle semantics: ids, references, all-or-nothing vs per entry."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from services.fhir.validation import InvalidSubmission
from services.ingest import bundle as bundles


def _patient(pid: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, "gender": "female", "birthDate": "1980-01-02"}


def _practitioner(pid: str, npi: str) -> dict[str, Any]:
    return {"resourceType": "Practitioner", "id": pid,
            "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": npi}]}


def _encounter(subject: str, performer: str, location: str | None = None) -> dict[str, Any]:
    enc: dict[str, Any] = {
        "resourceType": "Encounter", "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": subject},
        "participant": [{"individual": {"reference": performer, "display": "Dr. X"}}],
    }
    if location:
        enc["location"] = [{"location": {"reference": location}}]
    return enc


def _bundle(kind: str, entries: list[tuple[str | None, dict[str, Any], str]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": [
        {**({"fullUrl": fu} if fu else {}), "resource": res,
         "request": {"method": method.split()[0], "url": method.split()[1] if " " in method else res["resourceType"]}}
        for fu, res, method in entries]}


def _check(doc: dict[str, Any], hospital: str = "gy-hosp-001") -> bundles.ParsedBundle:
    parsed = bundles.read_entries(doc, 100)
    bundles.validate_inline(parsed)
    bundles.resolve(parsed, hospital)
    bundles.require_all_good(parsed)
    return parsed


def test_transaction_resolves_urn_and_conditional_references() -> None:
    pid = str(uuid.uuid4())
    doc = _bundle("transaction", [
        (f"urn:uuid:{pid}", _patient(pid), "PUT Patient/" + pid),
        ("urn:uuid:prac-1", _practitioner("prac-1", "999"), "POST"),
        (None, _encounter(f"urn:uuid:{pid}", "Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|999",
                          "Location?identifier=https://example.org/loc|L1"), "POST"),
    ])
    parsed = _check(doc)
    enc = parsed.entries[2].resource
    assert enc is not None
    assert enc["subject"] == {"reference": f"Patient/{pid}"}
    assert enc["participant"][0]["individual"] == {"reference": "Practitioner/prac-1", "display": "Dr. X"}
    # Not in the Bundle: kept as a logical reference by identifier, valid FHIR to store.
    assert enc["location"][0]["location"] == {"type": "Location", "identifier": {
        "system": "https://example.org/loc", "value": "L1"}}
    assert enc["id"]  # a POST without id gets a deterministic one
    again = _check(_bundle("transaction", [
        (f"urn:uuid:{pid}", _patient(pid), "PUT Patient/" + pid),
        ("urn:uuid:prac-1", _practitioner("prac-1", "999"), "POST"),
        (None, _encounter(f"urn:uuid:{pid}", "Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|999",
                          "Location?identifier=https://example.org/loc|L1"), "POST")]))
    assert again.entries[2].resource == enc  # resubmission: identical content, stored once


def test_transaction_with_a_broken_reference_is_rejected_whole() -> None:
    pid = str(uuid.uuid4())
    doc = _bundle("transaction", [
        (f"urn:uuid:{pid}", _patient(pid), "POST"),
        (None, _encounter("urn:uuid:does-not-exist", "Practitioner/abc"), "POST"),
    ])
    with pytest.raises(InvalidSubmission) as err:
        _check(doc)
    assert err.value.status == 400
    [issue] = err.value.issues
    assert issue.expression == "Bundle.entry[1].resource.subject.reference"
    assert issue.code == "not-found"
    assert "does-not-exist" not in issue.diagnostics  # no submitted values echoed


def test_transaction_with_an_invalid_element_names_entry_and_path() -> None:
    pid = str(uuid.uuid4())
    bad = _patient(pid) | {"active": "perhaps"}
    with pytest.raises(InvalidSubmission) as err:
        _check(_bundle("transaction", [(None, _patient(str(uuid.uuid4())), "POST"), (None, bad, "POST")]))
    assert [i.expression for i in err.value.issues] == ["Bundle.entry[1].resource.active"]


def test_batch_answers_per_entry() -> None:
    good, bad = _patient(str(uuid.uuid4())), _patient(str(uuid.uuid4())) | {"birthDate": "not a date"}
    doc = _bundle("batch", [(None, good, "POST"), (None, bad, "POST"),
                            (None, _encounter("urn:uuid:x", "Practitioner/p"), "POST")])
    parsed = _check(doc)
    assert [bool(e.issues) for e in parsed.entries] == [False, True, True]
    answer = bundles.response(parsed, "sub-1")
    assert answer["type"] == "batch-response"
    statuses = [e["response"]["status"] for e in answer["entry"]]
    assert statuses == ["201 Created", "400 Bad Request", "400 Bad Request"]
    assert answer["entry"][0]["response"]["location"] == f"Patient/{good['id']}"
    assert answer["entry"][1]["response"]["outcome"]["issue"][0]["expression"] == ["Bundle.entry[1].resource.birthDate"]


def test_a_batch_with_nothing_good_is_rejected() -> None:
    with pytest.raises(InvalidSubmission):
        _check(_bundle("batch", [(None, _patient("x") | {"gender": 1}, "POST")]))


@pytest.mark.parametrize(("doc", "status", "path"), [
    ({"resourceType": "Patient", "id": "x"}, 400, "resourceType"),
    ({"resourceType": "Bundle", "type": "collection"}, 400, "Bundle.type"),
    ({"resourceType": "Bundle", "type": "batch", "entry": [{"resource": {"resourceType": "Basic"}}] * 101},
     413, "Bundle.entry"),
])
def test_bundle_shape_errors(doc: dict[str, Any], status: int, path: str) -> None:
    with pytest.raises(InvalidSubmission) as err:
        bundles.read_entries(doc, 100)
    assert err.value.status == status
    assert err.value.issues[0].expression == path


def test_methods_and_put_urls_are_checked() -> None:
    pid = str(uuid.uuid4())
    doc = _bundle("batch", [(None, _patient(pid), "DELETE Patient/" + pid),
                            (None, _patient(pid), "PUT Patient/other-id"),
                            (None, {"resourceType": "Patient"}, "PUT Patient/" + pid)])
    parsed = bundles.read_entries(doc, 10)
    assert parsed.entries[0].issues[0].code == "not-supported"
    assert parsed.entries[1].issues[0].expression == "Bundle.entry[1].resource.id"
    assert not parsed.entries[2].issues and parsed.entries[2].resource == {"resourceType": "Patient", "id": pid}


def test_a_transaction_may_not_carry_the_same_resource_twice() -> None:
    pid = str(uuid.uuid4())
    with pytest.raises(InvalidSubmission) as err:
        _check(_bundle("transaction", [(None, _patient(pid), "POST"), (None, _patient(pid), "POST")]))
    assert err.value.issues[0].code == "duplicate"


def test_unsupported_conditional_reference_is_an_error() -> None:
    doc = _bundle("transaction", [(None, _encounter("Patient/p1", "Practitioner?name=smith"), "POST")])
    with pytest.raises(InvalidSubmission) as err:
        _check(doc)
    assert err.value.issues[0].expression == "Bundle.entry[0].resource.participant[0].individual.reference"
