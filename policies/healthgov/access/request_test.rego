# Reasons to deny that hold whatever the rule: registry, purpose, action,
# time and request shape; and the decision document itself.
package healthgov.access_test

import data.healthgov.access

# ------------------------------------------------------------ the registry

test_unregistered_org_denied if {
	d := decide(with_fields(clinician, {"subject": {"org": "gy-hosp-777"}}))
	denied_for(d, "org_not_registered")
}

test_missing_registry_denies_everyone if {
	d := access.decision with input as clinician with data.healthgov.registry as {}
	denied_for(d, "org_not_registered")
}

test_claimed_org_type_must_match_registry if {
	# an insurer presenting itself as a hospital
	d := decide(with_fields(clinician, {"subject": {"org": "gz-insurer-1"}}))
	denied_for(d, "org_type_mismatch")
}

test_suspended_org_denied if {
	d := decide(with_fields(clinician, {"subject": {"org": "gy-hosp-099"}}))
	denied_for(d, "org_suspended")
}

test_org_without_suspended_flag_counts_as_suspended if {
	d := decide(with_fields(clinician, {"subject": {"org": "gy-hosp-nf"}}))
	denied_for(d, "org_suspended")
}

test_unknown_org_type_denied if {
	d := decide(as_caller("odd-org", "astrologer", "seer", "TREAT"))
	denied_for(d, "unknown_org_type")
}

test_patient_claim_only_for_portal if {
	d := decide(with_fields(clinician, {"subject": {"patient": "p1"}}))
	denied_for(d, "patient_claim_not_allowed")
}

# ------------------------------------------------------- purpose and action

test_unknown_purpose_denied if {
	d := decide(with_fields(clinician, {"purpose": "CURIOSITY"}))
	denied_for(d, "unknown_purpose")
	not "purpose_not_permitted_for_org_type" in d.reasons
}

test_purpose_must_fit_org_type if {
	d := decide(with_fields(insurer, {"purpose": "TREAT"}))
	denied_for(d, "purpose_not_permitted_for_org_type")
}

test_unknown_action_denied if {
	d := decide(with_fields(clinician, {"action": "delete"}))
	denied_for(d, "unknown_action")
}

# -------------------------------------------------------------------- time

test_malformed_now_denied if {
	d := decide(with_fields(clinician, {"now": "yesterday"}))
	denied_for(d, "invalid_now")
}

test_missing_now_denied if {
	d := decide(object.remove(clinician, ["now"]))
	denied_for(d, "invalid_now")
}

# The clock is input.now: the same consent is valid before its expiry and
# not after, whatever the wall clock says.
test_time_is_input_now_only if {
	before := with_fields(insurer, {"now": "2026-12-31T23:59:59Z"})
	allowed_by(decide(before), "insurer_consent")
	after := with_fields(insurer, {"now": "2027-01-01T00:00:00Z"})
	denied_for(decide(after), "consent_expired")
}

# ---------------------------------------------------------------- resource

test_patient_resource_needs_patient if {
	d := decide(with_fields(clinician, {"resource": {"patient": null}}))
	denied_for(d, "resource_has_no_patient")
}

test_empty_patient_is_no_patient if {
	d := decide(with_fields(clinician, {"resource": {"patient": ""}}))
	denied_for(d, "resource_has_no_patient")
}

# ---------------------------------------------------------------- decision

test_deny_is_complete_document if {
	d := decide(with_fields(clinician, {"subject": {"org": "gy-hosp-099"}}))
	d.allow == false
	d.obligations == no_obligations
	startswith(d.policy_version, data.healthgov.manifest.version)
}

test_deny_lists_every_reason_sorted if {
	d := decide(with_fields(clinician, {"subject": {"org": "gy-hosp-099"}, "relationship": {"care": false}}))
	d.reasons == ["no_care_relationship", "org_suspended"]
}

test_deny_overrides_grant if {
	# the rule would grant, but the org is suspended
	d := decide(with_fields(clinician, {"subject": {"org": "gy-hosp-099"}}))
	d.reasons == ["org_suspended"]
}

test_two_grants_are_refused if {
	two := {
		{"rule": "a", "obligations": no_obligations},
		{"rule": "b", "obligations": no_obligations},
	}
	d := access.decision with input as clinician with data.healthgov.registry as registry with access.grants as two
	d.allow == false
	d.reasons == ["conflicting_rules"]
}

test_no_rule_is_deny if {
	d := access.decision with input as clinician with data.healthgov.registry as registry with access.grants as set()
	d.allow == false
	d.reasons == ["no_matching_rule"]
}

test_policy_version_from_manifest if {
	m := {"version": "2030.1.4", "digest": "0123456789abcdef0123"}
	d := access.decision with input as clinician with data.healthgov.registry as registry with data.healthgov.manifest as m
	d.policy_version == "2030.1.4+0123456789ab"
}

test_policy_version_without_manifest if {
	d := access.decision with input as clinician with data.healthgov.registry as registry with data.healthgov.manifest as {}
	d.policy_version == "unversioned"
}

test_shipped_manifest_is_well_formed if {
	regex.match(`^[0-9]{4}\.[0-9]{1,2}\.[0-9]+\+[0-9a-f]{12}$`, decide(clinician).policy_version)
}

# ------------------------------------------------- several resources at once

test_decisions_answer_each_resource_as_if_asked_alone if {
	mental := {"patient": "p1", "type": "Condition", "labels": ["PSY"], "hospital": "gy-hosp-002"}
	plain := clinician.resource
	visit := {"patient": "p1", "type": "Encounter", "labels": [], "hospital": "gy-hosp-003"}
	ds := access.decisions with input as object.union(insurer, {"resources": [plain, mental, visit]})
		with data.healthgov.registry as registry
	count(ds) == 3
	ds[0] == decide(with_fields(insurer, {"resource": plain}))
	ds[1] == decide(with_fields(insurer, {"resource": mental}))
	ds[2] == decide(with_fields(insurer, {"resource": visit}))
}

test_decisions_of_no_resources_are_none if {
	ds := access.decisions with input as object.union(clinician, {"resources": []})
		with data.healthgov.registry as registry
	ds == []
}

test_decisions_can_differ_by_resource if {
	own := clinician.resource
	other := {"patient": "p2", "type": "Condition", "labels": [], "hospital": "gy-hosp-002"}
	ds := access.decisions with input as object.union(patient, {"resources": [own, other]})
		with data.healthgov.registry as registry
	ds[0].allow == true
	denied_for(ds[1], "not_own_records")
}
