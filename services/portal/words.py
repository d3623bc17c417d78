"""The portal's own words for what a patient reads, in English source wording (marked ``N_``).

The templates translate these through the gettext catalogue (``i18n.py``).
The platform's codes (audit kinds, refusal reasons, purposes of use, kinds of
organisation) are worded once, in ``services/contracts/vocabulary.py``; what
is here is the portal's own: the trail's filter groups, record and condition
words, and organisation names from the registry (``name`` and ``name_zh``). A
code nobody wrote words for is shown as it is, never dropped.
"""

from __future__ import annotations

from typing import Any

from services.portal.i18n import N_

# The trail's "kind of access" filter: what a patient asks for, in groups of audit kinds.
ACCESS_FILTERS = {
    "read": (N_("Reads"), ("disclosure", "download")),
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


def org_name(registry: dict[str, Any], org_id: str | None, lang: str) -> str:
    """An organisation's name in ``lang`` (the registry's ``name_zh`` for Chinese), else its id."""
    if not org_id:
        return ""
    org = registry.get("orgs", {}).get(org_id) or {}
    if lang.startswith("zh") and org.get("name_zh"):
        return str(org["name_zh"])
    return str(org.get("name") or org_id)
