# Third parties bound by consent: insurers and commercial recipients, and the
# consent and opt-out semantics shared with research.
package healthgov.access_test

# ----------------------------------------------------------- insurer, HPAYMT

test_insurer_with_consent_gets_consented_labels_only if {
	c := object.union(permit("gz-insurer-1", "HPAYMT"), {"labels": ["STD"]})
	request := with_fields(insurer, {"resource": {"labels": ["STD", "HIV", "N"]}, "consents": [c]})
	d := decide(request)
	allowed_by(d, "insurer_consent")
	d.obligations == object.union(no_obligations, {"redact_labels": ["HIV", "N"]})
}

test_insurer_consent_limited_to_types if {
	c := object.union(permit("gz-insurer-1", "HPAYMT"), {"types": ["Encounter", "Claim"]})
	allowed_by(decide(with_fields(insurer, {"consents": [c], "resource": {"type": "Encounter"}})), "insurer_consent")
	d := decide(with_fields(insurer, {"consents": [c], "resource": {"type": "Condition"}}))
	d.reasons == ["consent_type_not_covered"]
}

test_consent_without_types_list_covers_nothing if {
	c := object.remove(permit("gz-insurer-1", "HPAYMT"), ["types"])
	d := decide(with_fields(insurer, {"consents": [c]}))
	d.reasons == ["consent_type_not_covered"]
}

test_insurer_without_consent_denied if {
	d := decide(with_fields(insurer, {"consents": []}))
	d.reasons == ["no_consent"]
}

test_insurer_consent_to_other_insurer_does_not_count if {
	d := decide(with_fields(insurer, {"consents": [permit("gz-insurer-2", "HPAYMT")]}))
	d.reasons == ["no_consent"]
}

test_insurer_consent_for_other_purpose_does_not_count if {
	d := decide(with_fields(insurer, {"consents": [permit("gz-insurer-1", "HRESCH")]}))
	d.reasons == ["no_consent"]
}

test_wildcard_purpose_permit_is_not_explicit_consent if {
	d := decide(with_fields(insurer, {"consents": [permit("gz-insurer-1", "*")]}))
	d.reasons == ["no_consent"]
}

test_insurer_expired_consent_denied if {
	c := object.union(permit("gz-insurer-1", "HPAYMT"), {"expires": past})
	d := decide(with_fields(insurer, {"consents": [c]}))
	d.reasons == ["consent_expired"]
}

test_consent_without_expiry_is_not_in_force if {
	c := object.remove(permit("gz-insurer-1", "HPAYMT"), ["expires"])
	d := decide(with_fields(insurer, {"consents": [c]}))
	d.reasons == ["consent_expired"]
}

test_insurer_revoked_consent_denied if {
	c := object.union(permit("gz-insurer-1", "HPAYMT"), {"revoked": true})
	d := decide(with_fields(insurer, {"consents": [c]}))
	d.reasons == ["consent_revoked"]
}

test_proposed_consent_awaits_the_patient if {
	c := object.union(permit("gz-insurer-1", "HPAYMT"), {"status": "proposed"})
	d := decide(with_fields(insurer, {"consents": [c]}))
	not d.allow
	d.reasons == ["consent_awaiting_patient"]
}

test_inactive_consent_counts_as_revoked if {
	c := object.union(permit("gz-insurer-1", "HPAYMT"), {"status": "inactive"})
	d := decide(with_fields(insurer, {"consents": [c]}))
	d.reasons == ["consent_revoked"]
}

test_active_status_consent_in_force if {
	c := object.union(permit("gz-insurer-1", "HPAYMT"), {"status": "active"})
	allowed_by(decide(with_fields(insurer, {"consents": [c]})), "insurer_consent")
}

test_one_valid_consent_is_enough if {
	expired := object.union(permit("gz-insurer-1", "HPAYMT"), {"expires": past, "id": "old"})
	request := with_fields(insurer, {"consents": [expired, permit("gz-insurer-1", "HPAYMT")]})
	allowed_by(decide(request), "insurer_consent")
}

