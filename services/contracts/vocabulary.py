"""healthgov's closed vocabularies, each code written once with its English wording.

Purposes of use, actions, kinds of organisation, sensitivity labels,
de-identification levels, audit event kinds and outcomes, and the reasons a
decision gives: Python reads them from here; the portal's templates get them
from here through their views; the Rego policy reads the codes from
``policies/healthgov/vocabulary/data.json``, which ``healthgov policy manifest``
writes from ``rego_data()`` below (a unit test fails when the two disagree).

Only codes go to the policy: the wording is for people, so rewording a reason
never changes the policy's version in the audit trail.

Every English string is wrapped in ``N_``, the ``gettext_noop`` marker: it
returns its argument unchanged, so this module stays English at import time,
while ``pybabel extract`` (``N_`` is among Babel's default keywords) collects
the strings as message ids. Whoever shows a wording translates it then
(``gettext(PURPOSES[code])``), in the reader's language: the portal's
catalogue (``services/portal/locale``) is extracted from this module too, so
the Chinese for a code's wording is found by that English msgid.
"""

from __future__ import annotations

from typing import Any, Final, Literal, get_args


def N_(message: str) -> str:  # the conventional gettext_noop name, a keyword Babel knows
    """Mark ``message`` for translation without translating it (``gettext_noop``)."""
    return message


# HL7 v3 PurposeOfUse (v3-ActReason) codes the platform understands. Worded for the patient they
# concern: the portal is where a person reads a purpose; operators see the code.
PURPOSES: Final[dict[str, str]] = {
    "PATRQT": N_("your own requests"),
    "PWATRNY": N_("your guardian acting for you"),
    "TREAT": N_("your treatment"),
    "ETREAT": N_("emergency treatment"),
    "PUBHLTH": N_("public health"),
    "HLEGAL": N_("legal proceedings"),
    "HCOMPL": N_("regulatory checks"),
    "HRESCH": N_("medical research"),
    "HPAYMT": N_("insurance claims and payments"),
    "HMARKT": N_("marketing and commercial products"),
}
ANY_PURPOSE: Final = N_("any purpose")  # a consent that names no purpose

Action = Literal["read", "write", "audit_read", "consent_write", "consent_confirm", "erase", "refer",
                 "export", "project_apply", "project_review",
                 "oversight_review", "analytics_query", "complaint_file", "complaint_answer"]
ACTIONS: Final[tuple[str, ...]] = get_args(Action)

# The kinds of organisation in the registry that may call the platform, worded for a patient.
ORG_TYPES: Final[dict[str, str]] = {
    "hospital": N_("hospital"),
    "public_health": N_("public health authority"),
    "law_enforcement": N_("police"),
    "regulator": N_("health regulator"),
    "research": N_("research institute"),
    "insurer": N_("insurance company"),
    "commercial": N_("company"),
    "patient": N_("you, through this portal"),
}
# State access is never blocked by an opt-out; it is made visible to the patient instead.
STATE_ORG_TYPES: Final = frozenset({"public_health", "law_enforcement", "regulator"})
# The recipients a patient's consent or opt-out governs.
THIRD_PARTY_ORG_TYPES: Final[tuple[str, ...]] = ("research", "insurer", "commercial")

# HL7 v3 confidentiality codes plus healthgov's NOTIFIABLE.
SENSITIVE_LABELS: Final[dict[str, str]] = {
    "HIV": N_("HIV/AIDS"),
    "PSY": N_("psychiatry"),
    "ETH": N_("substance abuse"),
    "SDV": N_("sexual or domestic violence"),
    "SEX": N_("sexuality and reproductive health"),
    "STD": N_("sexually transmitted disease"),
    "GDIS": N_("genetic disease"),
    "NOTIFIABLE": N_("notifiable disease"),
}

Deidentify = Literal["none", "pseudonymize", "safe_harbor", "aggregate_only"]
DEIDENTIFY: Final[dict[str, str]] = {
    "none": N_("none: the recipient sees identified data"),
    "pseudonymize": N_("pseudonymise: patient id replaced by a recipient-specific pseudonym, names, contacts, "
                       "addresses, identifiers, photos and all free text removed"),
    "safe_harbor": N_("Safe Harbor: pseudonymised, dates reduced to the year, ages over 89 as '90+', "
                      "narrative and attachments removed"),
    "aggregate_only": N_("aggregate only: counts, never individual records"),
}

