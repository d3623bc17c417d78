# One test per row of the read rule table (policies/README.md, docs/architecture.md §5) and each reason it denies.
package healthgov.access_test

# ------------------------------------------------ patient, PATRQT: own records

test_patient_reads_own_records if {
	d := decide(with_fields(patient, {"resource": {"labels": ["HIV", "PSY"]}}))
	allowed_by(d, "patient_own_records")
	d.obligations == no_obligations
}

test_patient_cannot_read_another_patient if {
	d := decide(with_fields(patient, {"subject": {"patient": "p2"}}))
	denied_for(d, "not_own_records")
}

test_patient_without_patient_claim_denied if {
	d := decide(with_fields(patient, {"subject": {"patient": null}}))
	denied_for(d, "not_own_records")
}

# ------------------------------------- guardian, PWATRNY: the child's records through the portal

guardian := with_fields(patient, {"subject": {"role": "guardian"}, "purpose": "PWATRNY"})

test_guardian_reads_the_childs_records if {
	allowed_by(decide(guardian), "patient_own_records")
}

test_guardian_cannot_read_another_patient if {
	denied_for(decide(with_fields(guardian, {"subject": {"patient": "p2"}})), "not_own_records")
}

test_guardian_changes_nothing if {
	every action in ["consent_write", "consent_confirm", "erase", "refer", "write"] {
		denied_for(decide(with_fields(guardian, {"action": action})), "guardian_reads_only")
	}
}

test_only_the_portal_claims_guardianship if {
	denied_for(decide(with_fields(clinician, {"purpose": "PWATRNY"})), "purpose_not_permitted_for_org_type")
}

# ------------------------------------------------------ clinician, TREAT

test_clinician_with_care_gets_record_sensitive_redacted if {
	d := decide(with_fields(clinician, {"resource": {"labels": ["HIV", "PSY", "N"]}}))
	allowed_by(d, "clinician_care_relationship")
	d.obligations == object.union(no_obligations, {"redact_labels": ["HIV", "PSY"]})
}

test_clinician_own_hospital_sees_all_labels if {
	d := decide(with_fields(clinician, {"resource": {"labels": ["HIV", "PSY"], "hospital": "gy-hosp-001"}}))
	allowed_by(d, "clinician_care_relationship")
	d.obligations.redact_labels == []
}

tre_consent(labels) := object.union(permit("gy-hosp-001", "TREAT"), {"labels": labels})

test_clinician_sees_labels_patient_consented if {
	request := with_fields(clinician, {
		"resource": {"labels": ["HIV", "PSY"]},
		"consents": [tre_consent(["HIV"])],
	})
	d := decide(request)
	allowed_by(d, "clinician_care_relationship")
	d.obligations.redact_labels == ["PSY"]
}

test_clinician_label_consent_to_other_hospital_does_not_count if {
	request := with_fields(clinician, {
		"resource": {"labels": ["HIV"]},
		"consents": [object.union(tre_consent(["HIV"]), {"grantee": "gy-hosp-003"})],
	})
	decide(request).obligations.redact_labels == ["HIV"]
}

test_clinician_expired_label_consent_does_not_count if {
	request := with_fields(clinician, {
		"resource": {"labels": ["HIV"]},
		"consents": [object.union(tre_consent(["HIV"]), {"expires": past})],
	})
	decide(request).obligations.redact_labels == ["HIV"]
}

test_clinician_label_consent_for_other_types_does_not_count if {
	request := with_fields(clinician, {
		"resource": {"labels": ["HIV"]},
		"consents": [object.union(tre_consent(["HIV"]), {"types": ["Observation"]})],
	})
	decide(request).obligations.redact_labels == ["HIV"]
}

test_clinician_without_care_denied if {
	d := decide(with_fields(clinician, {"relationship": {"care": false}}))
	denied_for(d, "no_care_relationship")
}

test_clinician_missing_relationship_denied if {
	d := decide(object.remove(clinician, ["relationship"]))
	denied_for(d, "no_care_relationship")
}

test_treat_needs_clinician_role if {
	d := decide(with_fields(clinician, {"subject": {"role": "billing"}}))
	denied_for(d, "role_not_clinician")
}

test_opt_out_does_not_block_treating_clinician if {
	d := decide(with_fields(clinician, {"consents": [opt_out("*")]}))
	allowed_by(d, "clinician_care_relationship")
}

# ------------------------------------------------------- clinician, ETREAT

break_glass := with_fields(clinician, {
	"purpose": "ETREAT",
	"relationship": {"care": false},
	"resource": {"labels": ["HIV", "PSY"]},
	"break_glass": {"reason": "unconscious patient"},
})

test_break_glass_gets_everything_reviewed_and_notified if {
	d := decide(break_glass)
	allowed_by(d, "break_glass")
	d.obligations == object.union(no_obligations, {"notify_patient": true, "review": true})
}

test_break_glass_needs_reason if {
	d := decide(with_fields(break_glass, {"break_glass": null}))
	denied_for(d, "break_glass_reason_missing")
}

test_break_glass_blank_reason_is_no_reason if {
	d := decide(with_fields(break_glass, {"break_glass": {"reason": "   "}}))
	denied_for(d, "break_glass_reason_missing")
}

test_break_glass_needs_clinician_role if {
	d := decide(with_fields(break_glass, {"subject": {"role": "porter"}}))
	denied_for(d, "role_not_clinician")
}

# --------------------------------------------------- public health, PUBHLTH

test_public_health_notifiable_identified_and_notified if {
	d := decide(with_fields(public_health, {"resource": {"labels": ["NOTIFIABLE", "HIV", "N"]}}))
	allowed_by(d, "public_health_notifiable")
	d.obligations == object.union(no_obligations, {"redact_labels": ["HIV"], "notify_patient": true})
}

test_public_health_otherwise_aggregate_only if {
	d := decide(with_fields(public_health, {"resource": {"labels": ["PSY"]}}))
	allowed_by(d, "public_health_aggregate")
	d.obligations == object.union(no_obligations, {"deidentify": "aggregate_only", "redact_labels": ["PSY"]})
}

test_opt_out_does_not_block_public_health if {
	d := decide(with_fields(public_health, {"consents": [opt_out("*")]}))
	allowed_by(d, "public_health_aggregate")
}

# ---------------------------------------------------------- regulator, HCOMPL

test_regulator_never_reads_records if {
	d := decide(regulator)
	d.allow == false
	d.reasons == ["regulators_read_audit_trail_only"]
}
