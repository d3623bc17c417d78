"""What the platform's codes mean to a patient, in the portal's English source wording (marked ``N_``).

The templates translate these through the gettext catalogue (``i18n.py``), so
a code (an audit kind, a refusal reason) is never what a person reads. Purposes
of use, kinds of organisation and of record live with the consent form
(``consents.py``); organisation names come from the registry (``name`` and
``name_zh``). A code nobody wrote words for is shown as it is, never dropped.
"""

from __future__ import annotations

from typing import Any

from services.portal.i18n import N_

# What happened, per audit event kind (docs/architecture.md §6).
KINDS = {
    "disclosure": N_("read your records"),
    "denial": N_("was refused access"),
    "break_glass": N_("opened your records in an emergency"),
    "consent": N_("changed a permission"),
    "erasure": N_("erased your records"),
    "key_rotation": N_("re-locked the encryption keys"),
    "ingest": N_("sent records about you"),
    "referral": N_("referred you to another hospital"),
    "care_relationship": N_("began treating you"),
}
# What the patient did themselves through the portal (their own reads are counted, not listed).
OWN_KINDS = {
    "referral": N_("let a hospital treat you"),
    "consent": N_("changed a permission"),
    "erasure": N_("erased your records"),
}
# The trail's "kind of access" filter: what a patient asks for, in groups of audit kinds.
ACCESS_FILTERS = {
    "read": (N_("Reads"), ("disclosure",)),
    "emergency": (N_("Emergency (break-glass)"), ("break_glass",)),
    "refused": (N_("Refused attempts"), ("denial",)),
    "care": (N_("Care and referrals"), ("care_relationship", "referral")),
    "consent": (N_("Permissions"), ("consent",)),
    "records": (N_("Records sent or erased"), ("ingest", "erasure")),
}
# Record kinds a trail entry may name beyond those a patient can share (``consents.RECORD_TYPES``).
MORE_RECORD_KINDS = {"Consent": N_("permissions"), "Organization": N_("organisations"),
                     "Practitioner": N_("health professionals"), "MedicationStatement": N_("medicines"),
                     "CarePlan": N_("care plans"), "Provenance": N_("record history")}
# A condition's clinical status (FHIR condition-clinical).
CONDITION_STATUS = {
    "active": N_("active"), "recurrence": N_("come back"), "relapse": N_("come back"),
    "inactive": N_("past"), "remission": N_("in remission"), "resolved": N_("resolved"),
}
STATE_ORG_TYPES = frozenset({"public_health", "law_enforcement", "regulator"})
# Why a request was refused (the policy's reasons a patient meets in their trail).
REASONS = {
    "no_care_relationship": N_("the hospital is not treating you"),
    "patient_opted_out": N_("you refused this use"),
    "no_consent": N_("you have not given permission"),
    "consent_revoked": N_("you withdrew your permission"),
    "consent_expired": N_("your permission has ended"),
    "consent_type_not_covered": N_("your permission does not cover these records"),
    "consent_awaiting_patient": N_("the permission waits for your confirmation"),
    "purpose_not_permitted_for_org_type": N_("this kind of organisation may not use records for that purpose"),
    "warrant_missing": N_("no court warrant was shown"),
    "warrant_expired": N_("the court warrant had expired"),
    "warrant_not_verified": N_("the court warrant could not be verified"),
    "warrant_patient_mismatch": N_("the court warrant is about someone else"),
    "ethics_approval_missing": N_("no ethics approval was shown"),
    "ethics_approval_expired": N_("the ethics approval had expired"),
    "ethics_approval_not_verified": N_("the ethics approval could not be verified"),
    "break_glass_reason_missing": N_("no reason was given for emergency access"),
    "org_suspended": N_("the organisation is suspended"),
    "org_not_registered": N_("the organisation is not registered"),
    "role_not_clinician": N_("the person is not a clinician"),
    "not_own_records": N_("these are not the caller's own records"),
    "write_only_own_hospital_records": N_("a hospital may only change its own records"),
}


def org_name(registry: dict[str, Any], org_id: str | None, lang: str) -> str:
    """An organisation's name in ``lang`` (the registry's ``name_zh`` for Chinese), else its id."""
    if not org_id:
        return ""
    org = registry.get("orgs", {}).get(org_id) or {}
    if lang.startswith("zh") and org.get("name_zh"):
        return str(org["name_zh"])
    return str(org.get("name") or org_id)
