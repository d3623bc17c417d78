# Law enforcement (warrants) and research (ethics approvals).
package healthgov.access_test

# ---------------------------------------------------- law enforcement, HLEGAL

# The police request with `w` as the whole warrant (not merged into the valid one).
with_warrant(w) := with_fields(with_fields(police, {"legal": {"warrant": null}}), {"legal": {"warrant": w}})

test_warrant_allows_listed_labels_reviewed_and_notified if {
	d := decide(with_fields(police, {"resource": {"labels": ["HIV", "PSY", "N"]}}))
	allowed_by(d, "lawful_warrant")
	d.obligations == {
		"deidentify": "none",
		"redact_labels": ["N", "PSY"],
		"notify_patient": true,
		"notify_after": null,
		"review": true,
	}
}

test_warrant_without_labels_releases_no_labels if {
	w := object.remove(valid_warrant, ["labels"])
	d := decide(with_fields(with_warrant(w), {"resource": {"labels": ["HIV"]}}))
	allowed_by(d, "lawful_warrant")
	d.obligations.redact_labels == ["HIV"]
}

test_warrant_seal_delays_notice if {
	d := decide(with_fields(police, {"legal": {"warrant": {"sealed_until": "2027-01-15T00:00:00Z"}}}))
	d.obligations.notify_after == "2027-01-15T00:00:00Z"
}

test_warrant_seal_capped_at_90_days if {
	d := decide(with_fields(police, {"legal": {"warrant": {"sealed_until": "2030-01-01T00:00:00Z"}}}))
	d.obligations.notify_after == "2027-02-20T10:00:00Z"
}

test_warrant_seal_normalised_to_utc if {
	d := decide(with_fields(police, {"legal": {"warrant": {"sealed_until": "2027-01-15T08:00:00+08:00"}}}))
	d.obligations.notify_after == "2027-01-15T00:00:00Z"
}

test_warrant_unreadable_seal_denied if {
	d := decide(with_fields(police, {"legal": {"warrant": {"sealed_until": "when the case closes"}}}))
	denied_for(d, "warrant_sealed_until_invalid")
}

test_law_enforcement_needs_warrant if {
	d := decide(with_fields(police, {"legal": {"warrant": null}}))
	d.reasons == ["warrant_missing"]
}

test_warrant_from_unrecognised_court_denied if {
	d := decide(with_fields(police, {"legal": {"warrant": {"issuer": "kangaroo-court"}}}))
	d.reasons == ["court_not_recognised"]
}

test_warrant_from_a_hospital_denied if {
	d := decide(with_fields(police, {"legal": {"warrant": {"issuer": "gy-hosp-001"}}}))
	d.reasons == ["court_not_recognised"]
}

test_warrant_from_a_suspended_court_denied if {
	d := decide(with_fields(police, {"legal": {"warrant": {"issuer": "gy-closed-court"}}}))
	d.reasons == ["court_not_recognised"]
}

# What a caller writes itself (the old JSON warrant) is never a warrant.
test_unverified_warrant_denied if {
	d := decide(with_warrant(object.remove(valid_warrant, ["verified"])))
	d.reasons == ["warrant_not_verified"]
}

test_warrant_verified_must_be_true_itself if {
	every claimed in [false, "true", 1] {
		d := decide(with_fields(police, {"legal": {"warrant": {"verified": claimed}}}))
		d.reasons == ["warrant_not_verified"]
	}
}

test_warrant_for_another_org_denied if {
	d := decide(with_fields(police, {"legal": {"warrant": {"org": "other-police"}}}))
	d.reasons == ["warrant_not_for_this_org"]
}

test_warrant_covers_only_the_types_it_names if {
	named := decide(with_fields(police, {"legal": {"warrant": {"types": ["Condition", "Encounter"]}}}))
	allowed_by(named, "lawful_warrant")
	other := decide(with_fields(police, {"legal": {"warrant": {"types": ["Encounter"]}}}))
	other.reasons == ["warrant_type_not_covered"]
	none := decide(with_fields(police, {"legal": {"warrant": {"types": []}}}))
	none.reasons == ["warrant_type_not_covered"]
}

test_warrant_for_other_patient_denied if {
	d := decide(with_fields(police, {"legal": {"warrant": {"patient": "p2"}}}))
	d.reasons == ["warrant_patient_mismatch"]
}

test_expired_warrant_denied if {
	d := decide(with_fields(police, {"legal": {"warrant": {"expires": past}}}))
	d.reasons == ["warrant_expired"]
}

test_warrant_without_expiry_denied if {
	d := decide(with_warrant(object.remove(valid_warrant, ["expires"])))
	denied_for(d, "warrant_expired")
}

test_opt_out_does_not_block_warrant if {
	d := decide(with_fields(police, {"consents": [opt_out("*")]}))
	allowed_by(d, "lawful_warrant")
}

# ------------------------------------------------------------ research, HRESCH

test_research_pseudonymised_without_sensitive_labels if {
	d := decide(with_fields(researcher, {"resource": {"labels": ["GDIS", "N"]}}))
	allowed_by(d, "research_ethics_approval")
	d.obligations == object.union(no_obligations, {"deidentify": "pseudonymize", "redact_labels": ["GDIS"]})
}

test_research_identified_with_explicit_consent if {
	c := object.union(permit("gz-uni-research", "HRESCH"), {"labels": ["GDIS"]})
	d := decide(with_fields(researcher, {"resource": {"labels": ["GDIS", "HIV"]}, "consents": [c]}))
	allowed_by(d, "research_identified_with_consent")
	d.obligations == object.union(no_obligations, {"redact_labels": ["HIV"]})
}

test_research_consent_to_other_grantee_stays_pseudonymised if {
	d := decide(with_fields(researcher, {"consents": [permit("other-uni", "HRESCH")]}))
	allowed_by(d, "research_ethics_approval")
}

test_research_needs_ethics_approval if {
	d := decide(with_fields(researcher, {"legal": {"ethics_approval": null}}))
	d.reasons == ["ethics_approval_missing"]
}

test_research_unrecognised_board_denied if {
	d := decide(with_fields(researcher, {"legal": {"ethics_approval": {"issuer": "self-approved"}}}))
	d.reasons == ["ethics_board_not_recognised"]
}

test_research_approval_from_a_court_denied if {
	d := decide(with_fields(researcher, {"legal": {"ethics_approval": {"issuer": "gy-intermediate-court"}}}))
	d.reasons == ["ethics_board_not_recognised"]
}

test_research_unverified_approval_denied if {
	approval := object.remove(valid_ethics, ["verified"])
	d := decide(with_fields(with_fields(researcher, {"legal": {"ethics_approval": null}}), {"legal": {"ethics_approval": approval}}))
	d.reasons == ["ethics_approval_not_verified"]
}

test_research_approval_for_another_org_denied if {
	d := decide(with_fields(researcher, {"legal": {"ethics_approval": {"org": "gz-other-university"}}}))
	d.reasons == ["ethics_approval_not_for_this_org"]
}

test_research_expired_approval_denied if {
	d := decide(with_fields(researcher, {"legal": {"ethics_approval": {"expires": past}}}))
	d.reasons == ["ethics_approval_expired"]
}

test_research_opt_out_denied if {
	d := decide(with_fields(researcher, {"consents": [opt_out("HRESCH")]}))
	d.reasons == ["patient_opted_out"]
}

test_research_opt_out_beats_explicit_consent if {
	consents := [opt_out("*"), permit("gz-uni-research", "HRESCH")]
	d := decide(with_fields(researcher, {"consents": consents}))
	d.reasons == ["patient_opted_out"]
}
