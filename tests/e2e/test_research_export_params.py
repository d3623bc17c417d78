"""``_elements`` and ``_typeFilter`` of a Bulk Data export, on the running platform.

One patient, a member of the project's cohort by a code no one else has, with
two conditions, two observations and two medication requests; the project's
agreement lists the elements a Condition may carry. An export narrowed by
``_elements`` carries only the elements named (tagged SUBSETTED), never one
de-identification removes; ``_typeFilter`` releases only what its queries
match (several for one type ORed), and what it leaves out is neither disclosed
nor audited as disclosed.
"""

from __future__ import annotations

import random
import uuid
from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import first_patient, wait_for
from tests.e2e.test_research_export import apply, as_patient, download, finished, kickoff, review
from tests.integration.records.support import (
    SNOMED,
    all_logged_events,
    condition,
    fresh_patient,
    ingest,
    logged_event,
    phi_needles,
    settled_log_size,
)

DIABETES = "44054006"
LOINC = "http://loinc.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
TYPES = ["Condition", "MedicationRequest", "Observation", "Patient"]
CONDITION_TERMS = ["clinicalStatus", "code", "note", "onset", "subject"]


def observation(pid: str, category: str, code: str, when: str) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": str(uuid.uuid4()), "status": "final",
            "category": [{"coding": [{"system": CATEGORY, "code": category}]}],
            "code": {"coding": [{"system": LOINC, "code": code}]}, "subject": {"reference": f"Patient/{pid}"},
            "effectiveDateTime": when, "valueQuantity": {"value": 7.1, "unit": "%"}}


def medication(pid: str, status: str) -> dict[str, Any]:
    return {"resourceType": "MedicationRequest", "id": str(uuid.uuid4()), "status": status, "intent": "order",
            "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": "860975"}]},
            "subject": {"reference": f"Patient/{pid}"}, "authoredOn": "2021-02-03"}


@pytest.fixture(scope="module")
def study(loaded, settings, token, documents) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """The patient's records and an approved project whose cohort is that patient alone."""
    marker = str(random.randint(10**11, 10**12 - 1))  # a code no other test's patient has
    patient = fresh_patient(first_patient())
    pid = patient["id"]
    needle = f"free text {uuid.uuid4().hex}"
    member = {**condition(pid, marker, "2019-05-01"), "note": [{"text": needle}]}
    records = {
        "member": member, "diabetes": condition(pid, DIABETES, "2021-02-03"),
        "lab": observation(pid, "laboratory", "4548-4", "2021-03-04T10:00:00Z"),
        "vital": observation(pid, "vital-signs", "8480-6", "2018-01-01T10:00:00Z"),
        "active": medication(pid, "active"), "stopped": medication(pid, "stopped"),
    }
    ingest(settings, token, patient, *records.values())
    project = apply(settings, token, documents, level="pseudonymize", types=TYPES, cohort={"conditions": [marker]},
                    elements={"Condition": CONDITION_TERMS})
    assert project["elements"] == {"Condition": CONDITION_TERMS}
    assert review(settings, token, project["id"], "approve").status_code == 200
    return {"project": project, "patient": patient, "needle": needle, "marker": marker, **records}


def export(settings, token, project: str, params: list[tuple[str, str]]) -> tuple[dict[str, Any], list[dict[str, Any]]]:  # type: ignore[no-untyped-def]
    r = kickoff(settings, token, project, params)
    assert r.status_code == 202, r.text
    manifest = finished(settings, token, r.headers["Content-Location"])
    lines = [line for out in manifest["output"] for line in download(token, out["url"]).content.splitlines() if line]
    return manifest, [orjson.loads(line) for line in lines]


def manifest_job(manifest: dict[str, Any]) -> str:
    """The export job's id, from its files' URLs (``/export-jobs/{id}/files/{n}``)."""
    return str(manifest["output"][0]["url"].split("/export-jobs/")[1].split("/")[0])


def of(resources: list[dict[str, Any]], rtype: str) -> list[dict[str, Any]]:
    return [r for r in resources if r["resourceType"] == rtype]


def subsetted(resource: dict[str, Any]) -> bool:
    return any(t.get("code") == "SUBSETTED" for t in (resource.get("meta") or {}).get("tag") or [])


