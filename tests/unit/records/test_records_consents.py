"""FHIR Consent in, the policy's consent documents out (services/records/consents.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from services.records import consents
from services.records.consents import InvalidConsent

PID = "p-123"


def consent(**provision: Any) -> dict[str, Any]:
    base = {"type": "permit", "period": {"end": "2030-01-01"},
            "actor": [{"reference": {"reference": "Organization/gz-insurer-1"}}],
            "purpose": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "HPAYMT"}],
            "class": [{"system": "http://hl7.org/fhir/resource-types", "code": "Encounter"}]}
    base.update(provision)
    return {"resourceType": "Consent", "patient": {"reference": f"Patient/{PID}"},
            "provision": {k: v for k, v in base.items() if v is not None}}


def issues_of(doc: Any) -> list[str]:
    with pytest.raises(InvalidConsent) as err:
        consents.parse(doc)
    return [i.expression or "" for i in err.value.issues]


def test_parse_fills_what_the_server_owns_and_keeps_the_rest() -> None:
    now = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
    sent = consent() | {"id": "client-chosen", "meta": {"versionId": "9"}}
    kept = consents.parse(sent, now=now)
    assert "id" not in kept and "meta" not in kept  # the server assigns them
    assert kept["status"] == "active"
    assert kept["scope"]["coding"][0]["code"] == "patient-privacy"
    assert kept["category"][0]["coding"][0]["code"] == "59284-0"
    assert kept["dateTime"] == "2026-11-22T10:00:00Z"
    assert kept["performer"] == [{"reference": f"Patient/{PID}"}]
    assert kept["provision"]["actor"][0]["role"]["coding"][0]["code"] == "IRCP"
    assert sent["provision"]["actor"][0].get("role") is None  # the caller's document is not mutated
    assert consents.patient_of(kept) == PID


@pytest.mark.parametrize(("doc", "where"), [
    ({"resourceType": "Patient"}, "Consent"),
    ([], "Consent"),
    ({**consent(), "patient": {"reference": "Group/1"}}, "Consent.patient"),
    ({**consent(), "patient": None}, "Consent.patient"),
    (consent(type="maybe"), "Consent.provision.type"),
    (consent(type=None), "Consent.provision.type"),
    (consent(actor=[{"reference": {"reference": "Practitioner/dr-who"}}]), "Consent.provision.actor[0].reference"),
    (consent(purpose=[{"code": "SHOPPING"}]), "Consent.provision.purpose[0]"),
    (consent(period={"end": "next tuesday"}), "Consent.provision.period.end"),
    (consent(provision=[{"type": "deny"}]), "Consent.provision.provision"),
    ({**consent(), "status": "bogus"}, "Consent.status"),
])
def test_bad_consents_are_refused_naming_the_element(doc: Any, where: str) -> None:
    found = issues_of(doc)
    assert any(e.startswith(where) for e in found), found


def test_to_policy_translates_a_permit() -> None:
    kept = consents.with_identity(consents.parse(consent(securityLabel=[{"code": "PSY"}, {"code": "HIV"}])),
                                  "c1", 1, "2026-11-22T10:00:00Z")
    assert consents.to_policy(kept) == [{
        "id": "c1", "grantee": "gz-insurer-1", "purpose": "HPAYMT", "decision": "permit",
        "types": ["Encounter"], "labels": ["HIV", "PSY"], "expires": "2030-01-01T00:00:00Z", "status": "active"}]


def test_to_policy_expands_grantees_and_purposes_and_reads_absence_as_fhir_does() -> None:
    doc = consent(type="deny", actor=None, purpose=None, period=None, **{"class": None})
    assert consents.to_policy(consents.with_identity(consents.parse(doc), "c2", 1, "t")) == [{
        "id": "c2", "grantee": None, "purpose": "*", "decision": "deny", "types": [], "labels": [],
        "expires": None, "status": "active"}]
    two = consent(actor=[{"reference": {"reference": f"Organization/{org}"}} for org in ("a", "b")],
                  purpose=[{"code": "HPAYMT"}, {"code": "HMARKT"}])
    pairs = {(c["grantee"], c["purpose"]) for c in consents.to_policy(consents.parse(two))}
    assert pairs == {("a", "HPAYMT"), ("a", "HMARKT"), ("b", "HPAYMT"), ("b", "HMARKT")}


def test_revocation_is_a_status_the_policy_reads() -> None:
    kept = consents.with_identity(consents.parse(consent()), "c1", 1, "t")
    withdrawn = consents.with_identity(consents.revoked(kept), "c1", 2, "t2")
    assert withdrawn["status"] == "inactive" and kept["status"] == "active"
    assert withdrawn["meta"] == {"versionId": "2", "lastUpdated": "t2"}
    assert [c["status"] for c in consents.to_policy(withdrawn)] == ["inactive"]


@pytest.mark.parametrize(("value", "instant"), [
    ("2027", "2027-01-01T00:00:00Z"),
    ("2027-03", "2027-03-01T00:00:00Z"),
    ("2027-03-04", "2027-03-04T00:00:00Z"),
    ("2027-03-04T10:00:00+02:00", "2027-03-04T08:00:00.000000Z"),
    ("2027-03-04T10:00:00Z", "2027-03-04T10:00:00.000000Z"),
    ("2027-02-30", None),
    ("2027-03-04T10:00:00", None),  # a dateTime with a time needs a zone (FHIR)
    (None, None),
])
def test_expiry_becomes_an_rfc3339_instant(value: Any, instant: str | None) -> None:
    assert consents.normalise_instant(value) == instant


def test_the_audit_summary_names_terms_not_the_patient() -> None:
    kept = consents.with_identity(consents.parse(consent()), "c1", 1, "t")
    summary = consents.summary(kept)
    assert summary == {"consent": "c1", "status": "active", "provision": "permit", "grantees": ["gz-insurer-1"],
                       "purposes": ["HPAYMT"], "types": ["Encounter"], "labels": [],
                       "expires": "2030-01-01T00:00:00Z"}
    assert PID not in str(summary)
