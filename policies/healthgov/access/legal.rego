# Legal instruments: court warrants (law enforcement) and ethics approvals
# (research). Each condition is a positive predicate; the matching reason to
# deny names the one that failed.
package healthgov.access

# ------------------------------------------------------------------ warrants
# {"id", "court", "patient", "expires", "labels": [...], "sealed_until"}

warrant := input.legal.warrant

warrant_present if is_object(warrant)

warrant_court_recognised if warrant.court in data.healthgov.registry.courts

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
	warrant_court_recognised
	warrant_names_this_patient
	warrant_unexpired
	warrant_seal_well_formed
}

warrant_problems contains "warrant_missing" if not warrant_present

warrant_problems contains "court_not_recognised" if {
	warrant_present
	not warrant_court_recognised
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
# {"id", "board", "project", "expires"}

ethics_approval := input.legal.ethics_approval

ethics_approval_present if is_object(ethics_approval)

ethics_board_recognised if ethics_approval.board in data.healthgov.registry.ethics_boards

ethics_approval_unexpired if in_future(ethics_approval.expires)

valid_ethics_approval if {
	ethics_approval_present
	ethics_board_recognised
	ethics_approval_unexpired
}

ethics_problems contains "ethics_approval_missing" if not ethics_approval_present

ethics_problems contains "ethics_board_not_recognised" if {
	ethics_approval_present
	not ethics_board_recognised
}

ethics_problems contains "ethics_approval_expired" if {
	ethics_approval_present
	not ethics_approval_unexpired
}
