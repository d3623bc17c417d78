"""Validity to the FHIR specification's rules, on the running platform: bad codes, invariants and empty
elements refused with OperationOutcomes, warnings answered beside what is stored, byte-order marks and
document Bundles accepted."""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from tests.integration.ingest.support import assert_never_stored, ingest, new_patient, wait_readable

BOM = b"\xef\xbb\xbf"
NDJSON = {"Content-Type": "application/fhir+ndjson"}
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"


def _registered(settings, token) -> dict[str, Any]:
    patient = new_patient()
    r = ingest(settings, token, "/fhir/Patient", json=patient)
    assert r.status_code == 201, r.text
    return patient


def _encounter(pid: str, start: str, end: str) -> dict[str, Any]:
    return {"resourceType": "Encounter", "id": str(uuid.uuid4()), "status": "finished",
            "class": {"system": ACT_CODE, "code": "AMB"}, "subject": {"reference": f"Patient/{pid}"},
            "period": {"start": start, "end": end}}


def _immunization(pid: str, status: str) -> dict[str, Any]:
    return {"resourceType": "Immunization", "id": str(uuid.uuid4()), "status": status,
            "patient": {"reference": f"Patient/{pid}"}, "occurrenceDateTime": "2021-03-01T10:00:00+08:00",
            "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "208"}]}}


def _observation(pid: str, system: str) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": str(uuid.uuid4()), "status": "final",
            "subject": {"reference": f"Patient/{pid}"}, "effectiveDateTime": "2021-03-01T10:00:00+08:00",
            "code": {"coding": [{"system": system, "code": "GLU-1"}]}}


def _outcome(answer: dict[str, Any]) -> list[dict[str, Any]]:
    return answer.get("outcome", {}).get("issue", [])


def test_a_code_outside_a_required_binding_is_refused_and_not_stored(stack, token, settings) -> None:
    patient = new_patient() | {"gender": "robot"}
    r = ingest(settings, token, "/fhir/Patient", json=patient)
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["resourceType"] == "OperationOutcome"
    [issue] = body["issue"]
    assert issue["expression"] == ["Patient.gender"] and issue["code"] == "code-invalid"
    assert "robot" not in r.text  # the answer names the rule, never the value sent
    assert_never_stored(settings, token, patient["id"], [("Patient", patient["id"])])


def test_ndjson_lines_breaking_the_specification_are_refused_each_by_its_rule(stack, token, settings) -> None:
    pid = _registered(settings, token)["id"]
    good = _encounter(pid, "2021-03-01T10:00:00+08:00", "2021-03-01T03:00:00Z")  # 02:00Z to 03:00Z
    backwards = _encounter(pid, "2021-03-01T10:00:00+08:00", "2021-03-01T09:00:00+08:00")
    lines = [good, _immunization(pid, "Completed"), backwards, _encounter(pid, "2021-03-01", "2021-03-01") |
             {"reasonCode": []}]
    body = BOM + b"\n".join(orjson.dumps(x) for x in lines)  # a file saved with a byte-order mark
    r = ingest(settings, token, "/fhir/$import", content=body, headers=NDJSON)
    assert r.status_code == 200, r.text
    answers = [e["response"] for e in r.json()["entry"]]
    assert [a["status"] for a in answers] == ["201 Created", "400 Bad Request", "400 Bad Request",
                                              "400 Bad Request"]
    assert [_outcome(a)[0]["expression"] for a in answers[1:]] == [
        ["Immunization.status"], ["Encounter.period"], ["Encounter.reasonCode"]]
    assert _outcome(answers[2])[0]["code"] == "invariant" and "per-1" in _outcome(answers[2])[0]["diagnostics"]
    wait_readable(settings, token, "Encounter", good["id"])
    assert_never_stored(settings, token, pid, [("Immunization", lines[1]["id"]), ("Encounter", backwards["id"]),
                                               ("Encounter", lines[3]["id"])])


