# Directory reads, ingest writes, audit-trail reads and consent changes.
package healthgov.access_test

# ------------------------------------------------------ directory resources

directory(request, type) := with_fields(request, {"resource": {"patient": null, "type": type, "labels": []}})

test_hospital_reads_directory if {
	d := decide(directory(clinician, "Organization"))
	allowed_by(d, "directory_resource")
	d.obligations == no_obligations
}

test_hospital_reads_directory_in_emergency_without_clinician_role if {
	request := with_fields(directory(clinician, "Location"), {"purpose": "ETREAT", "subject": {"role": "registrar"}})
	allowed_by(decide(request), "directory_resource")
}

test_public_health_reads_directory if {
	allowed_by(decide(directory(public_health, "Practitioner")), "directory_resource")
}

test_regulator_reads_directory if {
	allowed_by(decide(directory(regulator, "PractitionerRole")), "directory_resource")
}

test_insurer_cannot_read_directory if {
	d := decide(directory(insurer, "Organization"))
	d.reasons == ["directory_not_permitted_for_org_type"]
}

test_patient_cannot_read_directory if {
	d := decide(directory(with_fields(patient, {"subject": {"patient": null}}), "Organization"))
	d.reasons == ["directory_not_permitted_for_org_type"]
}

test_suspended_hospital_cannot_read_directory if {
	d := decide(directory(with_fields(clinician, {"subject": {"org": "gy-hosp-099"}}), "Organization"))
	d.reasons == ["org_suspended"]
}

test_directory_type_with_patient_follows_record_rules if {
	request := with_fields(clinician, {"resource": {"type": "Practitioner"}, "relationship": {"care": false}})
	denied_for(decide(request), "no_care_relationship")
}

# -------------------------------------------------------------------- write

ingest := with_fields(clinician, {
	"action": "write",
	"subject": {"id": "his-gateway", "role": "system"},
	"resource": {"hospital": "gy-hosp-001"},
	"relationship": {"care": false},
})

test_hospital_writes_own_records if {
	d := decide(ingest)
	allowed_by(d, "hospital_ingest")
	d.obligations == no_obligations
}

test_hospital_writes_own_directory_entries if {
	allowed_by(decide(directory(ingest, "Organization")), "hospital_ingest")
}

test_hospital_cannot_write_other_hospitals_records if {
	d := decide(with_fields(ingest, {"resource": {"hospital": "gy-hosp-002"}}))
	d.reasons == ["write_only_own_hospital_records"]
}

test_only_hospitals_write if {
	d := decide(with_fields(insurer, {"action": "write", "resource": {"hospital": "gz-insurer-1"}}))
	d.reasons == ["write_requires_hospital"]
}

test_suspended_hospital_cannot_write if {
	d := decide(with_fields(ingest, {"subject": {"org": "gy-hosp-099"}, "resource": {"hospital": "gy-hosp-099"}}))
	d.reasons == ["org_suspended"]
}

# -------------------------------------------------------- oversight_review

break_glass_review(request) := with_fields(request, {
	"action": "oversight_review",
	"resource": {"patient": "p1", "type": "AuditEvent", "hospital": "gy-hosp-001"},
})

test_regulator_reviews_break_glass if {
	d := decide(break_glass_review(regulator))
	allowed_by(d, "regulator_reviews_break_glass")
	d.obligations == no_obligations
}

test_hospital_cannot_review_break_glass if {
	d := decide(break_glass_review(clinician))
	d.reasons == ["oversight_review_not_permitted"]
}

privacy_officer(org) := with_fields(clinician, {
	"subject": {"id": "po-1", "org": org, "role": "privacy_officer"},
	"purpose": "HCOMPL",
})

test_privacy_officer_reviews_own_hospitals_break_glass if {
	d := decide(break_glass_review(privacy_officer("gy-hosp-001")))
	allowed_by(d, "privacy_officer_reviews_own_hospital")
}

test_privacy_officer_cannot_review_another_hospitals_break_glass if {
	d := decide(break_glass_review(privacy_officer("gy-hosp-002")))
	d.reasons == ["break_glass_of_another_hospital"]
}

test_privacy_officer_cannot_review_an_unknown_access if {
	req := break_glass_review(privacy_officer("gy-hosp-001"))
	d := decide(with_fields(req, {"resource": {"patient": null, "type": "AuditEvent", "hospital": null}}))
	d.reasons == ["break_glass_of_another_hospital"]
}