AuditKind = Literal[
    "disclosure", "denial", "break_glass", "consent", "erasure", "key_rotation", "ingest", "referral",
    "care_relationship", "project", "break_glass_review", "download", "complaint", "access_token",
]
# What happened, per audit event kind, worded as an organisation's act: the patient's trail reads it after the
# organisation's name ("<hospital> read your records"), a receipt as "what happened". Operators read the code.
AUDIT_KINDS: Final[dict[str, str]] = {
    "disclosure": N_("read your records"),
    "denial": N_("was refused access"),
    "break_glass": N_("opened your records in an emergency"),
    "consent": N_("changed a permission"),
    "erasure": N_("erased your records"),
    "key_rotation": N_("re-locked the encryption keys"),
    "ingest": N_("sent records about you"),
    "referral": N_("referred you to another hospital"),
    "care_relationship": N_("began treating you"),
    "project": N_("changed a research project"),
    "break_glass_review": N_("judged an emergency opening of your records"),
    "download": N_("received a copy of your whole record as a file"),
    "complaint": N_("answered a report about an access to your records"),
    "access_token": N_("was given an access token for research exports"),
}
# The kinds that read differently when the patient acted themselves, through the portal ("You, through this
# portal, let a hospital treat you"); the rest read as in AUDIT_KINDS.
OWN_AUDIT_KINDS: Final[dict[str, str]] = {
    "referral": N_("let a hospital treat you"),
    "download": N_("downloaded a copy of your records"),
    "complaint": N_("reported an access to the regulator"),
}
# How an audited act ended, as the audit trail is filtered and exported.
Outcome = Literal["allowed", "denied"]
OUTCOMES: Final[tuple[str, ...]] = get_args(Outcome)

