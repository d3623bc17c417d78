"""The read API on the running platform: who gets what, under which authority, and in what form."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import httpx
import pytest

from tests.conftest import first_patient
from tests.integration.records.support import (
    DEPRESSION,
    HYPERTENSION,
    MRN_SYSTEM,
    SNOMED,
    bearer,
    condition,
    fresh_patient,
    ingest,
    logged_event,
    phi_needles,
)

NOTIFIABLE_PATIENT = "ca15b832-01e4-41dd-6a52-97bd3e5510cb"  # two NOTIFIABLE conditions in the fixtures
PSY_PATIENT = "79a66c97-6131-3213-f3c9-4606946ab056"  # PSY, SDV, ETH and SEX labelled records


@pytest.fixture(scope="module")
def mine(stack, token, settings) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """A patient of this module: a plain condition from 2019, a PSY one from 2020 (updated once)."""
    p = fresh_patient(first_patient())
    pid = p["id"]
    plain, sensitive = condition(pid, HYPERTENSION, "2019-05-01"), condition(pid, DEPRESSION, "2020-02-01")
    ingest(settings, token, p, plain, sensitive)
    sensitive_v2 = {**sensitive, "onsetDateTime": "2020-03-01"}
    ingest(settings, token, sensitive_v2)
    mrn = next(i["value"] for i in p["identifier"] if i["system"] == MRN_SYSTEM)
    return {"id": pid, "plain": plain["id"], "sensitive": sensitive["id"], "mrn": mrn, "patient": p}


def clinician(token, org: str = "gy-hosp-001", purpose: str = "TREAT", **headers: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return bearer(token(org, purpose=purpose), **headers)


def get(settings, path: str, headers: dict[str, str], **params: Any) -> httpx.Response:  # type: ignore[no-untyped-def]
    return httpx.get(f"{settings.records_url}{path}", headers=headers, params=params, timeout=60)


# --- searches, versions ------------------------------------------------------------


def test_search_by_code_date_and_identifier(mine, token, settings) -> None:  # type: ignore[no-untyped-def]
    pid = mine["id"]

    def ids(**params: Any) -> list[str]:
        r = get(settings, "/fhir/Condition", clinician(token), patient=pid, **params)
        assert r.status_code == 200, r.text
        return sorted(e["resource"]["id"] for e in r.json()["entry"])

    assert ids() == sorted([mine["plain"], mine["sensitive"]])
    assert ids(code=f"{SNOMED}|{HYPERTENSION}") == [mine["plain"]]
    assert ids(code=f"{HYPERTENSION},{DEPRESSION}") == sorted([mine["plain"], mine["sensitive"]])
    assert ids(date="ge2020-01-01") == [mine["sensitive"]]
    assert ids(date=["ge2019", "lt2020"]) == [mine["plain"]]
    assert ids(date="2020-02") == []  # the current version's onset moved to March

    by_mrn = get(settings, "/fhir/Patient", clinician(token), identifier=f"{MRN_SYSTEM}|{mine['mrn']}")
    assert by_mrn.status_code == 200 and [e["resource"]["id"] for e in by_mrn.json()["entry"]] == [pid]
    chained = get(settings, "/fhir/Condition", clinician(token),
                  **{"patient.identifier": f"{MRN_SYSTEM}|{mine['mrn']}"})
    assert chained.json()["total"] == 2
    # An identifier that names nobody is refused like a patient this clinician has no care of: no oracle.
    nobody = get(settings, "/fhir/Patient", clinician(token), identifier=f"{MRN_SYSTEM}|MRN-nobody")
    assert nobody.status_code == 403 and "no_care_relationship" in nobody.text
    bad = get(settings, "/fhir/Condition", clinician(token), patient=pid, date="last week")
    assert bad.status_code == 400 and bad.json()["resourceType"] == "OperationOutcome"


def test_updates_are_versions_and_history_lists_them(mine, token, settings) -> None:  # type: ignore[no-untyped-def]
    path = f"/fhir/Condition/{mine['sensitive']}"
    current = get(settings, path, clinician(token)).json()
    assert current["meta"]["versionId"] == "2" and current["onsetDateTime"] == "2020-03-01"
    history = get(settings, f"{path}/_history", clinician(token)).json()
    assert history["type"] == "history"
    assert [(e["resource"]["meta"]["versionId"], e["resource"]["onsetDateTime"]) for e in history["entry"]] == [
        ("2", "2020-03-01"), ("1", "2020-02-01")]
    first = get(settings, f"{path}/_history/1", clinician(token))
    assert first.status_code == 200 and first.json()["onsetDateTime"] == "2020-02-01"
    assert get(settings, f"{path}/_history/9", clinician(token)).status_code == 404


# --- who gets what ---------------------------------------------------------------------


def test_a_researcher_gets_pseudonymized_data_only(loaded, ten_patients, token, settings, documents) -> None:  # type: ignore[no-untyped-def]
    headers = {"X-Ethics-Approval": documents.ethics_approval(jti="irb-2026-17")}
    r = get(settings, f"/fhir/Patient/{PSY_PATIENT}/$everything",
            bearer(token("gz-uni-research", role="researcher", purpose="HRESCH"), **headers))
    assert r.status_code == 200, r.text
    bundle = r.json()
    assert bundle["total"] > 100
    # birth dates stay (they are not direct identifiers)
    patients = [x for x in ten_patients if x["resourceType"] == "Patient"]  # practitioners' names may stay
    needles = {n for n in phi_needles(patients, beside_base64=False) if not re.fullmatch(rb"\d{4}-\d\d-\d\d", n)}
    leaked = sorted(n.decode() for n in needles if n in r.content)
    assert not leaked, f"identifying data released to research: {leaked[:5]}"
    (patient,) = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"]
    assert patient["id"].startswith("rp-") and "name" not in patient and "identifier" not in patient
    subjects = {e["resource"]["subject"]["reference"] for e in bundle["entry"] if "subject" in e["resource"]}
    assert subjects == {f"Patient/{patient['id']}"}
    assert int(r.headers["X-Healthgov-Withheld"]) > 0  # sensitive labels are redacted for research
    event = logged_event(settings, token, r.headers["X-Healthgov-Event-Id"])
    assert event["decision"]["obligations"]["deidentify"] == "pseudonymize"
    assert event["legal"] == {"ethics_approval": "irb-2026-17"}
    no_approval = get(settings, f"/fhir/Patient/{PSY_PATIENT}/$everything",
                      bearer(token("gz-uni-research", role="researcher", purpose="HRESCH")))
    assert no_approval.status_code == 403 and "ethics_approval_missing" in no_approval.text


def test_public_health_gets_notifiable_records_identified_and_counts_of_the_rest(loaded, token, settings) -> None:  # type: ignore[no-untyped-def]
    r = get(settings, f"/fhir/Patient/{NOTIFIABLE_PATIENT}/$everything",
            bearer(token("gy-cdc", role="epidemiologist", purpose="PUBHLTH")))
    assert r.status_code == 200, r.text
    bundle = r.json()
    assert [e["resource"]["resourceType"] for e in bundle["entry"]] == ["Condition", "Condition"]
    counts = {x["url"]: x["valueInteger"] for ext in bundle["meta"]["extension"]
              if ext["url"].endswith("/aggregate") for x in ext["extension"]}
    assert counts["Encounter"] > 0 and counts["Patient"] == 1


def test_a_regulator_never_reads_record_content(loaded, token, settings) -> None:  # type: ignore[no-untyped-def]
    r = get(settings, f"/fhir/Patient/{PSY_PATIENT}/$everything",
            bearer(token("gz-nhc", role="inspector", purpose="HCOMPL")))
    assert r.status_code == 403 and "regulators_read_audit_trail_only" in r.text


def test_break_glass_needs_a_reason_and_is_flagged_for_review(loaded, token, settings) -> None:  # type: ignore[no-untyped-def]
    path = f"/fhir/Patient/{PSY_PATIENT}/$everything"
    assert "no_care_relationship" in get(settings, path, clinician(token, "gy-hosp-002")).text
    no_reason = get(settings, path, clinician(token, "gy-hosp-002", "ETREAT"))
    assert no_reason.status_code == 403 and "break_glass_reason_missing" in no_reason.text
    r = get(settings, path, clinician(token, "gy-hosp-002", "ETREAT", **{"X-Break-Glass-Reason": "unconscious in ER"}))
    assert r.status_code == 200 and r.headers["X-Healthgov-Withheld"] == "0"
    event = logged_event(settings, token, r.headers["X-Healthgov-Event-Id"])
    assert event["kind"] == "break_glass" and event["details"]["break_glass_reason"] == "unconscious in ER"
    assert event["decision"]["obligations"]["review"] is True
    assert event["decision"]["obligations"]["notify_patient"] is True
    claim = bearer(token("gy-hosp-002", purpose="ETREAT", break_glass_reason="cardiac arrest"))
    assert get(settings, path, claim).status_code == 200  # the reason may travel in the token


def test_a_warrant_opens_only_the_labels_it_names(loaded, token, settings, documents) -> None:  # type: ignore[no-untyped-def]
    warrant = {"jti": "w-88", "labels": ["PSY"], "sealed_until": "2099-01-01T00:00:00Z"}

    def police(w: dict[str, Any], patient: str = PSY_PATIENT, **kw: Any) -> dict[str, str]:
        return bearer(token("gy-police", role="investigator", purpose="HLEGAL"),
                      **{"X-Warrant": documents.warrant(patient, **kw, **w)})

    r = get(settings, "/fhir/Condition", police(warrant), patient=PSY_PATIENT)
    assert r.status_code == 200, r.text
    withheld = {x["url"] for ext in r.json()["meta"]["extension"] for x in ext["extension"]}
    assert withheld and all("PSY" not in reason for reason in withheld)  # SDV, ETH, SEX stay withheld
    event = logged_event(settings, token, r.headers["X-Healthgov-Event-Id"])
    assert event["legal"] == {"warrant": "w-88"} and event["decision"]["obligations"]["review"] is True
    assert event["decision"]["obligations"]["notify_after"]  # sealed: the patient is told later
    wrong = get(settings, "/fhir/Condition", police(warrant, NOTIFIABLE_PATIENT), patient=PSY_PATIENT)
    assert wrong.status_code == 403 and "warrant_patient_mismatch" in wrong.text
    # A court the registry does not know signs with a key nobody can check: refused before the policy.
    forged = get(settings, "/fhir/Condition", police(warrant, court="kangaroo-court"), patient=PSY_PATIENT)
    assert forged.status_code == 403 and "warrant_issuer_unknown" in forged.text
    malformed = get(settings, "/fhir/Condition", bearer(token("gy-police", purpose="HLEGAL"), **{"X-Warrant": "{"}),
                    patient=PSY_PATIENT)
    assert malformed.status_code == 403 and "warrant_unsigned" in malformed.text
    assert malformed.json()["resourceType"] == "OperationOutcome"


def test_a_referral_gives_another_hospital_a_care_relationship(stack, token, settings) -> None:  # type: ignore[no-untyped-def]
    p = fresh_patient(first_patient())
    pid = p["id"]
    plain, sensitive = condition(pid, HYPERTENSION, "2019-05-01"), condition(pid, DEPRESSION, "2020-02-01")
    ingest(settings, token, p, plain, sensitive)
    assert "no_care_relationship" in get(settings, "/fhir/Condition", clinician(token, "gy-hosp-002"), patient=pid).text

    def refer(headers: dict[str, str], to: str) -> httpx.Response:
        body = {"resourceType": "Parameters",
                "parameter": [{"name": "organization", "valueReference": {"reference": f"Organization/{to}"}}]}
        return httpx.post(f"{settings.records_url}/fhir/Patient/{pid}/$refer", json=body, headers=headers, timeout=30)

    assert refer(bearer(token("gz-insurer-1", purpose="HPAYMT")), "gy-hosp-002").status_code == 403
    suspended = refer(clinician(token), "gy-hosp-099")
    assert suspended.status_code == 403 and "referral_target_not_a_hospital" in suspended.text
    r = refer(clinician(token), "gy-hosp-002")
    assert r.status_code == 201, r.text
    assert refer(clinician(token), "gy-hosp-002").status_code == 200  # already referred: nothing new
    event = logged_event(settings, token, r.headers["X-Healthgov-Event-Id"])
    assert event["kind"] == "referral" and event["details"]["until"] > event["occurred_at"]
    assert {k: v for k, v in event["details"].items() if k != "until"} == {
        "to": "gy-hosp-002", "new": True, "source": "referral"}
    got = get(settings, "/fhir/Condition", clinician(token, "gy-hosp-002"), patient=pid)
    assert got.status_code == 200
    # Another hospital's sensitive records stay withheld from the receiving team.
    assert [e["resource"]["id"] for e in got.json()["entry"]] == [plain["id"]]
    assert got.headers["X-Healthgov-Withheld"] == "1"


def test_directory_entries_are_for_the_health_system_only(loaded, token, settings) -> None:  # type: ignore[no-untyped-def]
    r = get(settings, "/fhir/Organization", clinician(token))
    assert r.status_code == 200 and r.json()["total"] == loaded["expected"]["Organization"]
    insurer = get(settings, "/fhir/Organization", bearer(token("gz-insurer-1", purpose="HPAYMT")))
    assert insurer.status_code == 403 and "directory_not_permitted_for_org_type" in insurer.text
    assert get(settings, "/fhir/Condition", clinician(token)).status_code == 400  # a search needs a patient


def test_the_x_purpose_of_use_header_restates_the_tokens_purpose_and_never_supplies_it(mine, token, settings) -> None:  # type: ignore[no-untyped-def]
    pid = mine["id"]
    r = get(settings, "/fhir/Condition", clinician(token, **{"X-Purpose-Of-Use": "TREAT"}), patient=pid)
    assert r.status_code == 200, r.text
    assert sorted(e["resource"]["id"] for e in r.json()["entry"]) == sorted([mine["plain"], mine["sensitive"]])
    event = logged_event(settings, token, r.headers["X-Healthgov-Event-Id"])
    assert event["purpose"] == "TREAT" and event["decision"]["allow"] is True
    no_claim = token("gy-hosp-001")  # a token without a purpose claim
    assert "purpose" not in json.loads(base64.urlsafe_b64decode(no_claim.split(".")[1] + "=="))
    neither = get(settings, "/fhir/Condition", bearer(no_claim), patient=pid)
    assert neither.status_code == 403 and "unknown_purpose" in neither.text and "entry" not in neither.json()
    # A purpose nobody signed is refused and audited, whatever it is.
    for stated in ("TREAT", "HMARKT"):
        unsigned = get(settings, "/fhir/Condition", bearer(token("gy-hosp-001"), **{"X-Purpose-Of-Use": stated}),
                       patient=pid)
        assert unsigned.status_code == 403 and "purpose_not_in_token" in unsigned.text
        assert "entry" not in unsigned.json()
        refused = logged_event(settings, token, unsigned.headers["X-Healthgov-Event-Id"])
        assert refused["kind"] == "denial" and refused["decision"]["reasons"] == ["purpose_not_in_token"]
        assert refused["details"]["stated_purpose"] == stated