test_a_hospitals_compliance_purpose_is_for_break_glass_reviews_only if {
	read := with_fields(privacy_officer("gy-hosp-001"), {"action": "read"})
	"purpose_not_permitted_for_org_type" in decide(read).reasons
	as_clinician := with_fields(privacy_officer("gy-hosp-001"), {"subject": {"role": "clinician"}})
	reasons := decide(break_glass_review(as_clinician)).reasons
	"purpose_not_permitted_for_org_type" in reasons
	"oversight_review_not_permitted" in reasons
}

test_privacy_officer_cannot_review_own_break_glass if {
	req := break_glass_review(privacy_officer("gy-hosp-001"))
	d := decide(with_fields(req, {"resource": object.union(req.resource, {"accessor": "po-1"})}))
	d.reasons == ["own_break_glass_access"]
}

test_patient_cannot_review_break_glass if {
	d := decide(break_glass_review(patient))
	d.reasons == ["oversight_review_not_permitted"]
}

# ------------------------------------------ complaint_file, complaint_answer

complaint_about(request, event_patient) := with_fields(request, {
	"action": "complaint_file",
	"resource": {"patient": event_patient, "type": "AuditEvent", "hospital": "gy-hosp-001"},
})

test_patient_reports_an_access_to_own_records if {
	d := decide(complaint_about(patient, "p1"))
	allowed_by(d, "patient_reports_own_access")
	d.obligations == no_obligations
}

test_patient_cannot_report_another_patients_access if {
	d := decide(complaint_about(patient, "p2"))
	d.reasons == ["not_own_audit_events"]
}

test_patient_cannot_report_an_event_nobody_has if {
	d := decide(complaint_about(patient, null))
	d.reasons == ["not_own_audit_events"] # the same refusal as another patient's event: no oracle
}

test_hospital_cannot_file_a_complaint if {
	d := decide(complaint_about(clinician, "p1"))
	d.reasons == ["complaint_only_by_patient"]
}

answer(request) := with_fields(request, {
	"action": "complaint_answer",
	"resource": {"patient": "p1", "type": "AuditEvent", "hospital": "gy-hosp-001"},
})

test_regulator_answers_complaints if {
	d := decide(answer(regulator))
	allowed_by(d, "regulator_answers_complaints")
}

test_patient_cannot_answer_complaints if {
	d := decide(answer(patient))
	d.reasons == ["complaint_answer_not_permitted"]
}

# --------------------------------------------------------------- audit_read

test_regulator_reads_audit_trail if {
	d := decide(with_fields(regulator, {"action": "audit_read", "resource": {"patient": null, "type": "AuditEvent"}}))
	allowed_by(d, "regulator_audit_trail")
	d.obligations == no_obligations
}

test_patient_reads_own_audit_events if {
	allowed_by(decide(with_fields(patient, {"action": "audit_read"})), "patient_own_audit_events")
}

test_patient_cannot_read_others_audit_events if {
	d := decide(with_fields(patient, {"action": "audit_read", "subject": {"patient": "p2"}}))
	d.reasons == ["not_own_audit_events"]
}

test_patient_cannot_read_whole_audit_trail if {
	d := decide(with_fields(patient, {"action": "audit_read", "resource": {"patient": null}}))
	d.reasons == ["not_own_audit_events"]
}

test_hospital_cannot_read_audit_trail if {
	d := decide(with_fields(clinician, {"action": "audit_read"}))
	d.reasons == ["audit_read_not_permitted"]
}

# ------------------------------------------------------------ consent_write

test_patient_writes_own_consents if {
	d := decide(with_fields(patient, {"action": "consent_write"}))
	allowed_by(d, "patient_manages_own_consents")
	d.obligations == no_obligations
}

test_patient_cannot_write_others_consents if {
	d := decide(with_fields(patient, {"action": "consent_write", "subject": {"patient": "p2"}}))
	d.reasons == ["not_own_records"]
}

test_clinician_records_consent_and_patient_is_told if {
	d := decide(with_fields(clinician, {"action": "consent_write"}))
	allowed_by(d, "clinician_records_consent_for_patient")
	d.obligations == object.union(no_obligations, {"notify_patient": true})
}

test_patient_confirms_own_consent if {
	d := decide(with_fields(patient, {"action": "consent_confirm"}))
	allowed_by(d, "patient_confirms_own_consent")
}

