# Legal instruments: court warrants (law enforcement) and ethics approvals
# (research). Each condition is a positive predicate; the matching reason to
# deny names the one that failed.
package healthgov.access

# A legal document counts only as records verified it: signed by its issuer's
# registered key, addressed to the requesting organisation, current
# (services/adapters/documents.py). The verified facts say so with
# `verified: true`; anything else a caller could have written is refused here
# too, and the issuer is checked again against the registry.

# `id` is a registered organisation of kind `type` in good standing.
issuer_in_good_standing(id, type) if {
	entry := data.healthgov.registry.orgs[id]
	entry.type == type
	entry.suspended == false
}

# ------------------------------------------------------------------ warrants
# {"id", "issuer", "org", "purpose", "patient", "issued", "expires",
#  "labels": [...], "types": [...] (absent: every type), "sealed_until",
#  "verified": true}

warrant := input.legal.warrant

warrant_present if is_object(warrant)

warrant_verified if warrant.verified == true

warrant_court_recognised if issuer_in_good_standing(warrant.issuer, "court")

warrant_for_this_org if warrant.org == input.subject.org

warrant_covers_type if object.get(warrant, "types", null) == null

warrant_covers_type if input.resource.type in warrant.types

warrant_names_this_patient if {
	resource_patient
	warrant.patient == resource_patient
}

warrant_unexpired if in_future(warrant.expires)

warrant_sealed if object.get(warrant, "sealed_until", null) != null

warrant_seal_ns := time.parse_rfc3339_ns(warrant.sealed_until)

# A seal must be a readable date: an unreadable one is not silently dropped
# (the patient would be told at once) nor turned into the maximum.
warrant_seal_well_formed if not warrant_sealed

warrant_seal_well_formed if warrant_seal_ns

valid_warrant if {
	warrant_present
	warrant_verified
	warrant_court_recognised
	warrant_for_this_org
	warrant_covers_type
	warrant_names_this_patient
	warrant_unexpired
	warrant_seal_well_formed
}

warrant_problems contains "warrant_missing" if not warrant_present

warrant_problems contains "warrant_not_verified" if {
	warrant_present
	not warrant_verified
}

warrant_problems contains "court_not_recognised" if {
	warrant_present
	not warrant_court_recognised
}

warrant_problems contains "warrant_not_for_this_org" if {
	warrant_present
	not warrant_for_this_org
}

warrant_problems contains "warrant_type_not_covered" if {
	warrant_present
	not warrant_covers_type
}

warrant_problems contains "warrant_patient_mismatch" if {
	warrant_present
	not warrant_names_this_patient
}

warrant_problems contains "warrant_expired" if {
	warrant_present
	not warrant_unexpired
}

warrant_problems contains "warrant_sealed_until_invalid" if {
	warrant_present
	not warrant_seal_well_formed
}

# Labels the warrant covers; every other label on the resource is redacted.
warrant_labels contains label if some label in warrant.labels

# The patient learns of the disclosure when the seal ends, but never later
# than 90 days after the access: a seal cannot hide state access for ever.
warrant_notify_after := null if {
	not warrant_sealed
} else := rfc3339(min([warrant_seal_ns, time.add_date(now_ns, 0, 0, 90)]))

# ---------------------------------------------------------- ethics approvals
# {"id", "issuer", "org", "purpose", "project", "issued", "expires", "verified": true}

ethics_approval := input.legal.ethics_approval

ethics_approval_present if is_object(ethics_approval)

ethics_approval_verified if ethics_approval.verified == true

ethics_board_recognised if issuer_in_good_standing(ethics_approval.issuer, "ethics_board")

ethics_approval_for_this_org if ethics_approval.org == input.subject.org

ethics_approval_unexpired if in_future(ethics_approval.expires)

valid_ethics_approval if {
	ethics_approval_present
	ethics_approval_verified
	ethics_board_recognised
	ethics_approval_for_this_org
	ethics_approval_unexpired
}

ethics_problems contains "ethics_approval_missing" if not ethics_approval_present

ethics_problems contains "ethics_approval_not_verified" if {
	ethics_approval_present
	not ethics_approval_verified
}

ethics_problems contains "ethics_board_not_recognised" if {
	ethics_approval_present
	not ethics_board_recognised
}

ethics_problems contains "ethics_approval_not_for_this_org" if {
	ethics_approval_present
	not ethics_approval_for_this_org
}

ethics_problems contains "ethics_approval_expired" if {
	ethics_approval_present
	not ethics_approval_unexpired
}