# Why a decision was taken. The policy emits the first two groups; the last is Python's own
# fail-closed denial when no valid decision can be had.
ALLOW_REASONS: Final[dict[str, str]] = {
    "patient_own_records": N_("A patient reading their own records."),
    "clinician_care_relationship": N_("A clinician treating this patient (care relationship)."),
    "break_glass": N_("Emergency break-glass access by a clinician, with a stated reason."),
    "public_health_notifiable": N_("Public health authority receiving a notifiable-disease record."),
    "public_health_aggregate": N_("Public health authority receiving counts only."),
    "lawful_warrant": N_("Law enforcement with a valid court warrant for this patient."),
    "research_identified_with_consent": N_("Approved research with the patient's explicit consent to identified "
                                           "data."),
    "research_ethics_approval": N_("Approved research (valid ethics approval), pseudonymised."),
    "insurer_consent": N_("Insurer with the patient's explicit, unexpired consent."),
    "commercial_consent": N_("Commercial recipient with the patient's explicit consent."),
    "directory_resource": N_("A directory entry (organisation, location, practitioner)."),
    "hospital_ingest": N_("A hospital writing records it produced itself."),
    "regulator_audit_trail": N_("A regulator reading the audit trail."),
    "regulator_reviews_break_glass": N_("A regulator judging a break-glass access (justified or not)."),
    "privacy_officer_reviews_own_hospital": N_("A hospital's privacy officer judging a break-glass access by its own "
                                               "staff (justified or not)."),
    "patient_own_audit_events": N_("A patient reading who accessed their records."),
    "patient_manages_own_consents": N_("A patient changing their own consents."),
    "patient_confirms_own_consent": N_("A patient confirming a permit a hospital recorded on their behalf."),
    "patient_erases_own_records": N_("A patient erasing their own records (their data key is destroyed)."),
    "clinician_refers_patient": N_("A treating clinician referring the patient to another hospital; the patient "
                                   "is told."),
    "patient_refers_self": N_("A patient referring themselves to a hospital."),
    "clinician_records_consent_for_patient": N_("A treating clinician recording a consent on the patient's "
                                                "behalf."),
    "research_project_export": N_("A research organisation exporting under its approved, unexpired data-use "
                                  "project."),
    "research_applies_for_project": N_("A research organisation applying for its own data-use project."),
    "regulator_reviews_project": N_("The regulator approving, suspending or revoking a data-use project."),
    "public_health_analytics": N_("A public health authority asking for population counts, disclosure-controlled."),
    "research_project_analytics": N_("A research organisation asking for population counts under its approved "
                                     "data-use project, disclosure-controlled."),
    "research_feasibility_count": N_("A research organisation asking for one feasibility count, "
                                     "disclosure-controlled."),
    "regulator_notifiable_disease_counts": N_("The regulator asking for notifiable-disease counts per district "
                                              "and week, disclosure-controlled."),
    "patient_reports_own_access": N_("A patient reporting an access to their own records to the regulator."),
    "regulator_answers_complaints": N_("A regulator answering a patient's report about an access."),
}
DENY_REASONS: Final[dict[str, str]] = {
    "org_not_registered": N_("The caller's organisation is not in the org registry."),
    "org_type_mismatch": N_("The caller's organisation type differs from the registry's."),
    "org_suspended": N_("The caller's organisation is suspended."),
    "unknown_org_type": N_("The caller's organisation type is not one the platform knows."),
    "patient_claim_not_allowed": N_("Only the patient portal may act for a patient."),
    "guardian_reads_only": N_("A guardian acting for a patient may read their records and trail, and change nothing."),
    "unknown_purpose": N_("The purpose of use is not a recognised code."),
    "purpose_not_permitted_for_org_type": N_("This kind of organisation may not claim this purpose."),
    "unknown_action": N_("The action is not one the platform knows."),
    "invalid_now": N_("The request time ('now') is missing or not RFC 3339."),
    "resource_has_no_patient": N_("The resource names no patient and is not a directory entry."),
    "not_own_records": N_("A patient may only see or manage their own records."),
    "role_not_clinician": N_("Only clinicians may access records for treatment."),
    "no_care_relationship": N_("The clinician has no care relationship with this patient."),
    "break_glass_reason_missing": N_("Break-glass access needs a stated reason."),
    "warrant_missing": N_("Law-enforcement access needs a court warrant."),
    "warrant_not_verified": N_("The warrant was not verified as signed by its court (records verifies it "
                               "first)."),
    "court_not_recognised": N_("The warrant's issuer is not a registered court in good standing."),
    "warrant_not_for_this_org": N_("The warrant was issued to another organisation."),
    "warrant_type_not_covered": N_("The warrant does not cover this type of record."),
    "warrant_patient_mismatch": N_("The warrant does not name this patient."),
    "warrant_expired": N_("The warrant has expired (or has no valid expiry)."),
    "warrant_sealed_until_invalid": N_("The warrant's seal date is not a valid date."),
    "regulators_read_audit_trail_only": N_("Regulators never read record content; they read the audit trail."),
    "patient_opted_out": N_("The patient has opted out of this use of their data."),
    "ethics_approval_missing": N_("Research access needs an ethics approval."),
    "ethics_approval_not_verified": N_("The ethics approval was not verified as signed by its board."),
    "ethics_board_not_recognised": N_("The approval's issuer is not a registered ethics board in good standing."),
    "ethics_approval_not_for_this_org": N_("The ethics approval was issued to another organisation."),
    "ethics_approval_expired": N_("The ethics approval has expired (or has no valid expiry)."),
    "no_consent": N_("The patient has given this recipient no consent for this purpose."),
    "consent_expired": N_("The patient's consent to this recipient has expired."),
    "consent_revoked": N_("The patient has withdrawn their consent to this recipient."),
    "consent_awaiting_patient": N_("A hospital recorded this consent for the patient; it is not in force until "
                                   "the patient confirms it."),
    "confirm_only_by_patient": N_("Only the patient confirms a consent recorded on their behalf."),
    "consent_type_not_covered": N_("The patient's consent does not cover this type of record."),
    "directory_not_permitted_for_org_type": N_("This kind of organisation may not read the directory."),
    "write_requires_hospital": N_("Only hospitals may write records."),
    "write_only_own_hospital_records": N_("A hospital may only write records it produced."),
    "not_own_audit_events": N_("A patient may only read the audit events about themselves."),
    "audit_read_not_permitted": N_("Only regulators and patients may read the audit trail."),
    "oversight_review_not_permitted": N_("Only a regulator, or the hospital's privacy officer, judges break-glass "
                                         "accesses."),
    "break_glass_of_another_hospital": N_("A hospital's privacy officer judges only its own hospital's break-glass "
                                          "accesses."),
    "own_break_glass_access": N_("No one judges their own break-glass access."),
    "consent_write_not_permitted": N_("Only the patient or a treating clinician may change consents."),
    "consent_write_requires_treat": N_("Consents are recorded for treatment (TREAT), not break-glass."),
    "erase_only_by_patient": N_("Only the patient may erase their records."),
    "referral_target_not_a_hospital": N_("A patient can only be referred to a registered hospital in good "
                                         "standing."),
    "referral_requires_treat": N_("Referrals are made for treatment (TREAT), not break-glass."),
    "refer_not_permitted": N_("Only the patient or a treating clinician may refer the patient."),
    "export_requires_research_org": N_("Only research organisations export under a data-use project."),
    "project_missing": N_("An export names an existing data-use project."),
    "project_not_for_this_org": N_("The data-use project belongs to another organisation."),
    "project_not_approved": N_("The data-use project is not approved (applied, suspended or revoked)."),
    "project_expired": N_("The data-use project has expired."),
    "project_purpose_not_research": N_("A data-use project is for research (HRESCH) only."),
    "export_type_not_in_agreement": N_("The export asks for types of record the project's agreement does not "
                                       "cover."),
    "export_element_not_in_agreement": N_("The export asks for elements of records the project's agreement does "
                                          "not cover."),
    "project_deidentification_invalid": N_("A project's data leaves pseudonymised or Safe Harbor, never "
                                           "identified."),
    "project_apply_requires_research_org": N_("Only research organisations apply for data-use projects."),
    "project_review_requires_regulator": N_("Only the regulator approves, suspends or revokes data-use projects."),
    "analytics_not_permitted_for_org_type": N_("Only public health authorities and research organisations ask "
                                               "for population counts."),
    "analytics_requires_project": N_("Research counts beyond one feasibility total need an approved data-use "
                                     "project."),
    "notifiable_counts_public_health_and_regulator_only": N_("Only public health authorities and the regulator "
                                                             "ask for notifiable-disease counts."),
    "complaint_only_by_patient": N_("Only the patient reports an access to their own records."),
    "complaint_answer_not_permitted": N_("Only a regulator answers a patient's report about an access."),
    "conflicting_rules": N_("Two rules matched; the policy refuses rather than guess."),
    "no_matching_rule": N_("No rule allows this request."),
}
FAIL_CLOSED_REASONS: Final[dict[str, str]] = {
    "policy_engine_unavailable": N_("The policy engine could not be asked; nothing is disclosed until it can."),
    "policy_malformed_decision": N_("The policy engine's answer was not a valid decision; it is treated as a "
                                    "denial."),
    "policy_undefined": N_("The policy engine has no decision loaded; it is treated as a denial."),
}
REASONS: Final[dict[str, str]] = {**ALLOW_REASONS, **DENY_REASONS, **FAIL_CLOSED_REASONS}
# Why a request was refused, addressed to the patient it concerns (their trail says "Refused because: …").
# REASONS above state the rule for operators; a refusal not worded here is shown to the patient in that wording.
DENY_REASONS_TO_PATIENT: Final[dict[str, str]] = {
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


def _same_codes(name: str, literal: Any, words: dict[str, str]) -> None:
    """A ``Literal`` and its wording list name the same codes, or the import fails (no silent drift)."""
    if set(get_args(literal)) != set(words):
        raise RuntimeError(f"vocabulary: {name} and its wording name different codes")


_same_codes("AuditKind", AuditKind, AUDIT_KINDS)
_same_codes("Deidentify", Deidentify, DEIDENTIFY)
if not set(OWN_AUDIT_KINDS) <= set(AUDIT_KINDS) or not set(DENY_REASONS_TO_PATIENT) <= set(DENY_REASONS):
    raise RuntimeError("vocabulary: a patient's wording names a code the vocabulary does not have")


def rego_data() -> dict[str, Any]:
    """What the policy reads as ``data.healthgov.vocabulary``: the codes only, sorted, never the wording."""
    return {
        "purposes": sorted(PURPOSES),
        "actions": sorted(ACTIONS),
        "org_types": sorted(ORG_TYPES),
        "sensitive_labels": sorted(SENSITIVE_LABELS),
        "third_party_org_types": sorted(THIRD_PARTY_ORG_TYPES),
        "reasons": sorted({**ALLOW_REASONS, **DENY_REASONS}),
    }