def test_warnings_are_answered_beside_what_is_stored(stack, token, settings) -> None:
    pid = _registered(settings, token)["id"]
    local, loinc = _observation(pid, "http://hospital.example/lab"), _observation(pid, "http://loinc.org")
    r = ingest(settings, token, "/fhir/$import", content=b"\n".join(map(orjson.dumps, [local, loinc])),
               headers=NDJSON)
    assert r.status_code == 200, r.text
    first, second = (e["response"] for e in r.json()["entry"])
    assert first["status"] == second["status"] == "201 Created"
    [warning] = _outcome(first)
    assert warning["severity"] == "warning" and warning["expression"] == ["Observation.code"]
    assert warning["details"]["coding"][0]["code"] == "code-system"
    assert "outcome" not in second
    wait_readable(settings, token, "Observation", local["id"])

    patient = new_patient() | {"maritalStatus": {"coding": [{"system": "http://hospital.example/ms", "code": "Q"}]}}
    r = ingest(settings, token, "/fhir/Patient", json=patient, headers={"Prefer": "return=OperationOutcome"})
    assert r.status_code == 201, r.text
    issues = r.json()["issue"]  # the fixture patient's own identifier-type warning, and this one
    assert r.headers["X-Healthgov-Warnings"] == str(len(issues))
    assert {i["severity"] for i in issues} == {"warning"}
    assert ["Patient.maritalStatus"] in [i["expression"] for i in issues]
    wait_readable(settings, token, "Patient", patient["id"])


def test_a_json_body_with_a_byte_order_mark_is_accepted(stack, token, settings) -> None:
    patient = new_patient()
    r = ingest(settings, token, "/fhir/Patient", content=BOM + orjson.dumps(patient),
               headers={"Content-Type": "application/fhir+json"})
    assert r.status_code == 201, r.text
    wait_readable(settings, token, "Patient", patient["id"])


def _ips(patient: dict[str, Any]) -> dict[str, Any]:
    """An International Patient Summary: Composition first, every reference a urn:uuid fullUrl."""
    pid, cid, did = (f"urn:uuid:{uuid.uuid4()}" for _ in range(3))
    composition = {"resourceType": "Composition", "status": "final", "date": "2021-03-01T10:00:00+08:00",
                   "type": {"coding": [{"system": "http://loinc.org", "code": "60591-5"}]},
                   "subject": {"reference": pid}, "author": [{"display": "Guiyang First People's Hospital"}],
                   "title": "International Patient Summary",
                   "section": [{"title": "Problems", "entry": [{"reference": did}],
                                "code": {"coding": [{"system": "http://loinc.org", "code": "11450-4"}]}}]}
    condition = {"resourceType": "Condition", "subject": {"reference": pid},
                 "code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006"}]}}
    return {"resourceType": "Bundle", "type": "document", "timestamp": "2021-03-01T10:00:00+08:00",
            "identifier": {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{uuid.uuid4()}"},
            "entry": [{"fullUrl": cid, "resource": composition},
                      {"fullUrl": pid, "resource": {k: v for k, v in patient.items() if k != "id"}},
                      {"fullUrl": did, "resource": condition}]}


def test_a_document_bundle_is_stored_as_its_resources(stack, token, settings) -> None:
    patient = new_patient()
    doc = _ips(patient)
    r = ingest(settings, token, "/fhir/Bundle", json=doc)
    assert r.status_code == 200, r.text
    locations = [e["response"]["location"] for e in r.json()["entry"]]
    assert [x.split("/")[0] for x in locations] == ["Composition", "Patient", "Condition"]
    composition = wait_readable(settings, token, "Composition", locations[0].split("/")[1])
    assert composition["subject"] == {"reference": locations[1]}
    assert composition["section"][0]["entry"] == [{"reference": locations[2]}]
    condition = wait_readable(settings, token, "Condition", locations[2].split("/")[1])
    assert condition["subject"] == {"reference": locations[1]}

    broken = _ips(new_patient())
    broken["entry"].reverse()  # a Composition must come first (bdl-11)
    r = ingest(settings, token, "/fhir/Bundle", json=broken)
    assert r.status_code == 400, r.text
    assert any("bdl-11" in i["diagnostics"] for i in r.json()["issue"])
