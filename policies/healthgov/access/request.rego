# Checks on the request itself: who is asking (against the org registry), for
# which purpose and action, at what time. Every failure here is a reason to
# deny whatever rule would otherwise match.
package healthgov.access

# ---------------------------------------------------------------- the caller

# The caller's entry in the org registry (OPA data, never written into Rego).
# Undefined when the org is not registered.
registered_org := data.healthgov.registry.orgs[input.subject.org]

# The token says which kind of org is calling; the registry must agree, so a
# caller cannot promote itself (an insurer claiming to be a hospital).
#
# A rule for one kind of caller states the claimed kind as a literal
# comparison, `input.subject.org_type == "hospital"`, next to this check.
# Written that way (and `input.action == "read"` likewise), OPA's rule index
# skips every rule meant for another kind of caller or another action without
# evaluating it: most of the cost of a decision is rules that cannot apply.
org_type_confirmed if registered_org.type == input.subject.org_type

# Only an explicit `false` counts: a registry entry without the flag is
# treated as suspended (fail closed).
org_in_good_standing if registered_org.suspended == false

is_clinician if input.subject.role == "clinician"

deny contains "org_not_registered" if not registered_org

deny contains "org_type_mismatch" if {
	registered_org
	registered_org.type != input.subject.org_type
}

deny contains "org_suspended" if {
	registered_org
	not org_in_good_standing
}

deny contains "unknown_org_type" if not purposes_by_org_type[input.subject.org_type]

# Only the portal's key may carry a `patient` claim (docs/architecture.md §5). If any other
# kind of caller carries one, something upstream is wrong: refuse.
deny contains "patient_claim_not_allowed" if {
	input.subject.org_type != "patient"
	is_string(input.subject.patient)
}

# ---------------------------------------------------------- purpose, action

deny contains "unknown_purpose" if not input.purpose in known_purposes

deny contains "purpose_not_permitted_for_org_type" if {
	input.purpose in known_purposes
	permitted := purposes_by_org_type[input.subject.org_type]
	not input.purpose in permitted
	not hospital_compliance_review
}

# A hospital's privacy officer judging its staff's break-glass accesses acts
# for compliance (HCOMPL), for that action only: no other hospital request
# may claim it (actions.rego, oversight_review).
hospital_compliance_review if {
	input.action == "oversight_review"
	input.subject.org_type == "hospital"
	input.subject.role == "privacy_officer"
	input.purpose == "HCOMPL"
}

deny contains "unknown_action" if not input.action in known_actions

# A guardian acting for a child (the portal's token, purpose PWATRNY) reads the child's records and trail;
# permissions, referrals and erasure stay the patient's own acts.
deny contains "guardian_reads_only" if {
	input.purpose == "PWATRNY"
	not input.action in {"read", "audit_read"}
}

# ---------------------------------------------------------------------- time

# The decision's clock is `input.now`, set by the records service, never
# OPA's wall clock: the same input always gives the same decision, and an
# audited decision can be replayed.
now_ns := time.parse_rfc3339_ns(input.now)

deny contains "invalid_now" if not now_ns

# True when the RFC 3339 timestamp `ts` is strictly after `input.now`.
# A missing or malformed timestamp is never "in the future".
in_future(ts) if time.parse_rfc3339_ns(ts) > now_ns

# `ns` nanoseconds since the epoch as an RFC 3339 UTC string.
rfc3339(ns) := time.format([ns, "UTC", "2006-01-02T15:04:05Z07:00"])

# ------------------------------------------------------------------ resource

# The patient the resource belongs to; undefined for directory resources.
resource_patient := p if {
	p := input.resource.patient
	is_string(p)
	p != ""
}

about_a_patient if resource_patient

# The caller is the patient the resource belongs to.
own_records if {
	resource_patient
	input.subject.patient == resource_patient
}

resource_labels contains label if some label in input.resource.labels

resource_sensitive_labels := resource_labels & sensitive_labels

# The record was written by the caller's own hospital.
record_from_own_hospital if input.resource.hospital == input.subject.org

# A read of a directory resource (no patient, directory type).
directory_read if {
	input.action == "read"
	not about_a_patient
	input.resource.type in directory_types
}

# Reads, consent changes, erasure and referrals are always about one patient,
# except directory reads.
deny contains "resource_has_no_patient" if {
	input.action in {"read", "consent_write", "erase", "refer"}
	not about_a_patient
	not directory_read
}