# ---------------------------------------------------------------- opt-outs

test_opt_out_blocks_insurer_despite_consent if {
	request := with_fields(insurer, {"consents": [permit("gz-insurer-1", "HPAYMT"), opt_out("HPAYMT")]})
	d := decide(request)
	d.reasons == ["patient_opted_out"]
}

test_opt_out_of_everything_blocks_insurer if {
	request := with_fields(insurer, {"consents": [permit("gz-insurer-1", "HPAYMT"), opt_out("*")]})
	d := decide(request)
	d.reasons == ["patient_opted_out"]
}

test_opt_out_of_other_purpose_does_not_block if {
	request := with_fields(insurer, {"consents": [permit("gz-insurer-1", "HPAYMT"), opt_out("HMARKT")]})
	allowed_by(decide(request), "insurer_consent")
}

test_opt_out_naming_other_grantee_does_not_block if {
	o := object.union(opt_out("HPAYMT"), {"grantee": "gz-insurer-2"})
	request := with_fields(insurer, {"consents": [permit("gz-insurer-1", "HPAYMT"), o]})
	allowed_by(decide(request), "insurer_consent")
}

test_opt_out_naming_this_grantee_blocks if {
	o := object.union(opt_out("HPAYMT"), {"grantee": "gz-insurer-1"})
	request := with_fields(insurer, {"consents": [permit("gz-insurer-1", "HPAYMT"), o]})
	decide(request).reasons == ["patient_opted_out"]
}

test_opt_out_without_grantee_blocks_everyone if {
	o := object.remove(opt_out("HPAYMT"), ["grantee"])
	request := with_fields(insurer, {"consents": [permit("gz-insurer-1", "HPAYMT"), o]})
	decide(request).reasons == ["patient_opted_out"]
}

test_withdrawn_opt_out_does_not_block if {
	o := object.union(opt_out("HPAYMT"), {"revoked": true})
	request := with_fields(insurer, {"consents": [permit("gz-insurer-1", "HPAYMT"), o]})
	allowed_by(decide(request), "insurer_consent")
}

test_lapsed_opt_out_does_not_block if {
	o := object.union(opt_out("HPAYMT"), {"expires": past})
	request := with_fields(insurer, {"consents": [permit("gz-insurer-1", "HPAYMT"), o]})
	allowed_by(decide(request), "insurer_consent")
}

test_opt_out_with_unreadable_expiry_still_blocks if {
	o := object.union(opt_out("HPAYMT"), {"expires": "never"})
	request := with_fields(insurer, {"consents": [permit("gz-insurer-1", "HPAYMT"), o]})
	decide(request).reasons == ["patient_opted_out"]
}

# --------------------------------------------------------- commercial, any

test_commercial_with_consent_always_safe_harbor if {
	c := object.union(permit("gy-datamart", "HMARKT"), {"labels": ["N"]})
	d := decide(with_fields(commercial, {"consents": [c], "resource": {"labels": ["N", "HIV"]}}))
	allowed_by(d, "commercial_consent")
	d.obligations == object.union(no_obligations, {"deidentify": "safe_harbor", "redact_labels": ["HIV"]})
}

test_commercial_any_purpose_with_matching_consent if {
	request := with_fields(commercial, {"purpose": "HRESCH", "consents": [permit("gy-datamart", "HRESCH")]})
	d := decide(request)
	allowed_by(d, "commercial_consent")
	d.obligations.deidentify == "safe_harbor"
}

test_commercial_without_consent_denied if {
	d := decide(with_fields(commercial, {"consents": []}))
	d.reasons == ["no_consent"]
}

test_commercial_opt_out_denied if {
	d := decide(with_fields(commercial, {"consents": [permit("gy-datamart", "HMARKT"), opt_out("HMARKT")]}))
	d.reasons == ["patient_opted_out"]
}
