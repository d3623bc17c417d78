"""The portal's consent form: what a patient may ask for, and the Consent it becomes."""

from __future__ import annotations

import json
from datetime import date, timedelta

import pytest

from services.adapters.config import REPO_ROOT
from services.portal import consents

REGISTRY = json.loads((REPO_ROOT / "deploy" / "demo" / "registry.json").read_text())
TODAY = date(2026, 11, 23)


def form(**fields: str | list[str]) -> dict[str, list[str]]:
    return {k: v if isinstance(v, list) else [v] for k, v in fields.items()}


def test_only_third_parties_can_be_chosen() -> None:
    ids = {o["id"] for o in consents.third_parties(REGISTRY)}
    assert ids == {"gz-uni-research", "gz-insurer-1", "gy-datamart"}


def test_a_permission_without_an_end_lasts_a_year() -> None:
    grant = consents.parse_grant(form(grantee="gz-insurer-1", purpose="HPAYMT", decision="permit",
                                      types=["Condition", "Condition", "Encounter"]), REGISTRY, TODAY)
    assert grant.types == ("Condition", "Encounter")
    assert grant.end == TODAY + timedelta(days=consents.DEFAULT_PERMIT_DAYS)


def test_a_refusal_covers_every_kind_of_record_and_has_no_end() -> None:
    grant = consents.parse_grant(form(grantee="gz-uni-research", purpose="HRESCH", decision="deny",
                                      types=["Condition"]), REGISTRY, TODAY)
    assert grant.types == () and grant.end is None


def test_the_consent_names_the_signed_in_patient_only() -> None:
    grant = consents.parse_grant(form(grantee="gz-insurer-1", purpose="HPAYMT", decision="permit",
                                      types="Condition", end="2027-01-31", patient="someone-else"), REGISTRY, TODAY)
    doc = grant.to_fhir("me-123")
    assert doc["patient"] == {"reference": "Patient/me-123"}
    assert "someone-else" not in json.dumps(doc)
    assert doc["provision"]["type"] == "permit"
    assert doc["provision"]["actor"][0]["reference"]["reference"] == "Organization/gz-insurer-1"
    assert doc["provision"]["period"] == {"end": "2027-01-31"}
    assert [c["code"] for c in doc["provision"]["class"]] == ["Condition"]


@pytest.mark.parametrize(("fields", "says"), [
    ({"purpose": "HPAYMT", "decision": "permit", "types": "Condition"}, "Choose the organisation"),
    ({"grantee": "gy-hosp-001", "purpose": "TREAT", "decision": "permit", "types": "Condition"}, "not one you can"),
    ({"grantee": "gz-insurer-1", "purpose": "TREAT", "decision": "permit", "types": "Condition"}, "use your records"),
    ({"grantee": "gz-insurer-1", "purpose": "HPAYMT", "decision": "maybe", "types": "Condition"}, "allow or refuse"),
    ({"grantee": "gz-insurer-1", "purpose": "HPAYMT", "decision": "permit"}, "at least one kind"),
    ({"grantee": "gz-insurer-1", "purpose": "HPAYMT", "decision": "permit", "types": "AuditEvent"}, "in the list"),
    ({"grantee": "gz-insurer-1", "purpose": "HPAYMT", "decision": "permit", "types": "Condition",
      "end": "2026-11-23"}, "after today"),
    ({"grantee": "gz-insurer-1", "purpose": "HPAYMT", "decision": "permit", "types": "Condition",
      "end": "next week"}, "not a date"),
])
def test_a_bad_form_says_what_to_fix(fields: dict[str, str], says: str) -> None:
    with pytest.raises(consents.FormError, match=says):
        consents.parse_grant(form(**fields), REGISTRY, TODAY)


@pytest.mark.parametrize(("typed", "ok"), [("delete my records", True), ("  Delete   MY records ", True),
                                           ("delete my record", False), ("", False)])
def test_erasure_needs_the_phrase(typed: str, ok: bool) -> None:
    assert consents.erase_confirmed(typed) is ok


def _consent(cid: str, decision: str, org: str, purpose: str, status: str = "active") -> dict:  # type: ignore[type-arg]
    return {"resource": {"resourceType": "Consent", "id": cid, "status": status, "dateTime": "2026-12-01",
                         "provision": {"type": decision, "actor": [{"reference": {"reference": f"Organization/{org}"}}],
                                       "purpose": [{"code": purpose}], "period": {"end": "2030-01-01"}}}}


def test_a_refusal_outweighs_a_permission_for_the_same_organisation_and_purpose() -> None:
    registry = {"orgs": {"gz-insurer-1": {"type": "insurer"}, "gy-datamart": {"type": "commercial"}}}
    rows = {r.id: r for r in consents.consent_rows({"entry": [
        _consent("allow", "permit", "gz-insurer-1", "HPAYMT"), _consent("refuse", "deny", "gz-insurer-1", "HPAYMT"),
        _consent("other-purpose", "permit", "gz-insurer-1", "HMARKT"),
        _consent("other-org", "permit", "gy-datamart", "HPAYMT"),
        _consent("old-refusal", "deny", "gy-datamart", "HPAYMT", status="inactive")]}, registry)}
    assert rows["allow"].overridden and not rows["refuse"].overridden
    assert not rows["other-purpose"].overridden and not rows["other-org"].overridden  # a withdrawn refusal counts not
