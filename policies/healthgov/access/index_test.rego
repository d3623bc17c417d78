# The rules state the action and the caller's kind as literal comparisons on
# input (so that OPA's rule index can skip rules that cannot apply) and write
# each grant's obligations out in full. These tests pin what that must not
# change: the literal sets agree with the vocabulary, a claimed kind still has
# to be confirmed by the registry, and every grant carries the same five
# obligations a deny does.
package healthgov.access_test

import data.healthgov.access

opted_out_read(org, org_type, purpose) := with_fields(as_caller(org, org_type, "someone", purpose), {
	"legal": {"ethics_approval": valid_ethics},
	"consents": [permit(org, purpose), opt_out("*")],
})

# One registered org per kind of caller, with the purpose that kind may claim.
caller_of_kind := {
	"patient": ["healthgov-portal", "PATRQT"],
	"hospital": ["gy-hosp-001", "TREAT"],
	"public_health": ["gy-cdc", "PUBHLTH"],
	"law_enforcement": ["gy-police", "HLEGAL"],
	"regulator": ["gz-nhc", "HCOMPL"],
	"research": ["gz-uni-research", "HRESCH"],
	"insurer": ["gz-insurer-1", "HPAYMT"],
	"commercial": ["gy-datamart", "HMARKT"],
}

# An opt-out blocks exactly the kinds in third_party_org_types.
test_opt_out_blocks_exactly_the_third_party_kinds if {
	blocked := {org_type |
		some org_type, [org, purpose] in caller_of_kind
		"patient_opted_out" in decide(opted_out_read(org, org_type, purpose)).reasons
	}
	blocked == access.third_party_org_types
}

# Only insurers and commercial recipients are told that no consent covers them.
test_consent_problems_only_for_insurers_and_commercial if {
	told := {org_type |
		some org_type, [org, purpose] in caller_of_kind
		request := with_fields(as_caller(org, org_type, "someone", purpose), {"legal": {"ethics_approval": valid_ethics}})
		"no_consent" in decide(request).reasons
	}
	told == {"insurer", "commercial"}
}

# A caller claiming a kind the registry does not give it (gz-insurer-2 is an
# insurer) gets nothing from the rules of the claimed kind, for every action.
test_claimed_kind_needs_the_registry if {
	every action in ["read", "write", "audit_read", "consent_write", "erase", "refer"] {
		every org_type, caller in object.remove(caller_of_kind, ["insurer"]) {
			purpose := caller[1]
			request := with_fields(as_caller("gz-insurer-2", org_type, "clinician", purpose), {
				"action": action,
				"subject": {"patient": "p1"},
				"relationship": {"care": true},
				"resource": {"hospital": "gz-insurer-2"},
				"legal": {"warrant": valid_warrant, "ethics_approval": valid_ethics},
				"consents": [permit("gz-insurer-2", purpose)],
				"break_glass": {"reason": "arrest"},
			})
			count(access.grants) == 0 with input as request with data.healthgov.registry as registry
		}
	}
}

allowed_requests := [
	with_fields(patient, {"resource": {"labels": ["HIV"]}}),
	with_fields(clinician, {"resource": {"labels": ["HIV", "PSY"]}}),
	with_fields(clinician, {"purpose": "ETREAT", "break_glass": {"reason": "arrest"}}),
	with_fields(public_health, {"resource": {"labels": ["NOTIFIABLE", "HIV"]}}),
	public_health,
	police,
	researcher,
	with_fields(researcher, {"consents": [permit("gz-uni-research", "HRESCH")]}),
	insurer,
	commercial,
	with_fields(clinician, {"resource": {"patient": null, "type": "Organization"}}),
	with_fields(clinician, {"action": "write", "resource": {"hospital": "gy-hosp-001"}}),
	with_fields(regulator, {"action": "audit_read"}),
	with_fields(patient, {"action": "audit_read"}),
	with_fields(patient, {"action": "consent_write"}),
	with_fields(clinician, {"action": "consent_write"}),
	with_fields(patient, {"action": "erase"}),
	with_fields(clinician, {"action": "refer", "resource": {"hospital": "gy-hosp-003"}}),
	with_fields(patient, {"action": "refer", "resource": {"hospital": "gy-hosp-003"}}),
]

# Every grant names a distinct rule, and its obligations are complete: the
# same five fields, of the same types, as the neutral defaults.
test_every_grant_has_complete_obligations if {
	rules := [d.reasons[0] |
		some request in allowed_requests
		d := decide(request)
		d.allow == true
		object.keys(d.obligations) == object.keys(no_obligations)
		is_string(d.obligations.deidentify)
		is_array(d.obligations.redact_labels)
		is_boolean(d.obligations.notify_patient)
		is_boolean(d.obligations.review)
	]
	count(rules) == count(allowed_requests)
	count({r | some r in rules}) == count(allowed_requests)
}

# Every kind of organisation the platform knows (services/contracts/vocabulary.py) has its
# purposes here, and no other kind does.
test_every_known_org_type_has_purposes if {
	{t | some t, _ in access.purposes_by_org_type} == {t | some t in data.healthgov.vocabulary.org_types}
}

# The test fixtures name one caller of every known kind.
test_fixtures_cover_every_known_org_type if {
	{t | some t, _ in caller_of_kind} == {t | some t in data.healthgov.vocabulary.org_types}
}
