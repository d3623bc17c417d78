# The worked examples in policies/examples/ (loaded as data.examples) decide
# as the README says: examples that drift from the rules fail here.
package examples_test

import data.healthgov.access

# The demo registry's shape, for the ids the examples use.
demo_registry := {"orgs": {
	"gy-hosp-001": {"type": "hospital", "name": "First", "suspended": false},
	"gy-hosp-003": {"type": "hospital", "name": "Maternal", "suspended": false},
	"gy-police": {"type": "law_enforcement", "name": "Police", "suspended": false},
	"gz-nhc": {"type": "regulator", "name": "Health Commission", "suspended": false},
	"gz-uni-research": {"type": "research", "name": "University", "suspended": false},
	"gz-insurer-1": {"type": "insurer", "name": "Insurer", "suspended": false},
	"gy-intermediate-court": {"type": "court", "name": "Intermediate Court", "suspended": false},
	"gz-med-univ-irb": {"type": "ethics_board", "name": "Ethics Committee", "suspended": false},
}}

decide(name) := d if {
	d := access.decision with input as data.examples[name].input with data.healthgov.registry as demo_registry
}

test_example_clinician_treat if {
	d := decide("clinician_treat")
	d.reasons == ["clinician_care_relationship"]
	d.obligations.redact_labels == ["HIV"] # PSY is consented to gy-hosp-001
}

test_example_break_glass if {
	d := decide("break_glass")
	d.reasons == ["break_glass"]
	d.obligations.review == true
}

test_example_law_enforcement_warrant if {
	d := decide("law_enforcement_warrant")
	d.reasons == ["lawful_warrant"]
	d.obligations.redact_labels == ["PSY"]
	d.obligations.notify_after == "2027-02-20T10:00:00Z" # seal capped at 90 days
}

test_example_research_pseudonymized if {
	d := decide("research_pseudonymized")
	d.reasons == ["research_ethics_approval"]
	d.obligations.deidentify == "pseudonymize"
}

test_example_insurer_consent if {
	d := decide("insurer_consent")
	d.reasons == ["insurer_consent"]
	d.obligations.redact_labels == ["STD"]
}

test_example_regulator_read_denied if {
	d := decide("regulator_read_denied")
	d.allow == false
	d.reasons == ["regulators_read_audit_trail_only"]
}
