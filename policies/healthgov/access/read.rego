# Reading a patient's record: one block per row of the read rule table (policies/README.md, docs/architecture.md §5).
# Each row adds a grant (rule name + obligations) when its condition holds,
# and a reason to deny naming the condition that failed when it does not.
#
# A read of a patient's record is `input.action == "read"` with
# `about_a_patient`; the caller's kind is `input.subject.org_type == "..."`
# with `org_type_confirmed` (see request.rego for why they are spelled out
# in every rule rather than wrapped in a helper).
package healthgov.access

# ------------------------------------------------ patient, PATRQT: own records

grants contains grant("patient_own_records", plain_obligations) if {
	input.action == "read"
	input.subject.org_type == "patient"
	about_a_patient
	org_type_confirmed
	own_records
}

deny contains "not_own_records" if {
	input.action == "read"
	input.subject.org_type == "patient"
	about_a_patient
	org_type_confirmed
	not own_records
}

# ------------------------------------------------------- hospital clinicians

deny contains "role_not_clinician" if {
	input.action == "read"
	input.subject.org_type == "hospital"
	about_a_patient
	org_type_confirmed
	not is_clinician
}

in_care if input.relationship.care == true

# TREAT: the treating team sees sensitive labels only in records its own
# hospital wrote, or where the patient consented to this hospital seeing them.
clinician_redactions := set() if {
	record_from_own_hospital
} else := resource_sensitive_labels - consented_labels

grants contains grant("clinician_care_relationship", {
	"deidentify": "none",
	"redact_labels": sort(clinician_redactions),
	"notify_patient": false,
	"notify_after": null,
	"review": false,
}) if {
	input.action == "read"
	input.subject.org_type == "hospital"
	input.purpose == "TREAT"
	about_a_patient
	org_type_confirmed
	is_clinician
	in_care
}

deny contains "no_care_relationship" if {
	input.action == "read"
	input.subject.org_type == "hospital"
	input.purpose == "TREAT"
	about_a_patient
	org_type_confirmed
	not in_care
}

# ETREAT (break-glass): everything, but the access is reviewed after the
# fact and the patient is told at once. No care relationship needed; a
# stated reason is.
break_glass_reason_given if {
	reason := input.break_glass.reason
	is_string(reason)
	trim_space(reason) != ""
}

grants contains grant("break_glass", {
	"deidentify": "none",
	"redact_labels": [],
	"notify_patient": true,
	"notify_after": null,
	"review": true,
}) if {
	input.action == "read"
	input.subject.org_type == "hospital"
	input.purpose == "ETREAT"
	about_a_patient
	org_type_confirmed
	is_clinician
	break_glass_reason_given
}

deny contains "break_glass_reason_missing" if {
	input.action == "read"
	input.subject.org_type == "hospital"
	input.purpose == "ETREAT"
	about_a_patient
	org_type_confirmed
	not break_glass_reason_given
}

# ----------------------------------------------- public health (state), PUBHLTH

# A notifiable disease is reported identified (that is the point of
# notification), without the record's other sensitive labels.
grants contains grant("public_health_notifiable", {
	"deidentify": "none",
	"redact_labels": sort(resource_sensitive_labels - {"NOTIFIABLE"}),
	"notify_patient": true,
	"notify_after": null,
	"review": false,
}) if {
	input.action == "read"
	input.subject.org_type == "public_health"
	about_a_patient
	org_type_confirmed
	"NOTIFIABLE" in resource_labels
}

# Anything else: counts, never rows.
grants contains grant("public_health_aggregate", {
	"deidentify": "aggregate_only",
	"redact_labels": sort(resource_sensitive_labels),
	"notify_patient": false,
	"notify_after": null,
	"review": false,
}) if {
	input.action == "read"
	input.subject.org_type == "public_health"
	about_a_patient
	org_type_confirmed
	not "NOTIFIABLE" in resource_labels
}

# ------------------------------------------- law enforcement (state), HLEGAL

grants contains grant("lawful_warrant", {
	"deidentify": "none",
	"redact_labels": sort(resource_labels - warrant_labels),
	"notify_patient": true,
	"notify_after": warrant_notify_after,
	"review": true,
}) if {
	input.action == "read"
	input.subject.org_type == "law_enforcement"
	about_a_patient
	org_type_confirmed
	valid_warrant
}

deny contains problem if {
	input.action == "read"
	input.subject.org_type == "law_enforcement"
	about_a_patient
	org_type_confirmed
	some problem in warrant_problems
}

# ----------------------------------------------------- regulator (state), HCOMPL

# Regulators prove what was disclosed from the audit trail; they never read
# record content themselves (see audit_read in actions.rego).
deny contains "regulators_read_audit_trail_only" if {
	input.action == "read"
	input.subject.org_type == "regulator"
	about_a_patient
	org_type_confirmed
}

# ------------------------------------------------------------- third parties

# The set is third_party_org_types (vocabulary.rego), written out because the
# rule index only reads a literal set; a test checks that the two agree.
deny contains "patient_opted_out" if {
	input.action == "read"
	input.subject.org_type in {"research", "insurer", "commercial"}
	about_a_patient
	opted_out
}

# Research, HRESCH: approved projects get pseudonymised data without the
# sensitive labels; identified data only with the patient's explicit permit.
research_read if {
	input.action == "read"
	input.subject.org_type == "research"
	about_a_patient
	org_type_confirmed
	valid_ethics_approval
	not opted_out
}

grants contains grant("research_identified_with_consent", {
	"deidentify": "none",
	"redact_labels": sort(resource_labels - consented_labels),
	"notify_patient": false,
	"notify_after": null,
	"review": false,
}) if {
	input.action == "read"
	input.subject.org_type == "research"
	research_read
	has_matching_permit
}

grants contains grant("research_ethics_approval", {
	"deidentify": "pseudonymize",
	"redact_labels": sort(resource_sensitive_labels),
	"notify_patient": false,
	"notify_after": null,
	"review": false,
}) if {
	input.action == "read"
	input.subject.org_type == "research"
	research_read
	not has_matching_permit
}

deny contains problem if {
	input.action == "read"
	input.subject.org_type == "research"
	about_a_patient
	org_type_confirmed
	some problem in ethics_problems
}

# Insurer, HPAYMT: only what the patient consented to, for this insurer.
grants contains grant("insurer_consent", {
	"deidentify": "none",
	"redact_labels": sort(resource_labels - consented_labels),
	"notify_patient": false,
	"notify_after": null,
	"review": false,
}) if {
	input.action == "read"
	input.subject.org_type == "insurer"
	about_a_patient
	org_type_confirmed
	not opted_out
	has_matching_permit
}

# Commercial, any purpose: explicit consent only, and always Safe Harbor.
grants contains grant("commercial_consent", {
	"deidentify": "safe_harbor",
	"redact_labels": sort(resource_labels - consented_labels),
	"notify_patient": false,
	"notify_after": null,
	"review": false,
}) if {
	input.action == "read"
	input.subject.org_type == "commercial"
	about_a_patient
	org_type_confirmed
	not opted_out
	has_matching_permit
}

deny contains consent_problem if {
	input.action == "read"
	input.subject.org_type in {"insurer", "commercial"}
	about_a_patient
	not has_matching_permit
}
