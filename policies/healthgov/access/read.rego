# Reading a patient's record: one block per row of DESIGN §5's rule table.
# Each row adds a grant (rule name + obligations) when its condition holds,
# and a reason to deny naming the condition that failed when it does not.
package healthgov.access

# ------------------------------------------------ patient, PATRQT: own records

grants contains grant("patient_own_records", plain_obligations) if {
	record_read
	caller_is("patient")
	own_records
}

deny contains "not_own_records" if {
	record_read
	caller_is("patient")
	not own_records
}

# ------------------------------------------------------- hospital clinicians

clinician_read(purpose) if {
	record_read
	caller_is("hospital")
	input.purpose == purpose
}

deny contains "role_not_clinician" if {
	record_read
	caller_is("hospital")
	not is_clinician
}

in_care if input.relationship.care == true

# TREAT: the treating team sees sensitive labels only in records its own
# hospital wrote, or where the patient consented to this hospital seeing them.
clinician_redactions := set() if {
	record_from_own_hospital
} else := resource_sensitive_labels - consented_labels

grants contains grant(
	"clinician_care_relationship",
	obligations_with({"redact_labels": sort(clinician_redactions)}),
) if {
	clinician_read("TREAT")
	is_clinician
	in_care
}

deny contains "no_care_relationship" if {
	clinician_read("TREAT")
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

grants contains grant(
	"break_glass",
	obligations_with({"notify_patient": true, "review": true}),
) if {
	clinician_read("ETREAT")
	is_clinician
	break_glass_reason_given
}

deny contains "break_glass_reason_missing" if {
	clinician_read("ETREAT")
	not break_glass_reason_given
}

# ----------------------------------------------- public health (state), PUBHLTH

# A notifiable disease is reported identified (that is the point of
# notification), without the record's other sensitive labels.
grants contains grant(
	"public_health_notifiable",
	obligations_with({
		"redact_labels": sort(resource_sensitive_labels - {"NOTIFIABLE"}),
		"notify_patient": true,
	}),
) if {
	record_read
	caller_is("public_health")
	"NOTIFIABLE" in resource_labels
}

# Anything else: counts, never rows.
grants contains grant(
	"public_health_aggregate",
	obligations_with({
		"deidentify": "aggregate_only",
		"redact_labels": sort(resource_sensitive_labels),
	}),
) if {
	record_read
	caller_is("public_health")
	not "NOTIFIABLE" in resource_labels
}

# ------------------------------------------- law enforcement (state), HLEGAL

grants contains grant(
	"lawful_warrant",
	obligations_with({
		"redact_labels": sort(resource_labels - warrant_labels),
		"notify_patient": true,
		"notify_after": warrant_notify_after,
		"review": true,
	}),
) if {
	record_read
	caller_is("law_enforcement")
	valid_warrant
}

deny contains problem if {
	record_read
	caller_is("law_enforcement")
	some problem in warrant_problems
}

# ----------------------------------------------------- regulator (state), HCOMPL

# Regulators prove what was disclosed from the audit trail; they never read
# record content themselves (see audit_read in actions.rego).
deny contains "regulators_read_audit_trail_only" if {
	record_read
	caller_is("regulator")
}

# ------------------------------------------------------------- third parties

deny contains "patient_opted_out" if {
	record_read
	input.subject.org_type in third_party_org_types
	opted_out
}

# Research, HRESCH: approved projects get pseudonymised data without the
# sensitive labels; identified data only with the patient's explicit permit.
research_read if {
	record_read
	caller_is("research")
	valid_ethics_approval
	not opted_out
}

grants contains grant(
	"research_identified_with_consent",
	obligations_with({"redact_labels": sort(resource_labels - consented_labels)}),
) if {
	research_read
	has_matching_permit
}

grants contains grant(
	"research_ethics_approval",
	obligations_with({
		"deidentify": "pseudonymize",
		"redact_labels": sort(resource_sensitive_labels),
	}),
) if {
	research_read
	not has_matching_permit
}

deny contains problem if {
	record_read
	caller_is("research")
	some problem in ethics_problems
}

# Insurer, HPAYMT: only what the patient consented to, for this insurer.
grants contains grant(
	"insurer_consent",
	obligations_with({"redact_labels": sort(resource_labels - consented_labels)}),
) if {
	record_read
	caller_is("insurer")
	not opted_out
	has_matching_permit
}

# Commercial, any purpose: explicit consent only, and always Safe Harbor.
grants contains grant(
	"commercial_consent",
	obligations_with({
		"deidentify": "safe_harbor",
		"redact_labels": sort(resource_labels - consented_labels),
	}),
) if {
	record_read
	caller_is("commercial")
	not opted_out
	has_matching_permit
}

deny contains consent_problem if {
	record_read
	input.subject.org_type in {"insurer", "commercial"}
	not has_matching_permit
}