def test_elements_and_type_filters_narrow_the_export(study, settings, token) -> None:  # type: ignore[no-untyped-def]
    start = settled_log_size(settings, token)
    manifest, out = export(settings, token, study["project"]["id"], [
        ("_type", ",".join(TYPES)),
        ("_elements", "Condition.code,Condition.note,Patient.gender,Patient.name"),
        ("_typeFilter", f"Condition?code={SNOMED}|{DIABETES}"),
        ("_typeFilter", "Observation?category=laboratory"),
        ("_typeFilter", "MedicationRequest?status=active"),
    ])
    # _typeFilter: only what each query matches.
    assert [c["id"] for c in of(out, "Condition")] == [study["diabetes"]["id"]]
    assert [o["id"] for o in of(out, "Observation")] == [study["lab"]["id"]]
    assert [m["id"] for m in of(out, "MedicationRequest")] == [study["active"]["id"]]
    # _elements: the elements named and the mandatory ones, tagged SUBSETTED; types it does not name are whole.
    (cond,) = of(out, "Condition")
    assert set(cond) <= {"resourceType", "id", "meta", "code"} and "code" in cond and subsetted(cond)
    (patient,) = of(out, "Patient")
    assert set(patient) <= {"resourceType", "id", "meta", "gender"} and subsetted(patient)  # no birth date
    assert patient["id"].startswith("rp-") and "name" not in patient  # de-identification still applies
    (lab,) = of(out, "Observation")
    assert lab["valueQuantity"]["value"] == 7.1 and not subsetted(lab)
    raw = orjson.dumps(out)
    assert study["needle"].encode() not in raw
    leaked = [n for n in phi_needles([study["patient"]], beside_base64=False) if n in raw]
    assert not leaked, leaked
    assert {o["type"]: o["count"] for o in manifest["output"]} == {
        "Condition": 1, "MedicationRequest": 1, "Observation": 1, "Patient": 1}
    # What the filters left out was not disclosed: the patient's audit event lists only what was released.
    (told,) = [n for n in _notices(settings, token, study["patient"]["id"]) if n["project"] == study["project"]["id"]]
    event = logged_event(settings, token, told["event_id"])
    assert {(r["type"], r["id"]) for r in event["resources"]} >= {("Condition", study["diabetes"]["id"])}
    assert not {r["id"] for r in event["resources"]} & {study[k]["id"] for k in ("member", "vital", "stopped")}
    # The export's own event says how it was narrowed.
    job = manifest_job(manifest)
    found: dict[str, Any] = {}

    def summary() -> bool:
        found.update(next((e for e in all_logged_events(settings, token, start) if e["patient"] is None
                           and e["details"].get("export") == job), {}))
        return bool(found)

    wait_for(summary, 60, "the export's event in the log")
    assert found["details"]["elements"]["Patient"] == ["gender", "name"]
    assert found["details"]["type_filters"]["Observation"] == ["Observation?category=laboratory"]


def test_filters_for_one_type_are_ored_and_dates_bound_them(study, settings, token) -> None:  # type: ignore[no-untyped-def]
    _, out = export(settings, token, study["project"]["id"], [
        ("_type", "Condition,Observation"),
        ("_typeFilter", f"Condition?code={SNOMED}|{DIABETES}"),
        ("_typeFilter", f"Condition?code={study['marker']}"),
        ("_typeFilter", "Observation?date=ge2020-01-01&date=le2021-12-31"),
    ])
    assert {c["id"] for c in of(out, "Condition")} == {study["diabetes"]["id"], study["member"]["id"]}
    assert [o["id"] for o in of(out, "Observation")] == [study["lab"]["id"]]
    # The agreement's element terms cut every Condition, asked or not; free text is gone all the same.
    assert all(set(c) <= {"resourceType", "id", "meta", *CONDITION_TERMS, "onsetDateTime"} and subsetted(c)
               for c in of(out, "Condition"))
    assert all("note" not in c for c in of(out, "Condition"))
    assert study["needle"].encode() not in orjson.dumps(out)


def _notices(settings, token, pid: str) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    got = httpx.get(f"{settings.records_url}/notices", headers=as_patient(token, pid), timeout=30)
    assert got.status_code == 200, got.text
    return [n for n in got.json()["notices"] if n["kind"] == "research_use"]