test_patient_cannot_confirm_anothers_consent if {
	d := decide(with_fields(patient, {"action": "consent_confirm", "subject": {"patient": "p2"}}))
	d.reasons == ["not_own_records"]
}

test_only_the_patient_confirms_a_consent if {
	d := decide(with_fields(clinician, {"action": "consent_confirm"}))
	d.reasons == ["confirm_only_by_patient"]
}

test_clinician_consent_write_needs_care if {
	d := decide(with_fields(clinician, {"action": "consent_write", "relationship": {"care": false}}))
	d.reasons == ["no_care_relationship"]
}

test_consent_write_needs_clinician_role if {
	d := decide(with_fields(clinician, {"action": "consent_write", "subject": {"role": "billing"}}))
	d.reasons == ["role_not_clinician"]
}

test_consent_write_not_under_break_glass if {
	d := decide(with_fields(clinician, {"action": "consent_write", "purpose": "ETREAT"}))
	d.reasons == ["consent_write_requires_treat"]
}

test_third_party_cannot_write_consents if {
	d := decide(with_fields(insurer, {"action": "consent_write"}))
	d.reasons == ["consent_write_not_permitted"]
}

test_consent_write_needs_patient if {
	d := decide(with_fields(patient, {"action": "consent_write", "resource": {"patient": null}}))
	d.reasons == ["resource_has_no_patient"]
}

# -------------------------------------------------------------------- erase

test_patient_erases_own_records if {
	d := decide(with_fields(patient, {"action": "erase"}))
	allowed_by(d, "patient_erases_own_records")
	d.obligations == no_obligations
}

test_patient_cannot_erase_another_patient if {
	d := decide(with_fields(patient, {"action": "erase", "subject": {"patient": "p2"}}))
	d.reasons == ["not_own_records"]
}

test_clinician_cannot_erase if {
	d := decide(with_fields(clinician, {"action": "erase"}))
	d.reasons == ["erase_only_by_patient"]
}

test_state_cannot_erase if {
	d := decide(with_fields(police, {"action": "erase"}))
	d.reasons == ["erase_only_by_patient"]
}

test_erase_needs_patient if {
	d := decide(with_fields(patient, {"action": "erase", "resource": {"patient": null}}))
	d.reasons == ["resource_has_no_patient"]
}

# -------------------------------------------------------------------- refer

referral(request, target) := with_fields(request, {"action": "refer", "resource": {"type": "Patient", "hospital": target}})

test_clinician_refers_patient_in_care_and_patient_is_told if {
	d := decide(referral(clinician, "gy-hosp-003"))
	allowed_by(d, "clinician_refers_patient")
	d.obligations == object.union(no_obligations, {"notify_patient": true})
}

test_clinician_referral_needs_care if {
	d := decide(with_fields(referral(clinician, "gy-hosp-003"), {"relationship": {"care": false}}))
	d.reasons == ["no_care_relationship"]
}

test_referral_needs_clinician_role if {
	d := decide(with_fields(referral(clinician, "gy-hosp-003"), {"subject": {"role": "billing"}}))
	d.reasons == ["role_not_clinician"]
}

test_referral_not_under_break_glass if {
	d := decide(with_fields(referral(clinician, "gy-hosp-003"), {"purpose": "ETREAT"}))
	d.reasons == ["referral_requires_treat"]
}

test_patient_refers_self if {
	d := decide(referral(patient, "gy-hosp-003"))
	allowed_by(d, "patient_refers_self")
	d.obligations == no_obligations
}

test_patient_cannot_refer_another_patient if {
	d := decide(with_fields(referral(patient, "gy-hosp-003"), {"subject": {"patient": "p2"}}))
	d.reasons == ["not_own_records"]
}

test_referral_only_to_a_hospital_in_good_standing if {
	every target in ["gy-hosp-099", "gy-insurer-1", "gz-insurer-1", "nowhere", "gy-hosp-nf"] {
		denied_for(decide(referral(clinician, target)), "referral_target_not_a_hospital")
	}
}

test_third_party_cannot_refer if {
	d := decide(referral(insurer, "gy-hosp-003"))
	d.reasons == ["refer_not_permitted"]
}

test_referral_needs_patient if {
	d := decide(with_fields(referral(patient, "gy-hosp-003"), {"resource": {"patient": null}}))
	d.reasons == ["resource_has_no_patient"]
}
