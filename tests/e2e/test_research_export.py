"""Governed research use on the running platform: a data-use project is applied for, approved, exports.

The export is FHIR Bulk Data ``$export`` (kick-off with ``Prefer: respond-async``,
poll, download NDJSON). Each patient is asked of the policy as a research read
under the project's ethics approval: an opted-out patient is absent; what leaves
is de-identified at the project's level, named by pseudonyms keyed on the
project; each included patient is told; the files reach only the organisation
that asked.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import first_patient, wait_for
from tests.integration.records.support import (
    HYPERTENSION,
    bearer,
    condition,
    fresh_patient,
    ingest,
    logged_event,
    phi_needles,
)

RESEARCH = "gz-uni-research"
DIABETES = "44054006"
TYPES = ["Condition", "Encounter", "Observation", "Patient"]


def researcher(token, **headers: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return bearer(token(RESEARCH, role="researcher", purpose="HRESCH"), **headers)


def regulator(token) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return bearer(token("gz-nhc", role="inspector", purpose="HCOMPL"))


def as_patient(token, pid: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return bearer(token("healthgov-portal", role="patient", patient=pid, purpose="PATRQT"))


def apply(settings, token, documents, *, level: str = "safe_harbor", types: list[str] | None = None,  # type: ignore[no-untyped-def]
          expires: datetime | None = None, cohort: dict[str, Any] | None = None,
          elements: dict[str, list[str]] | None = None) -> dict[str, Any]:
    body = {"title": "Hypertension outcomes in Guizhou", "purpose": "Cohort study of blood pressure control",
            "types": types or TYPES, "deidentify": level, "cohort": cohort or {},
            "expires": (expires or datetime.now(UTC) + timedelta(days=30)).isoformat()}
    if elements is not None:
        body["elements"] = elements
    r = httpx.post(f"{settings.records_url}/projects", json=body, timeout=30,
                   headers=researcher(token, **{"X-Ethics-Approval": documents.ethics_approval(project="htn")}))
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "applied"
    return r.json()


def review(settings, token, project: str, step: str) -> httpx.Response:  # type: ignore[no-untyped-def]
    return httpx.post(f"{settings.records_url}/projects/{project}/${step}", headers=regulator(token), timeout=30)


def kickoff(settings, token, project: str, params: Any = None, **named: str) -> httpx.Response:  # type: ignore[no-untyped-def]
    """The kick-off; ``params`` as a list of pairs repeats a parameter (``_typeFilter`` may be given many times)."""
    return httpx.get(f"{settings.records_url}/fhir/Group/{project}/$export", params=params or named, timeout=60,
                     headers=researcher(token, Prefer="respond-async", Accept="application/fhir+json"))


def finished(settings, token, location: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """Poll the status URL as a Bulk Data client does (202 + X-Progress) until the manifest (200)."""
    seen: dict[str, Any] = {}

    def done() -> bool:
        r = httpx.get(location, headers=researcher(token), timeout=30)
        assert r.status_code in (200, 202), r.text
        if r.status_code == 202:
            assert r.headers["X-Progress"]
            return False
        seen["manifest"] = r.json()
        return True

    wait_for(done, 180, "the export to complete")
    return seen["manifest"]


def download(token, url: str, org: str = RESEARCH) -> httpx.Response:  # type: ignore[no-untyped-def]
    return httpx.get(url, headers=bearer(token(org, role="researcher", purpose="HRESCH")), timeout=60)


@pytest.fixture(scope="module")
def opted_out(loaded, token, settings) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """A patient who opted out of research, with one condition."""
    p = fresh_patient(first_patient())
    cond = condition(p["id"], HYPERTENSION, "2019-05-01")
    ingest(settings, token, p, cond)
    opt_out = {"resourceType": "Consent", "patient": {"reference": f"Patient/{p['id']}"},
               "provision": {"type": "deny", "purpose": [{"code": "HRESCH"}]}}
    r = httpx.post(f"{settings.records_url}/fhir/Consent", json=opt_out, headers=as_patient(token, p["id"]),
                   timeout=30)
    assert r.status_code == 201, r.text
    return {"patient": p, "condition": cond["id"]}


@pytest.fixture(scope="module")
def approved(settings, token, documents) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    project = apply(settings, token, documents)
    r = review(settings, token, project["id"], "approve")
    assert r.status_code == 200 and r.json()["status"] == "approved", r.text
    return project


def test_only_the_regulator_reviews_and_only_approved_projects_export(settings, token, documents) -> None:  # type: ignore[no-untyped-def]
    project = apply(settings, token, documents)
    early = kickoff(settings, token, project["id"])
    assert early.status_code == 403 and "project_not_approved" in early.text
    assert logged_event(settings, token, early.headers["X-Healthgov-Event-Id"])["kind"] == "denial"
    own = httpx.post(f"{settings.records_url}/projects/{project['id']}/$approve", headers=researcher(token))
    assert own.status_code == 403 and "project_review_requires_regulator" in own.text
    approved = review(settings, token, project["id"], "approve")
    assert approved.status_code == 200 and approved.json()["status"] == "approved"
    suspended = review(settings, token, project["id"], "suspend")
    assert suspended.status_code == 200 and suspended.json()["status"] == "suspended"
    refused = kickoff(settings, token, project["id"])
    assert refused.status_code == 403 and "project_not_approved" in refused.text
    event = logged_event(settings, token, refused.headers["X-Healthgov-Event-Id"])
    assert event["kind"] == "denial" and event["details"]["project"] == project["id"]
    assert review(settings, token, project["id"], "revoke").status_code == 200
    assert review(settings, token, project["id"], "approve").status_code == 409  # revoked is for good
    outside = kickoff(settings, token, project["id"], _type="MedicationRequest")
    assert outside.status_code == 403


def test_an_expired_project_is_refused(settings, token, documents) -> None:  # type: ignore[no-untyped-def]
    project = apply(settings, token, documents, expires=datetime.now(UTC) + timedelta(seconds=3))
    assert review(settings, token, project["id"], "approve").status_code == 200
    time.sleep(4)
    r = kickoff(settings, token, project["id"])
    assert r.status_code == 403 and "project_expired" in r.text
    assert logged_event(settings, token, r.headers["X-Healthgov-Event-Id"])["kind"] == "denial"


def test_types_outside_the_agreement_are_refused(approved, settings, token) -> None:  # type: ignore[no-untyped-def]
    r = kickoff(settings, token, approved["id"], _type="Patient,MedicationRequest")
    assert r.status_code == 403 and "export_type_not_in_agreement" in r.text
    assert kickoff(settings, token, approved["id"], _since="yesterday").status_code == 400
    unsupported = kickoff(settings, token, approved["id"], _typeFilter="Condition?_lastUpdated=ge2020-01-01")
    assert unsupported.status_code == 400 and "_typeFilter" in unsupported.text
    assert kickoff(settings, token, approved["id"], includeAssociatedData="LatestProvenanceResources"
                   ).status_code == 400
    assert kickoff(settings, token, approved["id"], _outputFormat="text/csv").status_code == 400
    no_prefer = httpx.get(f"{settings.records_url}/fhir/Group/{approved['id']}/$export", headers=researcher(token))
    assert no_prefer.status_code == 400


def test_export_is_governed_de_identified_and_accounted(loaded, ten_patients, opted_out, approved, settings,  # type: ignore[no-untyped-def]
                                                         token) -> None:
    r = kickoff(settings, token, approved["id"])
    assert r.status_code == 202, r.text
    location = r.headers["Content-Location"]
    manifest = finished(settings, token, location)
    assert manifest["requiresAccessToken"] is True and manifest["transactionTime"]
    assert f"Group/{approved['id']}/$export" in manifest["request"]
    assert {o["type"] for o in manifest["output"]} <= set(TYPES)
    lines: list[bytes] = []
    for out in manifest["output"]:
        got = download(token, out["url"])
        assert got.status_code == 200 and got.headers["content-type"].startswith("application/fhir+ndjson")
        part = [line for line in got.content.splitlines() if line]
        assert len(part) == out["count"]
        assert all(orjson.loads(line)["resourceType"] == out["type"] for line in part)
        lines += part
        for other in ("gy-hosp-001", "gz-insurer-1"):  # another organisation cannot fetch the files
            assert download(token, out["url"], org=other).status_code == 404
    patients = [orjson.loads(line) for line in lines if b'"resourceType":"Patient"' in line]
    assert len(patients) >= len(loaded["patient_ids"])
    assert all(p["id"].startswith("rp-") and "name" not in p and "identifier" not in p for p in patients)
    assert all(len(p.get("birthDate", "1900")) == 4 for p in patients)  # Safe Harbor: the year only

    # No name, identifier, address or birth date of a fixture patient is in any output line.
    needles = phi_needles([x for x in ten_patients if x["resourceType"] == "Patient"] + [opted_out["patient"]],
                          beside_base64=False)
    leaked = sorted({n.decode() for n in needles for line in lines if n in line})
    assert not leaked, f"identifying data in the export: {leaked[:5]}"
    # The opted-out patient is absent, and the error file says how many were left out and why.
    assert not any(opted_out["condition"].encode() in line for line in lines)
    assert manifest["extension"]["excludedPatients"] >= 1
    (err,) = manifest["error"]
    outcome = download(token, err["url"])
    assert outcome.status_code == 200 and b"patient_opted_out" in outcome.content
    assert opted_out["patient"]["id"].encode() not in outcome.content

    # Accountability: the included patient is told, the opted-out one is not.
    def notices(pid: str) -> list[dict[str, Any]]:
        got = httpx.get(f"{settings.records_url}/notices", headers=as_patient(token, pid), timeout=30)
        assert got.status_code == 200, got.text
        return [n for n in got.json()["notices"] if n["kind"] == "research_use"]

    told = notices(loaded["patient_ids"][0])
    assert any(n["project"] == approved["id"] and n["org"] == RESEARCH for n in told)
    assert notices(opted_out["patient"]["id"]) == []
    event = logged_event(settings, token, told[0]["event_id"])
    assert event["details"]["project"] == approved["id"] and event["decision"]["obligations"]["deidentify"] == \
        "safe_harbor"

    # Another organisation does not see the job at all; the owner can cancel it, and then it is gone.
    assert httpx.get(location, headers=bearer(token("gz-insurer-1", role="claims", purpose="HPAYMT"))
                     ).status_code == 404
    assert httpx.delete(location, headers=researcher(token)).status_code == 202
    assert httpx.get(location, headers=researcher(token)).status_code == 404
    assert download(token, manifest["output"][0]["url"]).status_code == 404


def test_pseudonyms_are_stable_within_a_project_and_differ_between_projects(loaded, approved, settings, token,  # type: ignore[no-untyped-def]
                                                                             documents) -> None:
    def patient_ids(project: str) -> set[str]:
        r = kickoff(settings, token, project, _type="Patient")
        assert r.status_code == 202, r.text
        manifest = finished(settings, token, r.headers["Content-Location"])
        return {orjson.loads(line)["id"] for out in manifest["output"]
                for line in download(token, out["url"]).content.splitlines() if line}

    other = apply(settings, token, documents, level="pseudonymize")
    assert review(settings, token, other["id"], "approve").status_code == 200
    first, again, elsewhere = patient_ids(approved["id"]), patient_ids(approved["id"]), patient_ids(other["id"])
    assert first and first == again
    assert not first & elsewhere


def test_only_the_cohort_is_exported(loaded, ten_patients, opted_out, settings, token, documents) -> None:  # type: ignore[no-untyped-def]
    """A hypertension cohort: a patient with hypertension in 2019 is in, one with diabetes and the fixtures are not."""
    member, other = fresh_patient(first_patient()), fresh_patient(first_patient())
    in_cohort, outside = condition(member["id"], HYPERTENSION, "2019-05-01"), condition(other["id"], DIABETES,
                                                                                           "2019-05-01")
    ingest(settings, token, member, in_cohort)
    ingest(settings, token, other, outside)
    bad = httpx.post(f"{settings.records_url}/projects", timeout=30, json={
        "title": "t", "purpose": "p", "types": ["Patient"], "deidentify": "safe_harbor",
        "cohort": {"diagnosis": HYPERTENSION}, "expires": (datetime.now(UTC) + timedelta(days=1)).isoformat()},
        headers=researcher(token, **{"X-Ethics-Approval": documents.ethics_approval(project="htn")}))
    assert bad.status_code == 400 and "unknown cohort criteria" in bad.text  # never silently widened to everyone
    project = apply(settings, token, documents, level="pseudonymize", types=["Condition", "Patient"],
                    cohort={"conditions": [HYPERTENSION], "period": {"start": "2019-01-01", "end": "2019-12-31"}})
    assert project["cohort"]["conditions"] == [HYPERTENSION]
    assert review(settings, token, project["id"], "approve").status_code == 200
    r = kickoff(settings, token, project["id"])
    assert r.status_code == 202, r.text
    manifest = finished(settings, token, r.headers["Content-Location"])
    lines = b"".join(download(token, out["url"]).content for out in manifest["output"])
    assert in_cohort["id"].encode() in lines
    assert outside["id"].encode() not in lines
    fixture_conditions = [x["id"] for x in ten_patients if x["resourceType"] == "Condition"]
    assert not [c for c in fixture_conditions if c.encode() in lines]  # none of the fixtures has hypertension
    assert opted_out["condition"].encode() not in lines  # a member (hypertension in 2019) who opted out
    assert manifest["extension"]["excludedPatients"] >= 1
